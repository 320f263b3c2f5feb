"""The fast Qwen2.5-VL engine (`-M engine=fast`): the decoding loop (`decode`) and its kernels (`kernels`)."""
