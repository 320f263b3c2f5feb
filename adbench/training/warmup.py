"""Supervised warm-up (TRL's SFTTrainer) on ideal protocol replies, before GRPO.

A model with random weights (the tiny recipe) never writes `<think>...<answer>` by
chance, so every GRPO reward would be the same and there would be nothing to learn
from. A short SFT on the ideal reply of each training sample
(`adfm_protocol.render_response` on its model-frame GT boxes) teaches the format
first. The whole model is trained (it is tiny and random; there is no knowledge to
protect) and saved as safetensors with its processor; the marker file
`adbench_warmup.json` is written last, so an interrupted warm-up is redone rather
than used half-finished.

On a CPU the loss is computed by `CompletionLossSFTTrainer`: the same mean negative
log-likelihood over completion tokens that TRL computes, with torch's cross-entropy
on those positions only. TRL's fused LM-head kernel, without Triton, falls back to
many elementwise passes over the 151,680-wide vocabulary per token, which made a
warm-up step about eight times slower here; on a GPU TRL's own path is used.

Recipe section `sft_warmup`: epochs (or max_steps), learning_rate, batch_size, limit
(samples; stratified), seed.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from adbench import compat
from adbench.runner import stratified_subset
from adbench.training.console import attach_console, phase
from adbench.training.grpo_data import TrainingSamples, build_sft_dataset, configure_processor, frame_budget

MARKER = "adbench_warmup.json"


def completion_loss_trainer() -> type:
    """SFTTrainer whose loss skips TRL's fused LM head (see the module docstring); CPU only."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class CompletionLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            # the LM head on the completion positions only, through the model's own forward: under
            # `accelerate launch` that is DistributedDataParallel's, which synchronises the gradients. A
            # pre-hook hands the head only those rows of its input (position t predicts label t + 1), so
            # the logits come back flattened, row-major as labels[mask]. (transformers >= 5.21 does the
            # same for a 2-D boolean `logits_to_keep`; earlier releases in range only take 1-D positions.)
            keep = torch.zeros_like(inputs["labels"], dtype=torch.bool)
            keep[:, :-1] = mask
            head = getattr(model, "module", model).get_output_embeddings()  # DDP keeps the model in .module
            hook = head.register_forward_pre_hook(lambda _module, args: (args[0][keep],))
            kwargs = {k: v for k, v in inputs.items() if k != "labels"}
            try:
                logits = model(**kwargs, use_cache=False).logits.float()
            finally:
                hook.remove()
            n = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = F.cross_entropy(logits, labels[mask], reduction="sum") / torch.as_tensor(n).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return CompletionLossSFTTrainer


def warmup_done(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def run_warmup(recipe: dict[str, Any], base: str | Path, training: TrainingSamples, out: Path, *,
               model_kwargs: dict[str, Any], progress: bool = True, image_dir: Path | None = None) -> dict[str, Any]:
    """SFT `base` on the ideal replies of `training` into `out`; returns what the metadata records."""
    compat.training()  # overrides SFTTrainer.compute_loss: TRL's trainer internals
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    cfg = recipe["sft_warmup"]
    seed = int(cfg.get("seed", recipe["grpo"].get("seed", 0)))
    subset = training
    if cfg.get("limit"):
        subset = TrainingSamples(stratified_subset(training.samples, int(cfg["limit"]), seed), training.task,
                                 training.split, training.box_errors)
    dataset = build_sft_dataset(recipe, subset, image_dir)
    processor = configure_processor(AutoProcessor.from_pretrained(str(base)), *frame_budget(recipe))
    model = AutoModelForImageTextToText.from_pretrained(str(base), use_safetensors=True, **model_kwargs)
    scratch = Path(out).with_name(Path(out).name + ".work")
    args = SFTConfig(
        output_dir=str(scratch),
        num_train_epochs=float(cfg.get("epochs", 1)),
        max_steps=int(cfg.get("max_steps", -1)),
        learning_rate=float(cfg.get("learning_rate", 1e-4)),
        per_device_train_batch_size=int(cfg.get("batch_size", 4)),
        gradient_accumulation_steps=1,
        lr_scheduler_type=cfg.get("lr_scheduler_type", "constant"),
        warmup_steps=0,
        max_length=None,  # truncation would cut image tokens
        save_strategy="no",
        logging_steps=int(cfg.get("logging_steps", 5)),
        report_to=[],
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=model_kwargs.get("dtype") == torch.bfloat16,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
    )
    t0 = time.perf_counter()
    trainer_cls = SFTTrainer if torch.cuda.is_available() else completion_loss_trainer()
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=processor)
    attach_console(trainer, "warm-up", progress)
    length = f"{args.max_steps} steps" if args.max_steps > 0 else f"{args.num_train_epochs:g} epoch(s)"
    phase(f"warm-up: supervised fine-tuning (TRL SFTTrainer) on the ideal replies of {len(subset.samples)} "
          f"samples, {length} -> {out}")
    result = trainer.train()
    seconds = time.perf_counter() - t0
    out = Path(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    info = {"n_samples": len(subset.samples), "steps": trainer.state.global_step, "seconds": round(seconds, 1),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else float(result.training_loss), "config": dict(cfg)}
    if trainer.is_world_process_zero():  # one writer under `accelerate launch`
        if out.exists():
            shutil.rmtree(out)
        trainer.model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
        shutil.rmtree(scratch, ignore_errors=True)
        (out / MARKER).write_text(json.dumps(info, indent=1), encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
    return info
