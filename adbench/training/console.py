"""What `adbench train` prints while it trains: a header per phase, one step bar per phase with its
total and an ETA, and one readable line per logged step.

transformers' own `ProgressCallback` starts its bar at 0 on a resumed run and jumps it
to the checkpoint's step at the first update, which tqdm then counts as progress made in
no time (a rate and ETA that are wrong for the rest of the run), and it prints each log
as a Python dict. `StepBar` replaces it: the bar starts at the step training resumes
from (tqdm's `initial`, which its rate and ETA leave out), its total is the run's target
step, and each log becomes `step 3/3  loss 0.0012  reward 1.520 (r_format 1.00, ...)  KL 0.0004
lr 3.33e-05`. With `--no-progress` there is no bar and no step line; the headers stay.
Only the main process prints (`accelerate launch` runs one per GPU).
"""

from __future__ import annotations

import sys
from typing import Any

from adbench.plots import reward_components


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def phase(title: str) -> None:
    """A phase header, `== GRPO: ... ==`, on stderr (the main process's)."""
    if is_main_process():
        print(f"== {title} ==", file=sys.stderr, flush=True)


def log_line(logs: dict[str, Any], step: int, total: int) -> str | None:
    """One logged step as text; None for a log without step figures (the trainer's end-of-run summary)."""
    parts = []
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4g}")
    if "reward" in logs:
        comps = reward_components(logs)
        detail = f" ({', '.join(f'{name} {logs[k]:.2f}' for k, name in comps)})" if comps else ""
        parts.append(f"reward {logs['reward']:.3f}{detail}")
    if "kl" in logs:
        parts.append(f"KL {logs['kl']:.4g}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.3g}")
    return f"step {step}/{total}  " + "  ".join(parts) if parts else None


def step_bar(name: str) -> Any:
    """A TrainerCallback drawing the phase's step bar and log lines (see the module docstring)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                # initial: a resumed run's bar starts at its checkpoint's step, and tqdm's rate counts only new steps
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=name, unit="step",
                                dynamic_ncols=True, file=sys.stderr)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            line = log_line(logs or {}, state.global_step, state.max_steps)
            if self.bar is not None and line:
                self.bar.write(line, file=sys.stderr)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepBar()


def attach_console(trainer: Any, name: str, progress: bool) -> None:
    """The trainer's console output: `StepBar` instead of transformers' bar and log printer; nothing without progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(step_bar(name))


def score_command(metadata: dict[str, Any], adapter: Any) -> str:
    """The `adbench run` command that scores a trained adapter on the held-out split of its training task."""
    import shlex

    data = metadata["recipe"]["data"]
    args = dict(data.get("task_args") or {})
    if "split" in args:
        args["split"] = "eval"  # the training task's held-out split

    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    words = ["adbench", "run", "--model", "adfm", "-M", f"adapter={adapter}", "--task", data["task"]]
    for k, v in args.items():
        words += ["-T", f"{k}={text(v)}"]
    if metadata.get("data_root"):
        words += ["--data-root", str(metadata["data_root"])]
    return shlex.join(words)
