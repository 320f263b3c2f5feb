import pytest

from adbench.answers import parse_option
from adbench.schema import ParseStatus

YN = {"A": "Yes.", "B": "No."}
DC = {"A": "scratch", "B": "crack", "C": "hole", "D": "stain"}


@pytest.mark.parametrize(
    "text,options,expected",
    [
        ("A", YN, "A"),
        ("B.", YN, "B"),
        ("The answer is B", YN, "B"),
        ("(A) Yes.", YN, "A"),
        ("Answer: A. Actually, on reflection, B.", YN, "B"),  # last standalone letter wins (MMAD)
        ("Yes, there is a scratch near the top.", YN, "A"),
        ("No defects are visible.", YN, "B"),
        ("It looks like a crack.", DC, "B"),
        ("E", DC, None),  # not an option
        ("", YN, None),
        ("I cannot tell.", YN, None),
        ("scratch or hole, hard to say", DC, None),  # two option texts: no guess
    ],
)
def test_parse_option(text, options, expected):
    letter, status = parse_option(text, options)
    assert letter == expected
    assert status == (ParseStatus.PARSED if expected else ParseStatus.UNPARSED)
