"""The model adapters, by family (docs/ARCHITECTURE.md, "Models").

- `engines/`: how a local MLLM runs (transformers `generate`, the fast Qwen2.5-VL engine, vLLM);
- `presets/`: the named local models built on them (qwen2.5-vl-*, adfm, internvl*, llava-next-34b, hf-vlm);
- `api/`: chat-completions clients (GPT models, OpenAI-compatible servers);
- `baselines/`: answers without a language model (chance, PatchCore, WinCLIP, AnomalyCLIP);
- the modules here are shared: decoding settings (`generation`), prompts and parsers
  (`prompting`, `adfm_protocol`), Qwen2.5-VL's frame (`qwen_frame`), weights checks
  (`weights`), the offline tiny Qwen2.5-VL (`tiny_qwen`) and `-M device` (`devices`).

Nothing here is imported by `import adbench`: the registry names adapters by strings.
"""
