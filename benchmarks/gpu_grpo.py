"""Seconds per GRPO step of the AD-FM recipe on one GPU, for each rollout path TRL offers.

Random Qwen2.5-VL-7B weights (`random_qwen.py`, as `gpu_adfm.py` builds them) trained by
TRL's GRPOTrainer exactly as `adbench train` configures it: the `release-multidomain`
recipe loaded and resolved by adbench (`load_recipe`, `grpo_kwargs`, `make_reward_funcs`,
`lora_config`, the GRPO dataset's columns), with its shapes: two 504x504 images per prompt
(a normal reference and the query), 6 generations per prompt, 512 completion tokens, LoRA
r64 on the language model, bf16, gradient checkpointing, beta 0.04 (a reference forward
per round). A random model never writes its end token, so every completion is 512 tokens
long: the longest rollouts the recipe allows.

One optimizer step here is one of the release's micro-batches: PROMPTS=5 prompts x 6 = 30
completions, ACCUM=1 accumulation step (the release accumulates 10 of them per optimizer
step, generated in one round of 300 completions). WARMUP steps run first, untimed; then
STEPS steps are timed.

Rollout paths (PATHS, comma list; all by default):
  generate  `rollout.path: generate`: transformers' generate, dynamic KV cache (TRL's default)
  static    `rollout.path: static`: generate with a static KV cache (TRL passes disable_compile=True)
  paged     transformers' continuous batching (GRPOConfig use_transformers_continuous_batching, the
            former use_transformers_paged); no recipe offers it, because TRL refuses it for
            multimodal models: tried here, and reported as skipped with TRL's own reason
  vllm      `vllm.enabled: true, vllm.mode: colocate`, when `import vllm` works; else skipped

Per path and timed step: s/step (the optimizer step's wall time), `generate_s` (TRL's
`_generate_single_turn`: the rollouts), `scoring_s` (the rest of
`_generate_and_score_completions`: decoding, rewards, the reference model's log-probs),
`train_s` (the loss's forward and backward over the micro-batches), `other_s` (optimizer
step, logging); rollout tokens/s (completion tokens / generate_s); peak memory (GPU:
`max_memory_allocated`; CPU: the process's peak RSS). The timers synchronize the GPU.

A random model samples any token, Qwen's vision tokens included; a sampled <|video_pad|>
in a completion would be read as a video by the training forward. TRL suppresses
<|image_pad|> in rollouts; here <|video_pad|>, <|vision_start|> and <|vision_end|> are
suppressed too (`generation_kwargs`, transformers paths only), which a trained model
never writes anyway.

    python benchmarks/gpu_grpo.py                  # 7B on a GPU
    SIZE=tiny python benchmarks/gpu_grpo.py        # tiny model, CPU dry run (about 80 s of CPU time; tested)

Environment: SIZE (7b|tiny), PATHS, PROMPTS, ACCUM, STEPS, WARMUP, COMPLETION (max completion
tokens), SIDE (image side, px), TOKENIZER_DIR (a saved Qwen2.5 tokenizer folder, for machines
without the dashscope package), OUT. Prints one `GRPO {json}` line per path and writes
$OUT/gpu_grpo.json (after every path, so a run cut short keeps what it measured).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gpu_common import log, peak_gib, peak_kind, sync  # noqa: E402 - beside this file
from PIL import Image  # noqa: E402
from random_qwen import random_qwen  # noqa: E402

SIZE = os.environ.get("SIZE", "7b")
TINY = SIZE == "tiny"
PATHS = os.environ.get("PATHS", "generate,static,paged,vllm").split(",")
PROMPTS = int(os.environ.get("PROMPTS", "1" if TINY else "5"))
ACCUM = int(os.environ.get("ACCUM", "1"))
STEPS = int(os.environ.get("STEPS", "1" if TINY else "2"))
WARMUP = int(os.environ.get("WARMUP", "1"))
COMPLETION = int(os.environ.get("COMPLETION", "8" if TINY else "512"))
SIDE = int(os.environ.get("SIDE", "56" if TINY else "504"))
RECIPE = "release-multidomain"
GENERATIONS = 6  # the recipe's num_generations (checked below)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
KNOWN_PATHS = ("generate", "static", "paged", "vllm")


@contextmanager
def timed(clock: dict, name: str):
    sync(DEV)
    t = time.perf_counter()
    try:
        yield
    finally:
        sync(DEV)
        clock[name] += time.perf_counter() - t


def overrides(path: str) -> list[str]:
    """The recipe's --set values for this benchmark and path (adbench resolves them as `train` would)."""
    out = [f"grpo.per_device_train_batch_size={PROMPTS * GENERATIONS}", f"grpo.gradient_accumulation_steps={ACCUM}",
           f"grpo.max_steps={WARMUP + STEPS}", f"grpo.max_completion_length={COMPLETION}", "grpo.save_strategy=no",
           "grpo.logging_steps=1", "grpo.report_to=[]"]
    out += ["vllm.enabled=true", "vllm.mode=colocate"] if path == "vllm" else ["vllm.enabled=false"]
    if path in ("generate", "static"):
        out.append(f"rollout.path={path}")
    if DEV == "cpu":
        out += ["grpo.bf16=false", "grpo.use_cpu=true", "model.dtype=float32"]
    return out


