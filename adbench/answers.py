"""Turning a model's reply into an option letter: adbench's strict parser and MMAD's rule.

`parse_option` (the strict headline's parser) takes the last standalone capital letter
that is one of the question's options; failing that, the one option whose text the
reply contains (or a plain yes/no word on a Yes/No question). A reply that matches
nothing, or that names two different options' texts, is reported as unparsed instead
of being resolved by chance, and the strict headline counts it as wrong.

`mmad_answer` is MMAD's own rule, which is looser: any standalone A-E counts, even a
letter that is not an option, and a reply without one is mapped to the closest option
text by difflib, so nearly every reply gets a letter. `accuracy_mmad` in results.json
is computed with it (see `adbench.results.verdicts`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from adbench.schema import ParseStatus

_LETTER = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
_YES = re.compile(r"^\W*(yes|anomalous|abnormal|defective)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|normal|good|non-defective)\b", re.IGNORECASE)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def parse_option(text: str | None, options: dict[str, str]) -> tuple[str | None, ParseStatus]:
    """Return (letter, status): the chosen option letter or None, and PARSED / UNPARSED."""
    if not text or not text.strip():
        return None, ParseStatus.UNPARSED
    letters = [m.group(1) for m in _LETTER.finditer(text) if m.group(1) in options]
    if letters:
        return letters[-1], ParseStatus.PARSED
    reply = f" {_norm(text)} "
    hits = [k for k, v in options.items() if _norm(v) and f" {_norm(v)} " in reply]
    if len(hits) == 1:
        return hits[0], ParseStatus.PARSED
    if len(hits) > 1:  # the reply names several options' texts: report, do not pick
        return None, ParseStatus.UNPARSED
    # Yes/No questions answered in words ("Yes, there is a scratch").
    yes = [k for k, v in options.items() if _norm(v) == "yes"]
    no = [k for k, v in options.items() if _norm(v) == "no"]
    if yes and no:
        if _YES.match(text):
            return yes[0], ParseStatus.PARSED
        if _NO.match(text):
            return no[0], ParseStatus.PARSED
    return None, ParseStatus.UNPARSED


#: The letters MMAD's summary accepts as an answer; anything else is dropped from its figures.
MMAD_LETTERS = ("A", "B", "C", "D", "E")
# Case-sensitive; Python 3's unicode \b, so "é" or "2" next to the letter is a word character.
_MMAD_LETTER = re.compile(r"\b([A-E])\b")


def mmad_answer(text: str | None, options: Mapping[str, str]) -> str | None:
    """MMAD's answer rule: the letter MMAD's evaluation scripts would record for `text`.

    Reference: jam-cc/MMAD `evaluation/examples/GPT4/gpt4v.py` (`parse_answer`), as
    `evaluation/examples/Transformers/qwen2_5_vl_query.py` calls it (with the question's
    options, keeping the last element of what it returns):

    - the last match of `\b([A-E])\b` in the reply: any of A-E, even one that is not an
      option (it then counts as wrong, not as dropped);
    - with no match, the option whose text `difflib.get_close_matches(text, texts, n=1,
      cutoff=0.0)` returns (difflib breaks ties itself), mapped back to the first letter
      whose text equals it. With cutoff 0.0 difflib always returns an option, so every
      reply string gets a letter, an empty or whitespace-only one included;
    - None only when there is no reply (`text` None: a failed request) or the question
      has no options. (MMAD's script then records the raw reply, which its summary drops.)

    `options` are the letters the model was shown. MMAD re-letters options A, B, C, ...
    in their order; on MMAD's data the letters already are A, B, C, ..., so both agree.
    """
    if text is None:
        return None
    letters = _MMAD_LETTER.findall(text)
    if letters:
        return letters[-1]
    match = difflib.get_close_matches(text, list(options.values()), n=1, cutoff=0.0)
    if not match:
        return None
    return next(k for k, v in options.items() if v == match[0])
