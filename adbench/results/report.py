"""`adbench report RUN_DIR`: one self-contained HTML file to look at what a model saw and said.

The file needs no network and no other file: images are embedded as small JPEG
thumbnails (base64), CSS and JavaScript are inline. At the top: the run's summary
metrics. Below: one card per evaluated sample with the query image (GT mask outline,
GT boxes and predicted boxes drawn over it as SVG in original-image pixels), the
reference images, the question and options (when the task's data is still on disk),
each reasoning stage, the reply, the answer, the gold answer and correctness, and the
error of a failed request. Filters (wrong answers, failures, dataset, question type,
id search) and pagination run client-side, so a run with tens of thousands of samples
stays usable; each distinct image is embedded once however many questions share it.

The page is `templates/report.html`, rendered with Jinja2 (autoescaping). Safety: every
text a model wrote (or any other run data) is put into the page with
`textContent`/`setAttribute` from a JSON block whose `<`, `>` and `&` are escaped, and
the summary's values are escaped by the template: model output can never become markup.
A missing image becomes a placeholder naming the file.

Which samples are right, a score model's decisions and thresholds, and the summary's
figures are the engine's (`adbench.results`): the summary is results.json's, the
per-sample verdicts come from judging the records again as results.json says they were
judged. A score model's card shows its score, the threshold its headline rule applied
and the decision, where a text model's shows the answer and the gold letter.

Below the summary: the quality of the boxes the model wrote (results.json's `boxes`,
as `leaderboard --layout boxes` prints it) and the run's figures (`adbench.plots`, the
same as `adbench plot` writes: accuracy per category with bootstrap intervals, a
confusion matrix per question type, and for runs with scores ROC curves and score
histograms with the threshold rules marked), inline SVG.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adbench import registry
from adbench.errors import UserError
from adbench.images import ImageError, open_image, to_8bit
from adbench.results.runs import Run
from adbench.results.scoring import judge_like
from adbench.results.status import run_status
from adbench.results.verdicts import threshold_of
from adbench.results.writer import format_percent
from adbench.schema import Box, Record
from adbench.store import RunStore, StoreError

REPORT_NAME = "report.html"
TEMPLATE = "report.html"
JPEG_QUALITY = 75


# -- images ----------------------------------------------------------------------------------


def thumbnail(path: str, size: int) -> dict[str, Any]:
    """{"src": data URI, "w", "h"} (original size), or {"missing": reason naming the file}."""
    try:
        with open_image(path) as im:
            w, h = im.size
            im.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster for big photos
            im = to_8bit(im, path).convert("RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=JPEG_QUALITY)
    except ImageError as e:
        return {"missing": str(e)}
    return {"src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), "w": w, "h": h}


def mask_outline(path: str, size: int) -> dict[str, Any]:
    """{"outline": polylines [x0, y0, x1, y1, ...] in original pixels, "w", "h"} or {"missing": ...}.

    The mask is reduced to thumbnail resolution first: the outline is drawn over a
    thumbnail, and a full-resolution contour of a 1024 px mask would bloat the file.
    """
    from skimage.measure import approximate_polygon, find_contours

    try:
        with open_image(path, "mask") as im:
            w, h = im.size
            small = to_8bit(im, path).convert("L")
            small.thumbnail((size, size), Image.Resampling.NEAREST)
            arr = np.asarray(small) > 0
    except ImageError as e:
        return {"missing": str(e)}
    sy, sx = h / arr.shape[0], w / arr.shape[1]
    padded = np.pad(arr.astype(float), 1)  # closes contours that touch the border
    lines = []
    for c in find_contours(padded, 0.5):
        c = approximate_polygon(c - 1, tolerance=0.5)
        lines.append([round(float(v), 1) for y, x in c for v in ((x + 0.5) * sx, (y + 0.5) * sy)])
    return {"outline": lines, "w": w, "h": h}


# -- data ------------------------------------------------------------------------------------


def _questions(config: dict[str, Any], records: Sequence[Record]) -> tuple[dict[str, Any], str]:
    """Question text and options per sample id, re-read from the task's data; note if unavailable.

    Records store the question and options; for runs recorded before they did, the
    report asks the task for its samples again, but only when the data is still where
    the run read it (it never downloads or generates anything for a report).
    """
    if records and all(r.question for r in records):
        return {r.id: {"q": r.question, "opts": [[k, v] for k, v in r.options.items()]} for r in records}, ""
    data_root = Path(config.get("data_root", ""))
    if not records or not config.get("task"):
        return {}, ""
    if not Path(records[0].image).exists():
        return {}, f"question texts not shown: the task's data is not at {data_root} any more"
    try:
        task = registry.make_task(config["task"], **config.get("task_args", {}))
        samples = task.samples(data_root)
    except Exception as e:  # noqa: BLE001 - the report stays useful without the question texts
        return {}, f"question texts not shown: cannot read task {config['task']!r}: {type(e).__name__}: {e}"
    return {s.id: {"q": s.question, "opts": [[k, v] for k, v in s.options.items()]} for s in samples}, ""


def _boxes(items: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """A Record's stored boxes (`Box.to_dict()`s) as the page draws them: [x1, y1, x2, y2, label]."""
    return [[*b.as_tuple(), b.label] for b in map(Box.from_dict, items)]


