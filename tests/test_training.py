"""The tiny recipe end to end through TRL: SFT warm-up, GRPO, adapter, metadata, resume, scoring, variance."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from adbench.models.presets.adfm import TRAINING_METADATA, trained_defaults
from adbench.training.console import score_command
from adbench.training.lora import LANGUAGE_LINEAR, VISION_PATTERN, LoraTargetError, assert_vision_frozen
from adbench.training.recipes import load_recipe
from adbench.training.resume import RECIPE_RECORD
from adbench.training.variance import REWARDS, all_equal
from tests.training_fixtures import FIRST_STEPS, copy_training, tiny_training
from tests.vlm_fixtures import tiny_assets

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained():
    return tiny_training()


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adbench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_adapter_files_and_warmup(trained):
    files = {p.name for p in trained.adapter.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", TRAINING_METADATA, "tokenizer.json"} <= files
    assert (trained.out / "base-sft" / "model.safetensors").is_file()
    warm = trained.metadata["warmup"]
    assert warm["steps"] == load_recipe("tiny")["sft_warmup"]["max_steps"]
    assert warm["final_loss"] < warm["first_loss"] / 3  # the warm-up learned the format
    assert trained.metadata["base"] == "../base-sft"  # relative: a copied output folder still works


def test_recorded_trl_config_matches_the_recipe(trained):
    recipe = load_recipe("tiny")
    meta = trained.metadata
    cfg = meta["trl_config"]
    assert cfg["loss_type"] == recipe["grpo"]["loss_type"] == "grpo"
    assert cfg["beta"] == recipe["grpo"]["beta"] > 0
    assert cfg["num_generations"] == recipe["grpo"]["num_generations"]
    assert cfg["temperature"] == recipe["grpo"]["temperature"]
    assert cfg["learning_rate"] == recipe["grpo"]["learning_rate"]
    assert cfg["max_completion_length"] == recipe["grpo"]["max_completion_length"]
    assert cfg["max_steps"] == FIRST_STEPS and cfg["use_vllm"] is False
    assert meta["recipe"]["name"] == "tiny" and meta["overrides"] == [f"grpo.max_steps={FIRST_STEPS}"]
    assert meta["rewards"]["functions"] == ["r_format", "r_cls", "r_loc"]
    assert meta["split_hash"] and meta["split_hash"] == meta["data"]["split"]["hash"]
    assert meta["versions"]["packages"]["trl"] and meta["frame"] == {"min_pixels": 3136, "max_pixels": 12544}
    # LoRA: the recipe's rank, language-model projections only, nothing in the vision tower
    lora = meta["lora"]
    assert lora["config"]["r"] == recipe["lora"]["r"] and lora["config"]["lora_alpha"] == recipe["lora"]["alpha"]
    adapted = lora["adapted_modules"]
    assert len(adapted) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all("language_model" in n for n in adapted)
    assert not [n for n in adapted if VISION_PATTERN.search(n)]
    saved = json.loads((trained.adapter / "adapter_config.json").read_text())
    assert saved["target_modules"] == LANGUAGE_LINEAR


def test_grpo_logged_its_steps_and_rewards(trained):
    steps = [h for h in trained.metadata["log_history"] if "reward" in h]
    assert [h["step"] for h in steps] == list(range(1, FIRST_STEPS + 1))
    for h in steps:
        assert {"rewards/r_format/mean", "rewards/r_cls/mean", "rewards/r_loc/mean", "frac_reward_zero_std"} <= set(h)
        assert 0.0 <= h["frac_reward_zero_std"] <= 1.0
    assert trained.metadata["steps"] == {"global_step": FIRST_STEPS, "resumed_from": None, "resumed_from_step": 0,
                                         "this_session": FIRST_STEPS}


def test_training_prints_its_phases(trained):
    """Without progress: one header per phase, in order, and no step lines."""
    out = trained.out
    headers = [x for x in trained.console.splitlines() if x.startswith("== ")]
    assert headers == [
        f"== base: building the tiny random Qwen2.5-VL -> {out / 'base'} ==",
        f"== warm-up: supervised fine-tuning (TRL SFTTrainer) on the ideal replies of 12 samples, 40 steps -> "
        f"{out / 'base-sft'} ==",
        f"== GRPO (TRL GRPOTrainer): {FIRST_STEPS} steps; 4 completions per prompt, reward r_format + r_cls + r_loc ==",
    ]
    assert "step 1/" not in trained.console


def test_plot_training_curves(trained, tmp_path):
    """`adbench plot TRAIN_DIR`: reward (and each reward function), KL and loss per GRPO step."""
    from xml.etree import ElementTree

    from adbench.training.logs import training_history

    history, source = training_history(trained.out)
    assert source == trained.adapter / TRAINING_METADATA and history == trained.metadata["log_history"]
    proc = _cli("plot", str(trained.out), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = Path(proc.stdout.strip())
    assert path == tmp_path / "training_train-tiny" / "training.svg"
    svg = path.read_text()
    ElementTree.fromstring(svg)
    for text in ("reward", "r_format", "r_cls", "r_loc", "KL to the reference model", "loss", "step"):
        assert f">{text}<" in svg or f"> {text}<" in svg or text in svg, text
    assert "not logged" not in svg  # the tiny recipe's beta > 0: KL is logged


def test_all_linear_lora_reaches_the_vision_tower_and_is_refused():
    """The assertion can fail: peft's all-linear adapts vision MLPs (same names as the LLM's)."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_assets().base, use_safetensors=True)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear"))
    with pytest.raises(LoraTargetError, match="vision tower"):
        assert_vision_frozen(wrapped)


