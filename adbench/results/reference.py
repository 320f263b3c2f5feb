"""Published reference figures: the AD-FM paper's Tables 1-4 and MMAD's rows, shipped as data.

Each table is one JSON file in `adbench/results/published/` (package data):
its source (paper, arXiv id, table number, caption), the footnote marks it uses
(`†`, `‡`, `*`), the descriptor columns (Scale; Reward and Reasoning in Table 4), the
value columns exactly as published, and one row per published line with its group
(Proprietary, Open-source, Fine-tuned, CLIP-based), model, mark and values as the
strings the paper prints ("90.72", "-"), so a table shows them exactly as published.
Every row is marked `"published": true`: these figures were not run here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from adbench.errors import UserError
from adbench.jsonfile import read_json

TABLES = ("table1", "table2", "table3", "table4", "mmad")
MISSING = "-"  # what the paper prints where it has no figure


class ReferenceTableError(UserError):
    """A reference table that is unknown or malformed; the message names the file."""


@dataclass(frozen=True)
class ReferenceRow:
    group: str
    model: str
    mark: str  # footnote mark the paper puts after the model name ("†", "‡" or "")
    descriptors: dict[str, str]
    values: dict[str, str]  # column -> the published string

    @property
    def label(self) -> str:
        return f"{self.model} {self.mark}".strip()

    def figure(self, column: str) -> float | None:
        """The published value as a number (percent), None where the paper prints "-"."""
        text = self.values.get(column, MISSING)
        return None if text == MISSING else float(text)


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    title: str
    source: dict[str, Any]
    marks: dict[str, str]
    descriptors: list[str]
    columns: list[str]
    rows: list[ReferenceRow]
    references: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def citation(self) -> str:
        s = self.source
        arxiv = f", arXiv:{s['arxiv']}" if s.get("arxiv") else ""
        where = f"Table {s['table']}" if isinstance(s["table"], int) else str(s["table"])
        return f"{s['title']}{arxiv}, {where}"


def _path_of(name: str) -> Any:
    return resources.files("adbench.results").joinpath("published", f"{name}.json")


def load_reference(name: str) -> ReferenceTable:
    """The published table `name` (table1 ... table4, mmad), validated."""
    if name not in TABLES:
        raise ReferenceTableError(f"unknown reference table {name!r}: use one of {', '.join(TABLES)}")
    path = _path_of(name)
    data = read_json(str(path), ReferenceTableError, "reference table (part of the installation)")
    return parse_reference(data, str(path))


def parse_reference(data: dict[str, Any], where: str) -> ReferenceTable:
    try:
        columns = [str(c) for c in data["columns"]]
        descriptors = [str(c) for c in data["descriptors"]]
        marks = {str(k): str(v) for k, v in data.get("marks", {}).items()}
        rows = []
        for i, r in enumerate(data["rows"]):
            if r.get("published") is not True:
                raise ReferenceTableError(f"{where}: row {i} is not marked \"published\": true")
            values = {str(k): str(v) for k, v in r["values"].items()}
            if list(values) != columns:
                raise ReferenceTableError(f"{where}: row {i} ({r.get('model')}) has columns {list(values)}, expected {columns}")
            for c, v in values.items():
                if v != MISSING:
                    try:
                        float(v)
                    except ValueError:
                        raise ReferenceTableError(f"{where}: row {i} ({r['model']}), column {c}: {v!r} is not a number") from None
            desc = {str(k): str(v) for k, v in r.get("descriptors", {}).items()}
            if list(desc) != descriptors:
                raise ReferenceTableError(f"{where}: row {i} ({r.get('model')}) has descriptors {list(desc)}, expected {descriptors}")
            mark = str(r.get("mark", ""))
            if mark and mark not in marks:
                raise ReferenceTableError(f"{where}: row {i} ({r['model']}) uses mark {mark!r} that the table does not explain")
            rows.append(ReferenceRow(str(r.get("group", "")), str(r["model"]), mark, desc, values))
        return ReferenceTable(
            name=str(data["table"]),
            title=str(data["title"]),
            source=dict(data["source"]),
            marks=marks,
            descriptors=descriptors,
            columns=columns,
            rows=rows,
            references={str(k): str(v) for k, v in data.get("references", {}).items()},
            note=str(data.get("note", "")),
        )
    except KeyError as e:
        raise ReferenceTableError(f"{where}: missing field {e.args[0]!r}") from None