#: The report's figures (`adbench.plots.run_figures` names) and what each caption says.
FIGURE_CAPTIONS = {
    "categories": "Accuracy per category (the tables' figure) with its 95% bootstrap interval; a score model: "
                  "one bar per threshold rule (* Youden's J, an oracle)",
    "confusion": "Confusion matrix per question type: true against answered (Anomaly Detection as normal / "
                 "anomalous; a failed, unparsable or undecided reply is \"no answer\")",
    "roc": "ROC curve per dataset, each threshold rule's operating point marked",
    "scores": "Scores of normal and anomalous images per dataset, each threshold rule's thresholds as lines "
              "(calibrated: one per category)",
}


def report_figures(run: Run, *, n_resamples: int = 1000, seed: int = 0) -> list[dict[str, str]]:
    """The run's figures as inline SVG: [{"name", "caption", "svg"}]."""
    from adbench.plots import run_figures, svg_text

    figs = run_figures(run, n_resamples=n_resamples, seed=seed) if run.judgement().records else {}
    return [{"name": name, "caption": FIGURE_CAPTIONS[name], "svg": svg_text(fig, f"report-{name}")}
            for name, fig in figs.items()]


def box_summary(run: Run) -> dict[str, Any] | None:
    """The box quality table (the `boxes` layout's rows of this run), or None when the model wrote no box."""
    if "boxes" not in run.results:
        return None
    from adbench.results.tables import table_of_runs
    from adbench.results.writer import table_notes

    table = table_of_runs("boxes", [run])
    cols = table.layout.column_names
    return {"head": ["dataset", *cols],
            "rows": [{"cells": [r.descriptors["Dataset"], *(r.cells[c] for c in cols)],
                      "average": r.descriptors["Dataset"] == "average"} for r in table.rows],
            "notes": table_notes(table)}


def report_data(run_dir: Path, *, thumb: int = 256) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    store = RunStore(run_dir)
    if not store.results_path.exists():
        raise StoreError(f"{run_dir}: no results.json (run `adbench score {run_dir}` first)")
    results = store.read_results()
    config = store.read_config() if store.config_path.exists() else {}
    records = store.load_records(repair=False)
    judged = judge_like(results, records)  # the engine's verdicts on the headline variant
    run = Run(Path(run_dir), results, _judgement=judged, _records=records)  # the tables and figures reuse both
    evals = judged.records
    verdicts = judged.variants[judged.headline]
    questions, qnote = _questions(config, evals)

    images: list[dict[str, Any]] = []
    index: dict[tuple[str, str], int] = {}

    def ref(kind: str, path: str | None) -> int | None:
        if not path:
            return None
        key = (kind, path)
        if key not in index:
            index[key] = len(images)
            images.append({"kind": kind, "path": path})
        return index[key]

    samples = []
    for r, correct in zip(evals, verdicts.correct):
        q = questions.get(r.id, {})
        decision = verdicts.decisions.get(r.id)
        samples.append({
            "id": r.id, "dataset": r.dataset, "category": r.category, "qtype": r.qtype, "defect": r.defect,
            "label": r.label, "gold": r.gold, "answer": r.answer, "text": r.text, "score": r.score,
            "decision": decision, "correct": bool(correct), "error": r.error,
            "parse": r.parse_status, "stages": [[k, v] for k, v in (r.stages or {}).items()],
            "boxes": _boxes(r.boxes), "gt": _boxes(r.gt_boxes), "q": q.get("q"), "opts": q.get("opts", []),
            "img": ref("image", r.image), "refs": [ref("image", p) for p in r.references],
            "mask": ref("mask", r.mask), "threshold": threshold_of(r, verdicts.thresholds),
        })

    def load(item: dict[str, Any]) -> dict[str, Any]:
        if item["kind"] == "mask":
            return {"path": item["path"], **mask_outline(item["path"], thumb)}
        return {"path": item["path"], **thumbnail(item["path"], thumb)}

    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes outside the GIL
        loaded = list(pool.map(load, images))
    return {"results": results, "config": config, "samples": samples, "images": loaded,
            "notes": [n for n in (qnote,) if n], "rule": results.get("threshold_rule"),
            "score_model": judged.score_based, "n_calibration": len(records) - len(evals),
            "boxes": box_summary(run),
            "figures": report_figures(run)}


