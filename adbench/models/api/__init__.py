"""Chat-completions clients: the adapter (`openai_chat`) and its retries, response cache, images and prices."""
