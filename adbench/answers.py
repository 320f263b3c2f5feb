"""Turning a model's reply into an option letter, without guessing.

MMAD's convention: the last standalone capital letter among the options; failing
that, the option whose text the reply contains. A reply that matches neither, or
that names two different options' texts, is reported as unparsed rather than
resolved by chance.
"""

from __future__ import annotations

import re

from adbench.schema import PARSED, UNPARSED

_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
_YES = re.compile(r"^\W*(yes|anomalous|abnormal|defective)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|normal|good|non-defective)\b", re.IGNORECASE)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def parse_option(text: str | None, options: dict[str, str]) -> tuple[str | None, str]:
    """Return (letter, status): the chosen option letter or None, and PARSED / UNPARSED."""
    if not text or not text.strip():
        return None, UNPARSED
    letters = [m.group(1) for m in _LETTER.finditer(text) if m.group(1) in options]
    if letters:
        return letters[-1], PARSED
    reply = f" {_norm(text)} "
    hits = [k for k, v in options.items() if _norm(v) and f" {_norm(v)} " in reply]
    if len(hits) == 1:
        return hits[0], PARSED
    if len(hits) > 1:  # the reply names several options' texts: report, do not pick
        return None, UNPARSED
    # Yes/No questions answered in words ("Yes, there is a scratch").
    yes = [k for k, v in options.items() if _norm(v) == "yes"]
    no = [k for k, v in options.items() if _norm(v) == "no"]
    if yes and no:
        if _YES.match(text):
            return yes[0], PARSED
        if _NO.match(text):
            return no[0], PARSED
    return None, UNPARSED
