"""The DeepSpeed ZeRO-2 launch files, read the way `accelerate launch` and transformers' Trainer read them,
then checked by the DeepSpeed version the `deepspeed` extra pins (its own config classes).

`accelerate launch --config_file adbench/training/accelerate_zero2.yaml` loads the YAML
(`load_config_from_file`), and in each process `DeepSpeedPlugin(hf_ds_config=...)` reads
ds_zero2.json; the Trainer fills its "auto" values from the GRPOConfig
(`HfTrainerDeepSpeedConfig.trainer_config_process`, then `trainer_config_finalize` from
the model's hidden size) and DeepSpeed's `DeepSpeedConfig` parses the result (unknown
ZeRO keys are refused by its pydantic models). What needs GPUs is not run here: the
DeepSpeed engine itself (ZeRO-2 partitioning, NCCL), which is unverified on this machine.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

from adbench.training.config import DEVICE_KEYS, grpo_kwargs
from adbench.training.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "adbench" / "training"
PAPER_RECIPES = ["paper-multidomain", "paper-crossdataset", "release-multidomain", "release-crossdataset"]
HIDDEN_7B = 3584  # Qwen2.5-VL-7B's hidden size: what the Trainer fills reduce_bucket_size from

if os.environ.get("CI"):
    import deepspeed  # noqa: F401 - CI installs the `deepspeed` extra: a missing one is a failure, not a skip
else:
    pytest.importorskip("deepspeed", reason="the `deepspeed` extra is not installed")


def _pinned() -> str:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the extra's pin, as pip reads it

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [d for d in extras["deepspeed"] if d.startswith("deepspeed")]
    return pin


def test_installed_deepspeed_is_the_pinned_one():
    import deepspeed
    from packaging.requirements import Requirement

    assert deepspeed.__version__ in Requirement(_pinned()).specifier


def _accelerate_config():
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(TRAINING / "accelerate_zero2.yaml"))


def test_accelerate_reads_the_zero2_launch_file():
    from accelerate.utils import DistributedType

    config = _accelerate_config()
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["deepspeed_config_file"] == "adbench/training/ds_zero2.json"  # from the repo root
    assert (ROOT / config.deepspeed_config["deepspeed_config_file"]).is_file()
    assert config.deepspeed_config["zero3_init_flag"] is False and config.use_cpu is False


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_zero2_config_filled_from_the_recipe_is_valid_deepspeed(name, tmp_path):
    from accelerate.utils import DeepSpeedPlugin
    from deepspeed.runtime import constants
    from deepspeed.runtime.config import DeepSpeedConfig
    from deepspeed.runtime.zero import config as zero_config
    from transformers import Qwen2_5_VLConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    from trl import GRPOConfig

    launch = _accelerate_config().deepspeed_config
    plugin = DeepSpeedPlugin(hf_ds_config=str(ROOT / launch["deepspeed_config_file"]),
                             zero3_init_flag=launch["zero3_init_flag"])
    raw = json.loads(json.dumps(plugin.deepspeed_config, default=str))
    assert raw["zero_optimization"]["stage"] == 2
    # no stale keys: every top-level key is one this DeepSpeed knows (ZeRO's own keys: its pydantic model below)
    known = {v for m in (constants, zero_config) for k, v in vars(m).items() if k.isupper() and isinstance(v, str)}
    assert sorted(set(raw) - known - {"steps_per_print"}) == []

    recipe = load_recipe(name)
    kwargs = grpo_kwargs(recipe, tmp_path / "checkpoints")
    args = GRPOConfig(**{**kwargs, **dict.fromkeys([k for k in DEVICE_KEYS if kwargs.get(k)], False)})
    for key in DEVICE_KEYS:  # transformers refuses bf16 on a CPU: set as the recipe says on a GPU
        if kwargs.get(key):
            setattr(args, key, True)
    filled = HfTrainerDeepSpeedConfig(raw)
    filled.trainer_config_process(args)
    filled.trainer_config_finalize(args, types.SimpleNamespace(
        config=Qwen2_5_VLConfig(text_config={"hidden_size": HIDDEN_7B})), num_training_steps=100)
    ds = filled.config
    assert "auto" not in json.dumps(ds)
    grpo = recipe["grpo"]
    assert ds["train_micro_batch_size_per_gpu"] == grpo["per_device_train_batch_size"]
    assert ds["gradient_accumulation_steps"] == grpo["gradient_accumulation_steps"]
    assert ds["train_batch_size"] == grpo["per_device_train_batch_size"] * grpo["gradient_accumulation_steps"]
    assert ds["bf16"]["enabled"] is bool(grpo.get("bf16")) and ds["fp16"]["enabled"] is False
    assert ds["gradient_clipping"] == args.max_grad_norm
    assert ds["zero_optimization"]["reduce_bucket_size"] == HIDDEN_7B * HIDDEN_7B

    parsed = DeepSpeedConfig(ds)  # the pinned DeepSpeed's own parser (its ZeRO model forbids unknown keys)
    assert parsed.zero_optimization_stage == 2 and parsed.zero_enabled
    assert parsed.train_batch_size == ds["train_batch_size"] and parsed.bfloat16_config.enabled is bool(grpo.get("bf16"))


def test_a_stale_zero_key_is_refused_by_deepspeed():
    """The check above can fail: DeepSpeed's ZeRO model refuses a key it does not know."""
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = json.loads((TRAINING / "ds_zero2.json").read_text())
    raw["zero_optimization"]["cpu_offload_params"] = True  # removed from DeepSpeed long ago
    raw = json.loads(json.dumps(raw).replace('"auto"', "1"))
    with pytest.raises(Exception, match="cpu_offload_params"):
        DeepSpeedConfig({**raw, "train_batch_size": 1, "train_micro_batch_size_per_gpu": 1,
                         "gradient_accumulation_steps": 1, "bf16": {"enabled": False}, "fp16": {"enabled": False}})
