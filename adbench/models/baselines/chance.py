"""`chance`: a seeded uniform choice among each question's options.

The floor every table should show: about 50% on yes/no questions, 1/k on k options.
The choice depends only on the seed and the query id, so it does not change with
batch size, order or resumption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adbench.data.layout import rank
from adbench.model import Model, OutputKind
from adbench.schema import ParseStatus, Query, Response


class ChanceModel(Model):
    name = "chance"
    output = OutputKind.GENERATIVE

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def _pick(self, query: Query) -> str:
        letters = sorted(query.options)
        return letters[rank(self.seed, query.id, sep=":") % len(letters)]

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out = []
        for q in queries:
            if not q.options:
                out.append(Response.failure(f"query {q.id} has no options to choose from"))
                continue
            letter = self._pick(q)
            out.append(Response(text=letter, answer=letter, parse_status=ParseStatus.PARSED))
        return out

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed}
