"""API prices: a dated table shipped with adbench (prices.json), overridable per run.

Prices change and snapshots are retired, so the table carries the date it was checked
and its source, and both are recorded in the run's config next to the price used.
`-M prices=PATH` replaces the table with a file of the same shape; `-M price_in=` and
`-M price_out=` (USD per 1M tokens) override the chosen model's prices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adbench.errors import UserError
from adbench.jsonfile import read_json

DEFAULT_TABLE = Path(__file__).with_name("prices.json")
PER_TOKENS = 1_000_000  # the table's unit: USD per 1M tokens


class PriceError(UserError):
    """A price table that cannot be read or an incomplete price override; names the file or argument."""


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens for one model, and where the figures came from."""

    input: float
    output: float
    cached_input: float | None = None  # prompt tokens the API served from its prompt cache
    source: str = ""

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one call; cached prompt tokens are billed at `cached_input` where the table has it."""
        cached = max(0, min(int(cached_tokens or 0), int(prompt_tokens)))
        cached_rate = self.input if self.cached_input is None else self.cached_input
        usd = (int(prompt_tokens) - cached) * self.input + cached * cached_rate + int(completion_tokens) * self.output
        return usd / PER_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unit": "USD per 1M tokens"}


def load_table(path: str | Path | None = None) -> dict[str, Any]:
    """The price table at `path` (default: the one shipped with adbench), checked for shape."""
    p = Path(path).expanduser() if path else DEFAULT_TABLE
    data = read_json(p, PriceError, "price table")
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise PriceError(f"{p}: expected {{\"models\": {{<model>: {{\"input\": ..., \"output\": ...}}}}}}")
    for name, entry in models.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), (int, float)) for k in ("input", "output")):
            raise PriceError(f"{p}: model {name!r} needs numeric 'input' and 'output' (USD per 1M tokens)")
    data["path"] = str(p)
    return data


def resolve_price(
    model: str,
    table: str | Path | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
) -> Price | None:
    """The price of `model`: table entry, with `price_in` / `price_out` overriding it.

    Returns None when the model is not in the table and no override is given: the run
    then records token counts but no cost (typical for a local OpenAI-compatible server).
    """
    data = load_table(table)
    entry = data["models"].get(model)
    where = f"{data['path']} (as of {data.get('as_of', 'undated')})"
    if entry is None and price_in is None and price_out is None:
        return None
    if entry is None and (price_in is None or price_out is None):
        raise PriceError(
            f"model {model!r} is not in the price table {data['path']}: give both -M price_in= and -M price_out= "
            "(USD per 1M tokens)"
        )
    if entry is not None and price_in is None and price_out is None:
        return Price(float(entry["input"]), float(entry["output"]),
                     None if entry.get("cached_input") is None else float(entry["cached_input"]), where)
    base = entry or {}
    cin = float(price_in) if price_in is not None else float(base["input"])
    cout = float(price_out) if price_out is not None else float(base["output"])
    # An overridden input price says nothing about the cache discount: bill cached tokens at it.
    cached = base.get("cached_input") if price_in is None else None
    return Price(cin, cout, None if cached is None else float(cached), f"-M price_in/price_out over {where}")