# -- page ------------------------------------------------------------------------------------


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """The summary at the top: facts about the run, and results.json's figures per dataset."""
    res = data["results"]
    cfg = data["config"]
    c = res.get("counts", {})
    metrics = res.get("metrics", {})
    datasets = [d for d in metrics if d != "average"]
    qtypes = sorted({q for d in datasets for q in metrics[d].get("qtypes", {})})
    facts = [*([("label", res["label"])] if res.get("label") else []),
             ("model", res.get("model")), ("task", res.get("task")), ("run", res.get("run_id")),
             ("samples", c.get("n")), ("failed", c.get("n_failed")), ("unparsed", c.get("n_unparsed"))]
    if data["rule"]:
        facts.append(("threshold rule", data["rule"]))
    if data["n_calibration"]:
        facts.append(("calibration images (not shown)", data["n_calibration"]))
    status = run_status(res)  # the tables' wording: "n of N samples failed", "incomplete: n of N recorded"
    facts += [("status", line) for line in status.lines()]
    if cfg.get("model_args"):
        facts.append(("model args", json.dumps(cfg["model_args"], sort_keys=True)))
    if cfg.get("task_args"):
        facts.append(("task args", json.dumps(cfg["task_args"], sort_keys=True)))
    usage = {k: v for k, v in (res.get("usage") or {}).items() if v}
    if usage:
        facts.append(("usage", ", ".join(f"{k} {v:g}" for k, v in sorted(usage.items()))))
    head = ["dataset", "n", "accuracy", "accuracy (MMAD's rule)", *qtypes]
    has_auroc = any("auroc" in metrics[d] for d in metrics)
    if has_auroc:
        head.append("AUROC")
    rows = []
    for d in [*datasets, "average"]:
        m = metrics[d]
        qt = m.get("qtypes", {})
        cells = [d, str(m.get("n", "")), format_percent(m.get("accuracy")), format_percent(m.get("accuracy_mmad")),
                 *(format_percent(qt[q]["accuracy"]) if q in qt else "-" for q in qtypes)]
        if has_auroc:
            cells.append(format_percent(m.get("auroc")))
        rows.append({"cells": cells, "average": d == "average"})
    return {"facts": [(str(k), str(v)) for k, v in facts if v is not None], "head": head, "rows": rows,
            "notes": data["notes"]}


def _json_for_script(obj: Any) -> str:
    """JSON safe inside <script>: no `</script>`, no `<!--`, whatever the strings hold."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _template() -> Any:
    import jinja2

    text = resources.files("adbench.results").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True, keep_trailing_newline=True).from_string(text)


def render_html(data: dict[str, Any], *, per_page: int = 50) -> str:
    res = data["results"]
    # Pixels go into one inert <script type="text/plain"> per image (base64 has no `<`), so
    # the page parses only the metadata up front and reads the thumbnails of the page shown.
    meta, blobs = [], []
    for i, im in enumerate(data["images"]):
        m = {k: v for k, v in im.items() if k != "src"}
        if "src" in im:
            m["blob"] = f"im-{i}"
            blobs.append({"id": f"im-{i}", "src": im["src"]})
        meta.append(m)
    return _template().render(
        title=f"adbench report: {res.get('label') or res.get('model')} on {res.get('task')} ({res.get('run_id')})",
        data_json=_json_for_script({"samples": data["samples"], "perPage": int(per_page),
                                    "scoreModel": bool(data.get("score_model")), "rule": data.get("rule")}),
        images_json=_json_for_script(meta),
        blobs=blobs,
        boxes=data.get("boxes"),
        figures=data.get("figures", []),
        **summary(data),
    )


def write_report(run_dir: Path, out: Path | None = None, *, thumb: int = 256, per_page: int = 50) -> Path:
    """Write the run's HTML report (default RUN_DIR/report.html) and return its path."""
    if thumb < 16:
        raise UserError(f"--thumb must be at least 16 pixels, got {thumb}")
    if per_page < 1:
        raise UserError(f"--per-page must be at least 1, got {per_page}")
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / REPORT_NAME
    page = render_html(report_data(run_dir, thumb=thumb), per_page=per_page)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
