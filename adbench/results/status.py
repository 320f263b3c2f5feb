"""What every table, summary and report says about a run besides its figures.

A run with failed samples is marked `§`, an incomplete run `¶` (after the label, in
every format and layout), with a note saying how many; the marks differ from the
published tables' `†`/`‡` and from `*` (an oracle threshold). `run_status` words it
once, for tables, `adbench run` / `score` summaries and the HTML report alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FAILED_MARK = "§"
INCOMPLETE_MARK = "¶"
MARK_NOTES = {
    FAILED_MARK: f"{FAILED_MARK} some samples failed (a failed request or an unreadable image): they count as "
                 "wrong under the strict metric and are dropped under MMAD's rule.",
    INCOMPLETE_MARK: f"{INCOMPLETE_MARK} incomplete run: not every sample of the task was recorded "
                     "(stopped early or interrupted; the same `adbench run` command continues it).",
}


@dataclass
class RunStatus:
    """Failed samples and an incomplete run, as one line each."""

    failed: str | None = None  # "3 of 48 samples failed (most often: ...)"
    incomplete: str | None = None  # "incomplete: 20 of 48 samples recorded (stopped: ...)"

    @property
    def mark(self) -> str:
        return (FAILED_MARK if self.failed else "") + (INCOMPLETE_MARK if self.incomplete else "")

    def lines(self) -> list[str]:
        return [x for x in (self.failed, self.incomplete) if x]

    def notes(self) -> list[str]:
        """The per-row notes of a table, each led by its mark."""
        return [f"{m} {x}" for m, x in ((FAILED_MARK, self.failed), (INCOMPLETE_MARK, self.incomplete)) if x]


def run_status(results: dict[str, Any]) -> RunStatus:
    """Failed samples and completeness of a run, from its results.json."""
    c = results.get("counts") or {}
    n = c.get("n", 0)
    status = RunStatus()
    if c.get("n_failed"):
        status.failed = f"{c['n_failed']} of {n} samples failed"
        top = results.get("failures") or []
        if top and isinstance(top[0], dict) and top[0].get("error"):
            status.failed += f" (most often, {top[0].get('n')}x: {_shorten(str(top[0]['error']))})"
    if not results.get("complete", True):
        expected = c.get("n_expected")
        status.incomplete = (f"incomplete: {n} of {expected} samples recorded" if expected is not None
                             else "incomplete run")
        if results.get("stopped"):
            status.incomplete += f" (stopped: {results['stopped']})"
    return status


def _shorten(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def mark_notes(marks: Sequence[str]) -> list[str]:
    """The legend lines of the marks that appear in a table."""
    return [note for m, note in MARK_NOTES.items() if any(m in x for x in marks)]
