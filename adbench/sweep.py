"""Many runs in one command: every (model, task) pair of `adbench run`, one after another.

Each pair is an ordinary run (its own run directory, resumed by the same command), so a
sweep interrupted anywhere continues where it stopped, every sample recorded exactly once.
A pair that fails (a user's error such as a missing dataset, or a bug) is reported and the
next pair runs; the sweep's exit status is the worst of its pairs' (`worst`).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adbench.distributed import World
from adbench.errors import UserError
from adbench.runner import EXIT_BUDGET, EXIT_FAILED, EXIT_OK, EXIT_USAGE, RunOutcome, RunSpec, run

#: Exit statuses from best to worst: done; stopped by --max-cost (incomplete, continues); not trustworthy
#: (too many failures, the model failed from the start, a bug); nothing run (the input is wrong).
SEVERITY = (EXIT_OK, EXIT_BUDGET, EXIT_FAILED, EXIT_USAGE)


def worst(codes: Sequence[int]) -> int:
    """The worst of several exit statuses (EXIT_OK for none)."""
    return max(codes, key=SEVERITY.index, default=EXIT_OK)


@dataclass
class PairResult:
    spec: RunSpec
    outcome: RunOutcome | None  # None: the pair did not run to an end (see `error`)
    error: str | None
    exit_code: int

    @property
    def name(self) -> str:
        return f"{self.spec.model} on {self.spec.task}"


def run_pairs(specs: Sequence[RunSpec], on_outcome: Callable[[RunOutcome], None]) -> list[PairResult]:
    """Run each spec in turn; `on_outcome` sees each finished run. A KeyboardInterrupt stops them all."""
    done = []
    announce = World.from_env().is_main  # under torchrun every process runs every pair; one says which
    for i, spec in enumerate(specs, 1):
        if announce:
            print(f"[{i}/{len(specs)}] {spec.model} on {spec.task}", file=sys.stderr)
        try:
            outcome = run(spec)
        except UserError as e:  # this pair's input (its data, its run directory): the others may be fine
            print(f"adbench: error: {spec.model} on {spec.task}: {e}", file=sys.stderr)
            done.append(PairResult(spec, None, str(e), EXIT_USAGE))
            continue
        except Exception as e:  # noqa: BLE001 - a bug: its traceback, and the next pair still runs
            traceback.print_exc()
            done.append(PairResult(spec, None, f"{type(e).__name__}: {e}", EXIT_FAILED))
            continue
        on_outcome(outcome)
        done.append(PairResult(spec, outcome, None, outcome.exit_code))
    return done
