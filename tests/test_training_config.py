"""`adbench train --print-config` and the release recipes: the exact library arguments, without model, data or GPU."""

from __future__ import annotations

import json
import math

import pytest

from adbench.training.config import TrainingError, batch_layout, describe, grpo_kwargs
from adbench.training.lora import LANGUAGE_LINEAR
from adbench.training.recipes import available, load_recipe


def _print_config(capsys, *args: str) -> dict:
    from adbench.cli import main

    assert main(["train", *args, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def _grpo_config(kwargs: dict):
    """GRPOConfig(**kwargs) as given, except bf16, which transformers refuses on a machine without a GPU."""
    import torch
    from trl import GRPOConfig

    return GRPOConfig(**(kwargs if torch.cuda.is_available() else {**kwargs, "bf16": False}))


@pytest.mark.parametrize("name", ["release-multidomain", "release-crossdataset"])
def test_release_recipe_prints_the_releases_values(name, capsys, tmp_path):
    report = _print_config(capsys, "--recipe", name, "--out", str(tmp_path / "run"))
    kw, recipe = report["grpo_config_kwargs"], report["recipe"]
    # train_mmad.sh and the ms-swift 3.4 defaults it inherits (sources in the recipe file)
    expected = {
        "per_device_train_batch_size": 30, "gradient_accumulation_steps": 10, "num_generations": 6,
        "lr_scheduler_type": "cosine", "weight_decay": 0.1, "adam_beta2": 0.95, "learning_rate": 1e-5,
        "num_train_epochs": 15, "max_completion_length": 512, "temperature": 0.9, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 1.0, "beta": 0.04, "loss_type": "grpo", "scale_rewards": "group", "epsilon": 0.2,
        "use_bias_correction_kl": False, "vllm_importance_sampling_correction": False, "bf16": True,
        "gradient_checkpointing": True, "max_grad_norm": 1.0, "remove_unused_columns": False,
        "output_dir": str((tmp_path / "run" / "checkpoints").resolve()),
    }
    assert {k: kw.get(k) for k in expected} == expected
    assert recipe["grpo"]["warmup_ratio"] == 0.001
    assert kw.get("warmup_ratio", kw.get("warmup_steps")) == 0.001  # transformers 5 names it warmup_steps
    assert report["batch"]["prompts_per_optimizer_step"] == 50
    assert report["lora_config_kwargs"]["r"] == 64 and report["lora_config_kwargs"]["lora_alpha"] == 128
    assert report["lora_config_kwargs"]["target_modules"] == LANGUAGE_LINEAR  # the language model's linear layers
    assert report["processor"]["max_pixels"] == recipe["data"]["max_pixels"] == 262144
    assert recipe["data"]["task_args"]["shots"] == 1  # two images per prompt
    assert report["rewards"]["variant"] == "released" and report["rewards"]["components"] == ["format", "cls", "loc"]
    assert report["model_kwargs"]["dtype"] == "bfloat16"

    cfg = _grpo_config(kw)  # TRL accepts them, and keeps them
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, cfg.num_generations) == (30, 10, 6)
    assert (cfg.generation_batch_size, cfg.steps_per_generation) == (300, 10)
    assert str(getattr(cfg.lr_scheduler_type, "value", cfg.lr_scheduler_type)) == "cosine"
    assert (cfg.weight_decay, cfg.adam_beta2, cfg.learning_rate, cfg.num_train_epochs) == (0.1, 0.95, 1e-5, 15)
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.repetition_penalty, cfg.beta) == (0.9, 0.9, 50, 1.0, 0.04)
    assert cfg.loss_type == "grpo" and cfg.max_completion_length == 512
    # the ratio means what it meant to ms-swift: ceil(0.001 * total steps) warm-up steps
    assert [cfg.get_warmup_steps(n) for n in (300, 1000, 5000)] == [math.ceil(0.001 * n) for n in (300, 1000, 5000)]
    if name == "release-crossdataset":
        assert recipe["data"]["task_args"]["datasets"] == "DS-MVTec"


@pytest.mark.parametrize("name", available())
def test_every_recipe_prints_a_config_trl_accepts(name, capsys):
    report = _print_config(capsys, "--recipe", name, "--set", "grpo.seed=7", "--set", "grpo.logging_steps=3")
    kw = report["grpo_config_kwargs"]
    assert kw["seed"] == 7 and kw["logging_steps"] == 3 and report["overrides"] == ["grpo.seed=7", "grpo.logging_steps=3"]
    assert report["recipe"]["name"] == name and "output_dir" not in kw  # no --out: TRL's default
    cfg = _grpo_config(kw)
    assert cfg.seed == 7 and cfg.generation_batch_size % cfg.num_generations == 0


