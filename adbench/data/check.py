"""`adbench data check`: which datasets are present, how many images, and what is wrong.

For each dataset of the catalog found under the data root, the reader runs and then
every image it names (query images and, for MMAD, the template images) is checked:
missing files and files Pillow cannot read are listed with their paths, as are
anomalous images whose mask is missing and whatever the reader could not place
(unknown folders and files). Without `--fast` every mask is opened too: one that cannot
be read, that differs in size from its image, or that has no defect region is listed
(its boxes go to the box cache on the way, as `adbench data boxes` would put them). A requested dataset is *unusable* when its folder is
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
from adbench.data.layout import Problem, is_image, natural_key
from adbench.data.paths import DataError
from adbench.data.pseudo_boxes import BoxCache, BoxParams, default_cache_dir, mask_boxes
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
        if not os.path.exists(path):
            return Problem("missing image", path)
        return Problem("unreadable image", path, e.reason)
    return None


def _mask_problem(s: Sample) -> Problem | None:
    if s.label != ANOMALOUS:
        return None
    entry = s.key or s.image  # an index entry (MMAD) or the image file
    if not s.mask:
        return Problem("missing mask", s.image, f"no mask given for anomalous image {entry}")
    p = Path(s.mask)
    if p.is_dir():
        has_masks = any(is_image(n) for n in os.listdir(p))
        return None if has_masks else Problem("missing mask", str(p), f"mask folder of {entry} holds no mask images")
    return None if p.is_file() else Problem("missing mask", str(p), f"mask of {entry}")


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
    missing_masks = [p for s in images.values() if s.image not in reported and (p := _mask_problem(s)) is not None]
    report.problems += missing_masks
    bad = {p.path for p in found if p is not None}
    if verify:  # open every present mask: unreadable, of another size than its image, or empty
        skip = {p.path for p in missing_masks}
        masked = [s for s in images.values() if s.label == ANOMALOUS and s.mask and s.mask not in skip
                  and s.image not in bad and s.image not in reported]
        cache = BoxCache(default_cache_dir(data_root), BoxParams())
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            findings = list(pool.map(lambda s: mask_boxes(s, cache)[1], masked))
        report.problems += [Problem(f[0], s.mask or "", f"{f[1]}; entry {s.meta.get('key') or s.image}")
                            for s, f in zip(masked, findings) if f]
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