def test_adfm_defaults_come_from_the_training_metadata(trained, tmp_path):
    got = trained_defaults(trained.adapter)
    assert got == {"base": str((trained.out / "base-sft").resolve()), "min_pixels": 3136, "max_pixels": 12544,
                   "stages": "multi", "max_new_tokens": 96}
    # a hub id stays a hub id; an adapter without metadata gives no defaults
    (tmp_path / TRAINING_METADATA).write_text(json.dumps({"base": "Qwen/Qwen2.5-VL-7B-Instruct", "stages": "one"}))
    assert trained_defaults(tmp_path) == {"base": "Qwen/Qwen2.5-VL-7B-Instruct", "stages": "one"}
    assert trained_defaults(tmp_path / "nothing-here") == {}


def test_adbench_run_scores_the_trained_adapter(trained, tmp_path):
    """The command `adbench train` ends with, run as printed (plus a subset and an output folder)."""
    command = score_command(trained.metadata, trained.adapter)
    assert command == (f"adbench run --model adfm -M adapter={trained.adapter} --task demo-binary -T split=eval "
                       f"-T shots=1 --data-root {trained.data_root}")
    proc = _cli(*shlex.split(command)[1:], "--out", str(tmp_path), "--limit", "6", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    model_cfg = json.dumps(config)
    assert str((trained.out / "base-sft").resolve()) in model_cfg  # the base came from the metadata
    results = json.loads((run_dir / "results.json").read_text())
    assert results["counts"]["n"] == 6 and results["counts"]["n_failed"] == 0
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 6
    parsed = [r for r in records if r["parse_status"] == "ok"]
    assert parsed, "the warmed-up model should answer in the protocol"
    assert all(r["answer"] in ("A", "B") for r in parsed)
    acc = results["metrics"]["average"]["accuracy"]
    assert 0.0 <= acc <= 1.0


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    """A raised grpo.max_steps resumes the finished run and trains the extra step."""
    out = copy_training(tmp_path / "tiny")
    assert (out / "checkpoints" / f"checkpoint-{FIRST_STEPS}").is_dir()
    adapter_before = (out / "adapter" / "adapter_model.safetensors").read_bytes()
    proc = _cli("train", "--recipe", "tiny", "--set", f"grpo.max_steps={FIRST_STEPS + 1}", "--out", str(out),
                "--data-root", str(tiny_training().data_root))  # with progress: the bar and step lines
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 2" in proc.stderr
    err = proc.stderr
    assert f"== warm-up: done in an earlier run, using {out / 'base-sft'} ==" in err
    assert "== GRPO (TRL GRPOTrainer): 3 steps, resuming from step 2 (checkpoint-2); 4 completions per prompt" in err
    # the bar starts at the checkpoint's step with the run's total (tqdm prints 2/3 before the first new step)
    bar = [x for x in re.split(r"[\r\n]", err) if x.startswith("GRPO:")]
    assert bar and re.match(r"GRPO: +67%\|.*\| 2/3 \[", bar[0]) and re.match(r"GRPO: 100%\|.*\| 3/3 \[", bar[-1])
    assert not any(re.search(r"\| [01]/3 ", x) for x in bar)
    (step,) = [x for x in err.splitlines() if x.startswith("step ")]  # one line per logged step of this session
    assert re.fullmatch(r"step 3/3  loss \S+  reward \S+ \(r_cls \S+, r_format \S+, r_loc \S+\)  KL \S+  "
                        r"lr \S+", step), step
    assert err.splitlines()[-1] == f"adapter: {out / 'adapter'}; score it with: " + score_command(
        json.loads((out / "adapter" / TRAINING_METADATA).read_text()), out / "adapter")
    meta = json.loads((out / "adapter" / TRAINING_METADATA).read_text())
    assert meta["steps"]["global_step"] == FIRST_STEPS + 1
    assert meta["steps"]["resumed_from"].endswith(f"checkpoint-{FIRST_STEPS}")
    assert meta["steps"]["this_session"] == 1
    assert meta["warmup"]["steps"] == tiny_training().metadata["warmup"]["steps"]  # not redone
    assert meta["seconds"]["base_and_warmup"] < 5
    assert [h["step"] for h in meta["log_history"] if "reward" in h] == [1, 2, 3]  # history carried over
    assert (out / "checkpoints" / f"checkpoint-{FIRST_STEPS + 1}").is_dir()  # saved at the end
    assert "already complete" not in proc.stderr
    # the extra step learns: its learning rate is the new schedule's (linear to 0 at step 3: 1/3 of the peak),
    # not the old one's end (0) that the checkpoint's optimizer state carries
    lr = {h["step"]: h["learning_rate"] for h in meta["log_history"] if "learning_rate" in h}
    assert lr[FIRST_STEPS + 1] == pytest.approx(load_recipe("tiny")["grpo"]["learning_rate"] / 3)
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() != adapter_before


def _train_args(out: Path, *overrides: str) -> list[str]:
    args = ["train", "--recipe", "tiny", "--out", str(out), "--data-root", str(tiny_training().data_root),
            "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    return args


def _contents(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its SHA-256: what "nothing changed" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_run_is_already_complete_and_changes_nothing(tmp_path):
    out = copy_training(tmp_path / "tiny")
    before = _contents(out)
    proc = _cli(*_train_args(out, f"grpo.max_steps={FIRST_STEPS}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already complete" in proc.stderr and str(out / "adapter") in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out / "adapter")
    assert _contents(out) == before  # adapter bytes, metadata, checkpoints: all as they were
    # a lower target is complete too (it trained more than asked)
    proc = _cli(*_train_args(out, f"grpo.max_steps={FIRST_STEPS - 1}"))
    assert proc.returncode == 0 and "already complete" in proc.stderr
    assert _contents(out) == before


def test_an_epoch_target_is_complete_or_raised_by_the_epochs(tmp_path):
    """Epoch-based targets: on 2 prompts an epoch is 2 GRPO steps."""
    out = copy_training(tmp_path / "tiny", with_checkpoints=False)  # keeps the warmed-up base: GRPO only
    shutil.rmtree(out / "adapter")
    (out / RECIPE_RECORD).unlink()  # a new run of its own recipe in this folder
    epochs = ["grpo.max_steps=-1", "data.limit=2"]
    proc = _cli(*_train_args(out, *epochs, "grpo.num_train_epochs=1"))
    assert proc.returncode == 0 and "2 GRPO steps" in proc.stderr, proc.stderr[-3000:]
    before = _contents(out)
    proc = _cli(*_train_args(out, *epochs, "grpo.num_train_epochs=1"))  # decided from the metadata
    assert proc.returncode == 0 and "already complete (2 GRPO steps)" in proc.stderr, proc.stderr[-3000:]
    assert _contents(out) == before
    proc = _cli(*_train_args(out, *epochs, "grpo.num_train_epochs=2"))  # raised: two more steps
    assert proc.returncode == 0 and "4 GRPO steps (2 this run, resumed from step 2)" in proc.stderr
    after = _contents(out)
    proc = _cli(*_train_args(out, *epochs, "grpo.num_train_epochs=2"))  # decided from the metadata
    assert proc.returncode == 0 and "already complete (4 GRPO steps)" in proc.stderr
    assert _contents(out) == after


def test_continuing_a_run_with_another_recipe_is_refused(tmp_path):
    """Only the length of training and bookkeeping may change on resume: anything else splices two trainings."""
    out = copy_training(tmp_path / "tiny")
    before = _contents(out)
    proc = _cli(*_train_args(out, f"grpo.max_steps={FIRST_STEPS + 1}", "grpo.beta=0.1", "rewards.alpha=0.5"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and f"{out} holds a training run of another recipe" in proc.stderr
    assert "grpo.beta: 0.04 -> 0.1" in proc.stderr and "rewards.alpha: 0.3 -> 0.5" in proc.stderr
    assert "max_steps" not in proc.stderr.split("recipe (", 1)[1].split(")", 1)[0]  # a raised target is allowed
    assert _contents(out) == before


def test_a_run_killed_after_its_last_checkpoint_writes_the_adapter_without_training(tmp_path):
    """Killed while the adapter was written (its metadata file comes last): the last checkpoint is the result."""
    from safetensors.torch import load_file

    out = copy_training(tmp_path / "tiny")
    (out / "adapter" / TRAINING_METADATA).unlink()
    weights = out / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    proc = _cli(*_train_args(out, f"grpo.max_steps={FIRST_STEPS}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "adapter" / TRAINING_METADATA).read_text())
    assert meta["steps"]["global_step"] == FIRST_STEPS and meta["steps"]["this_session"] == 0
    assert [h["step"] for h in meta["log_history"] if "reward" in h] == [1, 2]
    assert not (out / "checkpoints" / f"checkpoint-{FIRST_STEPS + 1}").exists()  # no extra step
    saved, ckpt = load_file(str(weights)), load_file(str(out / "checkpoints" / f"checkpoint-{FIRST_STEPS}" /
                                                         "adapter_model.safetensors"))
    assert saved.keys() == ckpt.keys() and all(saved[k].equal(ckpt[k]) for k in saved)


#: Runs `adbench` and SIGKILLs it while TRL writes checkpoint-{step}: after the adapter files,
#: before the optimizer, scheduler, RNG and trainer state. The kill is real; only its moment is chosen.
KILL_WHILE_SAVING = """
import os, signal, sys
from transformers import Trainer
save = Trainer._save_optimizer_and_scheduler
def killed_midway(self, output_dir):
    if output_dir.endswith("checkpoint-{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, output_dir)
Trainer._save_optimizer_and_scheduler = killed_midway
from adbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_sets_aside_checkpoints_a_kill_left_incomplete(tmp_path):
    out = copy_training(tmp_path / "tiny")
    ckpts = out / "checkpoints"
    args = _train_args(out, f"grpo.max_steps={FIRST_STEPS + 1}")
    driver = tmp_path / "killed_while_saving.py"
    driver.write_text(KILL_WHILE_SAVING.format(step=FIRST_STEPS + 1))
    killed = subprocess.run([sys.executable, str(driver), *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    partial = ckpts / f"checkpoint-{FIRST_STEPS + 1}"
    assert (partial / "adapter_model.safetensors").is_file() and not (partial / "trainer_state.json").exists()
    # what a kill leaves at two other moments: a folder just created, and the trainer state (written last) cut short
    (ckpts / "checkpoint-4").mkdir()
    shutil.copytree(ckpts / f"checkpoint-{FIRST_STEPS}", ckpts / "checkpoint-5")
    state = ckpts / "checkpoint-5" / "trainer_state.json"
    state.write_text(state.read_text()[:200])
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in (FIRST_STEPS + 1, 4, 5):
        assert f"checkpoint-{n} is incomplete" in proc.stderr
        assert (out / "checkpoints.incomplete" / f"checkpoint-{n}").is_dir()
    assert "resumed from step 2" in proc.stderr
    meta = json.loads((out / "adapter" / TRAINING_METADATA).read_text())
    assert meta["steps"]["global_step"] == FIRST_STEPS + 1
    assert meta["steps"]["resumed_from"].endswith(f"checkpoint-{FIRST_STEPS}")
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-3"]
    assert json.loads((ckpts / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.mark.skipif(TENSORBOARD, reason="tensorboard is installed: its logging is tested instead")
def test_tensorboard_without_tensorboard_is_one_line(tmp_path):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("tensorboard is not installed: CI installs adbench[dev], which includes it")
    proc = _cli("train", "--recipe", "tiny", "--set", "grpo.report_to=[tensorboard]", "--print-config")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "grpo.report_to: tensorboard is not installed; pip install 'adbench[tensorboard]'" in proc.stderr


@pytest.mark.skipif(not TENSORBOARD, reason="tensorboard not installed (pip install 'adbench[tensorboard]')")
def test_tensorboard_logs_the_grpo_steps(tmp_path):
    """`--set grpo.report_to=[tensorboard]` (a bookkeeping key: allowed on resume) writes TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = copy_training(tmp_path / "tiny")
    proc = _cli(*_train_args(out, f"grpo.max_steps={FIRST_STEPS + 1}", "grpo.report_to=[tensorboard]"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (logdir,) = (out / "checkpoints" / "runs").iterdir()
    events = EventAccumulator(str(logdir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/reward", "train/kl", "train/loss", "train/rewards/r_cls/mean"} <= tags
    assert [e.step for e in events.Scalars("train/reward")] == [FIRST_STEPS + 1]


def test_train_cli_errors_name_the_problem(tmp_path):
    proc = _cli("train", "--recipe", "no-such-recipe", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown recipe 'no-such-recipe'" in proc.stderr
    proc = _cli("train", "--recipe", "tiny", "--set", "grpo.no_such_option=1", "--out", str(tmp_path),
                "--data-root", str(tiny_assets().data_root))
    assert proc.returncode == 2 and "no_such_option" in proc.stderr


def test_variance_reports_three_consistent_shares(trained, capsys):
    from adbench.cli import main

    argv = ["variance", "--model", "adfm", "-M", f"adapter={trained.adapter}", "--task", "demo-binary",
            "--data-root", str(trained.data_root), "--limit", "4", "-n", "6", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and report["n_images"] == 4
    assert set(report["shares"]) == set(REWARDS)
    for name in REWARDS:
        share = report["shares"][name]
        assert 0.0 <= share <= 1.0
        recomputed = sum(all_equal(img["rewards"][name]) for img in report["images"]) / 4
        assert share == pytest.approx(recomputed)
    for img in report["images"]:
        assert all(len(img["rewards"][name]) == 6 for name in REWARDS)
        assert all(r in (0.0, 1.0) for r in img["rewards"]["binary"])
        assert len(img["answers"]) == 6 and img["failed"] == 0
    assert main(argv[:-1]) == 0
    table = capsys.readouterr().out
    assert "binary + GIoU (r_cls + r_loc)" in table and "%" in table


@pytest.mark.parametrize("name", ["paper-multidomain", "paper-crossdataset", "one-stage-cls", "multi-stage-cls",
                                  "multi-stage-cls-random", "multi-stage-cls-count", "multi-stage-cls-loc"])
def test_paper_recipes_give_the_papers_grpo_config(name, tmp_path):
    from adbench.training.lora import lora_config
    from adbench.training.trainer import grpo_config

    # bf16 needs a GPU; everything else is checked as the recipe states it
    recipe = load_recipe(name, ["grpo.bf16=false", "grpo.use_cpu=true", "vllm.enabled=false"])
    cfg = grpo_config(recipe, tmp_path)
    assert (cfg.loss_type, cfg.beta, cfg.num_generations, cfg.temperature, cfg.learning_rate) == \
        ("grpo", 0.04, 6, 0.9, 1e-5)
    assert cfg.gradient_checkpointing and cfg.max_completion_length == 512 and cfg.num_train_epochs == 15
    assert cfg.use_vllm is False and cfg.remove_unused_columns is False
    lora = lora_config(recipe)
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (64, 128, LANGUAGE_LINEAR)
    assert recipe["model"] == {"dtype": "bfloat16", "attn_implementation": "eager"}


def test_vllm_switch(tmp_path, monkeypatch):
    from adbench.training import config, trainer

    recipe = load_recipe("tiny", ["vllm.enabled=true"])
    monkeypatch.setattr(config, "vllm_available", lambda: False)
    with pytest.raises(trainer.TrainingError, match="vllm is not installed"):
        trainer.grpo_config(recipe, tmp_path)
    monkeypatch.setattr(config, "vllm_available", lambda: True)
    recipe = load_recipe("tiny", ["vllm.enabled=auto", "vllm.mode=server"])
    assert trainer.use_vllm(recipe) is True
    assert config.grpo_kwargs(recipe)["vllm_mode"] == "server"
    assert trainer.use_vllm(load_recipe("tiny", ["vllm.enabled=false"])) is False


def test_print_config_matches_the_trained_runs_trl_config(trained):
    """The printed GRPOConfig arguments give the very config the tiny run recorded (GRPOConfig.to_dict())."""
    import trl
    from trl import GRPOConfig

    from adbench import compat
    from adbench.training.config import describe
    from adbench.training.trainer import json_safe

    overrides = [f"grpo.max_steps={FIRST_STEPS}"]
    printed = describe(load_recipe("tiny", overrides), trained.out, overrides, progress=False)
    recorded = dict(trained.metadata["trl_config"])
    # GRPOTrainer itself turns this on for a vision-language model from TRL 1.16 on (grpo_trainer.py: DDP
    # and unused vision weights); earlier releases leave it unset
    by_trl = True if compat.parse_version(trl.__version__) >= (1, 16) else None
    assert recorded.pop("ddp_find_unused_parameters") is by_trl
    rebuilt = json_safe(GRPOConfig(**printed["grpo_config_kwargs"]).to_dict())
    assert rebuilt.pop("ddp_find_unused_parameters") is None
    assert rebuilt == recorded


def test_list_recipes(capsys):
    from adbench.cli import main
    from adbench.training.recipes import available

    assert main(["list", "recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available()
    assert any(line.startswith("tiny") and "SFT warm-up" in line for line in lines)


def test_cpu_warmup_loss_equals_the_models_own_completion_loss():
    """The CPU SFT loss (cross-entropy on completion positions only) is the causal-LM loss TRL minimises."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from adbench.training.warmup import completion_loss_trainer

    base = tiny_assets().base
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, use_safetensors=True)
    proc = AutoProcessor.from_pretrained(base)
    image = Image.new("RGB", (56, 56), (120, 30, 200))

    def conversation(question: str, reply: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": reply}]}]

    # two rows of different lengths (right-padded) whose completions sit at different positions: the loss
    # reads each row's own completion tokens, not the union of the rows' positions it computes logits on
    proc.tokenizer.padding_side = "right"
    enc = proc.apply_chat_template([conversation("Q?", "<answer>B</answer>"),
                                    conversation("Is there a defect on this part at all?", "<answer>A</answer> yes")],
                                   tokenize=True, return_dict=True, return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    assert lengths[0] != lengths[1]
    for row, (length, completion) in enumerate(zip(lengths, (8, 11))):
        labels[row, :length - completion] = -100  # only the last tokens of each row are "completion"
        labels[row, length:] = -100  # padding
    inputs = {**enc, "labels": labels}
    fake = SimpleNamespace(args=SimpleNamespace(average_tokens_across_devices=False))
    with torch.no_grad():
        ours = completion_loss_trainer().compute_loss(fake, model, dict(inputs))
        theirs = model(**inputs).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