def test_print_config_is_what_train_gives_grpoconfig(monkeypatch, tmp_path):
    """A spy in place of trl.GRPOConfig catches the keyword arguments of a real `train` call."""
    import trl

    from adbench.training.trainer import train

    seen: dict = {}

    class Caught(Exception):
        pass

    def spy(**kwargs):
        seen.update(kwargs)
        raise Caught

    monkeypatch.setattr(trl, "GRPOConfig", spy)
    overrides = ["grpo.save_steps=7", "vllm.enabled=false"]
    with pytest.raises(Caught):
        train("release-multidomain", tmp_path / "run", overrides, data_root=tmp_path / "no-data", progress=False)
    monkeypatch.undo()
    printed = describe(load_recipe("release-multidomain", overrides), tmp_path / "run", overrides, progress=False)
    assert printed["grpo_config_kwargs"] == seen and seen["disable_tqdm"] is True and seen["save_steps"] == 7


def test_partial_prompt_groups_are_refused_with_the_keys_to_change(capsys):
    from adbench.cli import main

    assert main(["train", "--recipe", "release-multidomain", "--set", "grpo.num_generations=7", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "num_generations=7" in err and "per_device_train_batch_size" in err and "300" in err
    kw = grpo_kwargs(load_recipe("release-multidomain"))
    layout = batch_layout(kw, world=2)  # two training processes: twice the release's prompts per step
    assert layout["prompts_per_optimizer_step"] == 100 and layout["completions_per_generation"] == 600
    with pytest.raises(TrainingError, match="is not a whole number of groups"):
        batch_layout({**kw, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}, world=1)


def test_train_needs_out_unless_printing(capsys):
    from adbench.cli import main

    assert main(["train", "--recipe", "tiny"]) == 2
    assert "--out" in capsys.readouterr().err


def test_the_rollout_path_is_one_recipe_setting_wired_to_grpoconfig(capsys):
    from adbench.cli import main

    # every recipe generates with plain `generate` until a GPU measurement says otherwise
    for name in available():
        report = _print_config(capsys, "--recipe", name, "--set", "vllm.enabled=false")
        assert report["rollout"] == {"path": "generate", "engine": "transformers generate, dynamic KV cache"}
        assert report["grpo_config_kwargs"]["cache_implementation"] is None
    report = _print_config(capsys, "--recipe", "release-multidomain", "--set", "rollout.path=static",
                           "--set", "vllm.enabled=false")
    kw = report["grpo_config_kwargs"]
    assert kw["cache_implementation"] == "static" and report["rollout"]["engine"].endswith("static KV cache")
    cfg = _grpo_config(kw)  # TRL keeps it, with the sampling settings unchanged
    assert cfg.cache_implementation == "static" and (cfg.temperature, cfg.top_p, cfg.top_k) == (0.9, 0.9, 50)
    assert {k: v for k, v in kw.items() if k != "cache_implementation"} == \
        {k: v for k, v in grpo_kwargs(load_recipe("release-multidomain", ["vllm.enabled=false"])).items()
         if k != "cache_implementation"}
    # one place: TRL's own switches for it are refused in grpo:, an unknown path is refused. No `paged` path:
    # TRL 1.16's trl/trainer/grpo_trainer.py, GRPOTrainer.__init__, raises for
    # use_transformers_continuous_batching with a ProcessorMixin ("does not support multimodal models")
    for item, message in (("rollout.path=paged", "--set rollout.path: expected one of generate, static"),
                          ("grpo.cache_implementation=static", "grpo.cache_implementation is chosen by rollout.path"),
                          ("grpo.use_transformers_paged=true", "grpo.use_transformers_paged is chosen by rollout.path"),
                          ("grpo.use_vllm=true", "grpo.use_vllm is chosen by vllm.enabled")):
        assert main(["train", "--recipe", "tiny", "--set", item, "--print-config"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_a_run_may_resume_with_another_rollout_path():
    """The rollout path changes speed, not the distribution: a resumed run may switch it (or, recorded before
    the setting existed, have none); any other change is still refused."""
    from adbench.training.resume import recipe_changes

    recorded = load_recipe("release-multidomain")
    recorded.pop("rollout")  # as recipe.json was written before `rollout` existed
    assert recipe_changes(recorded, load_recipe("release-multidomain", ["rollout.path=static"])) == []
    changed = recipe_changes(recorded, load_recipe("release-multidomain", ["rollout.path=static", "grpo.beta=0.1"]))
    assert changed == ["grpo.beta: 0.04 -> 0.1"]
