"""How a local MLLM runs: transformers' `generate` (`hf`, `qwen`), the fast Qwen2.5-VL engine (`fast`),
vLLM's offline engine (`vllm_offline`); `local` holds what they share."""