def make_dataset(n: int, tmp: Path):
    """`n` GRPO rows as adbench's dataset has them (`grpo_data.features`): AD-FM prompts with a reference
    and a query image (random SIDE x SIDE pictures, already the model-input size), half anomalous with a box."""
    from datasets import Dataset

    from adbench.data.layout import AD_OPTIONS, AD_QUESTION
    from adbench.models import adfm_protocol as proto
    from adbench.schema import Box, Query
    from adbench.training.grpo_data import features, placeholder_messages

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        paths = []
        for j in range(2):
            path = tmp / f"grpo_{i}_{j}.png"
            Image.fromarray(rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        query = Query(id=f"g{i}", images=paths, question=AD_QUESTION, options=dict(AD_OPTIONS),
                      prompt="", n_references=1)
        prompt, images = placeholder_messages(proto.build_messages(query, proto.MULTI_STAGE))
        anomalous = i % 2 == 0
        boxes = [Box(SIDE / 4, SIDE / 4, SIDE / 2, SIDE / 2, "scratch").to_dict()] if anomalous else []
        rows.append(dict(id=f"g{i}", prompt=prompt, images=images, label=int(anomalous), gold="A" if anomalous else "B",
                         options=json.dumps(AD_OPTIONS), stages=proto.MULTI_STAGE, gt_boxes=boxes, input_size=[SIDE, SIDE],
                         image_size=[SIDE, SIDE], dataset="synthetic", category="noise",
                         defect="scratch" if anomalous else "good"))
    return Dataset.from_list(rows, features=features())


def timed_trainer_class():
    """GRPOTrainer with timers around its rollout, scoring and training steps (nothing else changed)."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.clock: dict[str, float] = defaultdict(float)
            self.completion_tokens = 0

        def _generate_single_turn(self, *args, **kwargs):
            with timed(self.clock, "generate"):
                completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            self.completion_tokens += sum(len(c) for c in completion_ids)
            return completion_ids, logprobs

        def _generate_and_score_completions(self, *args, **kwargs):
            with timed(self.clock, "rollout"):
                return super()._generate_and_score_completions(*args, **kwargs)

        def training_step(self, *args, **kwargs):
            with timed(self.clock, "micro_steps"):
                return super().training_step(*args, **kwargs)

    return TimedGRPOTrainer


def step_clock(steps: list[dict]):
    """A callback recording each optimizer step's wall time and its parts (from the trainer's timers)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        trainer = None

        def on_step_begin(self, args, state, control, **kwargs):
            sync(DEV)
            if state.global_step == WARMUP and DEV == "cuda":
                torch.cuda.reset_peak_memory_stats()  # the timed steps' peak
            self.start = (time.perf_counter(), dict(self.trainer.clock), self.trainer.completion_tokens)

        def on_step_end(self, args, state, control, **kwargs):
            sync(DEV)
            t0, clock0, tokens0 = self.start
            delta = {k: v - clock0.get(k, 0.0) for k, v in self.trainer.clock.items()}
            step_s = time.perf_counter() - t0
            rollout, generate = delta.get("rollout", 0.0), delta.get("generate", 0.0)
            steps.append(dict(step=state.global_step, timed=state.global_step > WARMUP, s=round(step_s, 3),
                              generate_s=round(generate, 3), scoring_s=round(rollout - generate, 3),
                              train_s=round(delta.get("micro_steps", 0.0) - rollout, 3),
                              other_s=round(step_s - delta.get("micro_steps", 0.0), 3),
                              completion_tokens=self.trainer.completion_tokens - tokens0))

    return StepClock()


def vllm_missing() -> str | None:
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure to import is a reason to skip
        return f"import vllm failed: {type(e).__name__}: {e}"[:300]
    return None


