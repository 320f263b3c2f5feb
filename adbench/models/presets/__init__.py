"""Named local models: which checkpoint, prompt, image budget and length each row of the paper uses.

A preset is a factory registered in `adbench.registry`; it fills defaults into the `-M`
arguments and builds an engine (`adbench.models.engines`) on the chosen backend
(`backends.build`: transformers, or vLLM with `-M backend=vllm`).
"""
