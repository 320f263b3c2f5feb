"""`adbench data check`: which datasets are present, how many images, and what is wrong.

For each dataset of the catalog found under the data root, the reader runs and then
every image it names (query images and, for MMAD, the template images) is checked:
missing files and files Pillow cannot read are listed with their paths, as are
anomalous images whose mask is missing and whatever the reader could not place
(unknown folders and files). A requested dataset is *unusable* when its folder is
absent, its reader fails (a malformed index), or none of its images can be read.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adbench.data.catalog import DATASETS, dataset_dir, spec
from adbench.data.layout import Problem, natural_key
from adbench.data.paths import DataError
from adbench.images import ImageError, check_image
from adbench.schema import ANOMALOUS, Sample

PRESENT, ABSENT, UNUSABLE = "present", "absent", "unusable"


@dataclass
class DatasetReport:
    name: str
    path: Path
    status: str = ABSENT
    error: str = ""
    counts: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (dataset, category) -> label counts
    n_images: int = 0
    n_questions: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.status == PRESENT


def _image_problem(path: str, verify: bool) -> Problem | None:
    if not verify:
        return None if os.path.isfile(path) else Problem("missing image", path)
    try:
        check_image(path)
    except ImageError as e:
        kind = "missing image" if "not found" in str(e) else "unreadable image"
        return Problem(kind, path, "" if kind == "missing image" else str(e).split(": ", 1)[-1])
    return None


def _mask_problem(s: Sample) -> Problem | None:
    if s.label != ANOMALOUS:
        return None
    if not s.mask:
        return Problem("missing mask", s.image, "no mask given for an anomalous image")
    p = Path(s.mask)
    if p.is_dir():
        return None if any(p.iterdir()) else Problem("missing mask", str(p), "empty mask folder")
    return None if p.is_file() else Problem("missing mask", str(p), f"mask of {s.image}")


def check_dataset(data_root: Path, name: str, *, root: Path | None = None, verify: bool = True,
                  workers: int = 8) -> DatasetReport:
    """Read one dataset and check every file it names."""
    d = spec(name)
    path = Path(root) if root else dataset_dir(data_root, d.name)
    report = DatasetReport(d.name, path)
    if not path.is_dir():
        return report
    try:
        scan = d.scan(path)
    except (DataError, OSError) as e:
        report.status, report.error = UNUSABLE, str(e)
        return report
    report.problems += scan.problems
    images: dict[str, Sample] = {}
    for s in scan.samples:
        images.setdefault(s.image, s)
    report.n_images = len(images)
    report.n_questions = len(scan.samples)
    for s in images.values():
        c = report.counts.setdefault((s.dataset, s.category), Counter())
        c["anomalous" if s.label == ANOMALOUS else "normal"] += 1
    # templates and references are images a run will open too
    extra = sorted({r for s in scan.samples for r in s.references + list(s.meta.get("similar_templates", ()))}
                   - images.keys())
    paths = list(images) + extra
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(lambda p: _image_problem(p, verify), paths))
    report.problems += [p for p in found if p is not None]
    reported = {p.path for p in scan.problems if p.kind == "missing mask"}  # the reader saw those already
    report.problems += [p for s in images.values() if s.image not in reported
                        and (p := _mask_problem(s)) is not None]
    bad = {p.path for p in found if p is not None}
    if not images:
        report.status, report.error = UNUSABLE, "no images found"
    elif all(i in bad for i in images):
        report.status, report.error = UNUSABLE, "none of its images can be read"
    else:
        report.status = PRESENT
    return report


def check_datasets(data_root: Path, names: Sequence[str] | None = None, *, verify: bool = True,
                   workers: int = 8) -> list[DatasetReport]:
    """Reports for the named datasets (default: every dataset of the catalog)."""
    chosen = [spec(n).name for n in names] if names else list(DATASETS)
    return [check_dataset(data_root, n, verify=verify, workers=workers) for n in chosen]


def format_report(data_root: Path, reports: Iterable[DatasetReport], *, show: int = 20) -> str:
    """The human-readable report: one section per dataset, counts, then problems by kind."""
    from tabulate import tabulate

    lines = [f"data root: {data_root}"]
    for r in reports:
        head = f"{r.name:<11} {r.status:<9} {r.path}"
        if r.status == ABSENT:
            lines.append(head)
            continue
        if r.n_images:
            extra = f", {r.n_questions} questions" if r.n_questions != r.n_images else ""
            head += f"  ({r.n_images} images{extra})"
        if r.error:
            head += f"  error: {r.error}"
        lines.append(head)
        if r.counts:
            rows = [[ds, cat, c["normal"], c["anomalous"]] for (ds, cat), c in
                    sorted(r.counts.items(), key=lambda kv: (kv[0][0], natural_key(kv[0][1])))]
            table = tabulate(rows, headers=["dataset", "category", "normal", "anomalous"], tablefmt="simple")
            lines += ["    " + t for t in table.splitlines()]
        by_kind: dict[str, list[Problem]] = defaultdict(list)
        for p in r.problems:
            by_kind[p.kind].append(p)
        for kind, ps in sorted(by_kind.items()):
            lines.append(f"    {kind}: {len(ps)}")
            lines += [f"      {p.path}" + (f"  ({p.detail})" if p.detail else "") for p in ps[:show]]
            if len(ps) > show:
                lines.append(f"      ... and {len(ps) - show} more (--show N lists more)")
    return "\n".join(lines) + "\n"