def run_path(path: str, processor, dataset, tmp: Path) -> dict:
    from trl import GRPOConfig

    from adbench.models import tiny_qwen
    from adbench.training.config import grpo_kwargs, model_kwargs, rollout_engine
    from adbench.training.lora import lora_config
    from adbench.training.recipes import load_recipe
    from adbench.training.reward_funcs import make_reward_funcs

    missing = vllm_missing() if path == "vllm" else None
    if missing:
        return dict(path=path, status="skipped", reason=missing)
    recipe = load_recipe(RECIPE, overrides(path))
    if int(recipe["grpo"]["num_generations"]) != GENERATIONS:
        raise SystemExit(f"{RECIPE} has num_generations {recipe['grpo']['num_generations']}, expected {GENERATIONS}")
    kwargs = grpo_kwargs(recipe, tmp / f"out-{path}", progress=False)
    if path == "paged":  # TRL's continuous batching: not a recipe setting (see the module docstring)
        # the field's name in the installed TRL (use_transformers_paged up to TRL 1.x's rename)
        names = ("use_transformers_continuous_batching", "use_transformers_paged")
        kwargs[next(n for n in names if n in GRPOConfig.__dataclass_fields__)] = True
    if path != "vllm":  # a random model samples vision tokens; see the module docstring
        kwargs["generation_kwargs"] = {"suppress_tokens": [tiny_qwen.IMAGE_PAD_ID, tiny_qwen.VIDEO_PAD_ID,
                                                           tiny_qwen.VISION_START_ID, tiny_qwen.VISION_END_ID]}
    args = GRPOConfig(**kwargs)
    dtype = model_kwargs(recipe)["dtype"]
    t = time.perf_counter()
    model = random_qwen(SIZE, DEV, dtype, attn_implementation=recipe["model"].get("attn_implementation") or "sdpa")
    build_s = time.perf_counter() - t
    steps: list[dict] = []
    clock = step_clock(steps)
    try:
        trainer = timed_trainer_class()(model=model, reward_funcs=make_reward_funcs(recipe), args=args,
                                        train_dataset=dataset, processing_class=processor,
                                        peft_config=lora_config(recipe), callbacks=[clock])
    except (ValueError, NotImplementedError, ImportError) as e:  # TRL refuses this path for this model
        return dict(path=path, status="skipped", reason=f"TRL refuses it: {type(e).__name__}: {e}"[:500])
    clock.trainer = trainer
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    timed_steps = [s for s in steps if s["timed"]]
    if not timed_steps:
        raise RuntimeError(f"no timed step (steps: {steps})")

    def mean(key: str) -> float:
        return round(sum(s[key] for s in timed_steps) / len(timed_steps), 3)

    tokens = sum(s["completion_tokens"] for s in timed_steps)
    generate_s = sum(s["generate_s"] for s in timed_steps)
    row = dict(path=path, status="ok", engine="transformers continuous batching" if path == "paged"
               else rollout_engine(recipe, args.use_vllm), cache_implementation=args.cache_implementation,
               s_per_step=mean("s"), generate_s=mean("generate_s"), scoring_s=mean("scoring_s"),
               train_s=mean("train_s"), other_s=mean("other_s"),
               generate_share=round(generate_s / sum(s["s"] for s in timed_steps), 3),
               rollout_tok_s=round(tokens / generate_s, 1) if generate_s else None,
               completions_per_step=PROMPTS * GENERATIONS * ACCUM,
               completion_tokens_per_step=round(tokens / len(timed_steps), 1),
               peak_gib=peak_gib(DEV), peak_kind=peak_kind(DEV),
               model_build_s=round(build_s, 1), train_call_s=round(train_s, 1), steps=steps)
    return row  # the trainer and model go with this frame; main frees their memory


def main() -> None:
    import transformers
    import trl

    from adbench.models import tiny_qwen
    from adbench.training.grpo_data import configure_processor, frame_budget
    from adbench.training.recipes import load_recipe

    unknown = [p for p in PATHS if p not in KNOWN_PATHS]
    if unknown:
        raise SystemExit(f"unknown PATHS entries {unknown} (known: {', '.join(KNOWN_PATHS)})")
    out_dir = Path(os.environ.get("OUT", "."))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="adbench-gpu-grpo-"))
    lo, hi = frame_budget(load_recipe(RECIPE))
    processor = configure_processor(tiny_qwen.build_qwen_processor(
        min_pixels=lo, max_pixels=hi, tokenizer=os.environ.get("TOKENIZER_DIR"), cache_dir=None), lo, hi)
    dataset = make_dataset(PROMPTS * ACCUM * (WARMUP + STEPS), tmp)
    rows: list[dict] = []
    report = dict(size=SIZE, device=torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu",
                  torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__,
                  recipe=RECIPE, side=SIDE, images_per_prompt=2, generations=GENERATIONS, prompts_per_step=PROMPTS,
                  accumulation=ACCUM, completion_tokens=COMPLETION, warmup_steps=WARMUP, timed_steps=STEPS,
                  rows=rows)
    for path in PATHS:
        t = time.perf_counter()
        try:
            row = run_path(path, processor, dataset, tmp)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: record it, measure the next path
            row = dict(path=path, status="failed", error=f"{type(e).__name__}: {e}"[:2000])
        gc.collect()  # the last path's trainer and model, before the next one is built
        if DEV == "cuda":
            torch.cuda.empty_cache()
        row["wall_s"] = round(time.perf_counter() - t, 1)
        log("GRPO", row)
        rows.append(row)
        (out_dir / "gpu_grpo.json").write_text(json.dumps(report, indent=1))
    base = next((r for r in rows if r["path"] == "generate" and r["status"] == "ok"), None)
    for r in rows:  # against TRL's plain generate path, measured in the same call
        if base and r["status"] == "ok":
            r["rollout_vs_generate"] = round(r["rollout_tok_s"] / base["rollout_tok_s"], 3)
            r["step_vs_generate"] = round(base["s_per_step"] / r["s_per_step"], 3)
    (out_dir / "gpu_grpo.json").write_text(json.dumps(report, indent=1))
    print(out_dir / "gpu_grpo.json")


if __name__ == "__main__":
    main()
