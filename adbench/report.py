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

Safety: every text a model wrote (or any other run data) is put into the page with
`textContent`/`setAttribute` from a JSON block whose `<`, `>` and `&` are escaped, and
the static parts go through `html.escape`: model output can never become markup.
A missing image becomes a placeholder naming the file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adbench import registry
from adbench.errors import UserError
from adbench.images import ImageError, open_image, to_8bit
from adbench.leaderboard import run_status
from adbench.schema import Record
from adbench.scoring import record_correctness, threshold_decisions
from adbench.store import RunStore, StoreError

REPORT_NAME = "report.html"
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
    out = []
    for b in items:
        x1, y1, x2, y2 = (float(v) for v in b["bbox"])
        out.append([x1, y1, x2, y2, str(b.get("label", ""))])
    return out


def report_data(run_dir: Path, *, thumb: int = 256) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    store = RunStore(run_dir)
    if not store.results_path.exists():
        raise StoreError(f"{run_dir}: no results.json (run `adbench score {run_dir}` first)")
    results = store.read_results()
    config = store.read_config() if store.config_path.exists() else {}
    records = store.load_records(repair=False)
    evals = [r for r in records if r.role != "calibration"]
    correct = record_correctness(results, records)
    decisions: dict[str, int] = {}
    thresholds: dict[str, float] = {}
    rule = results.get("threshold_rule")
    if "rules" in results:
        calibration = [r for r in records if r.role == "calibration"]
        fixed = results["rules"]["fixed"]["thresholds"]["all"]
        d = threshold_decisions(evals, calibration, fixed=fixed)[rule]
        decisions, thresholds = d["decisions"], d["thresholds"]
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
    for r in evals:
        q = questions.get(r.id, {})
        decision = decisions.get(r.id)
        samples.append({
            "id": r.id, "dataset": r.dataset, "category": r.category, "qtype": r.qtype, "defect": r.defect,
            "label": r.label, "gold": r.gold, "answer": r.answer, "text": r.text, "score": r.score,
            "decision": decision, "correct": bool(correct.get(r.id, False)), "error": r.error,
            "parse": r.parse_status, "stages": [[k, v] for k, v in (r.stages or {}).items()],
            "boxes": _boxes(r.boxes), "gt": _boxes(r.gt_boxes), "q": q.get("q"), "opts": q.get("opts", []),
            "img": ref("image", r.image), "refs": [ref("image", p) for p in r.references],
            "mask": ref("mask", r.mask), "threshold": _threshold_of(r, thresholds),
        })

    def load(item: dict[str, Any]) -> dict[str, Any]:
        if item["kind"] == "mask":
            return {"path": item["path"], **mask_outline(item["path"], thumb)}
        return {"path": item["path"], **thumbnail(item["path"], thumb)}

    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes outside the GIL
        loaded = list(pool.map(load, images))
    return {"results": results, "config": config, "samples": samples, "images": loaded,
            "notes": [n for n in (qnote,) if n], "rule": rule,
            "n_calibration": len(records) - len(evals)}


def _threshold_of(r: Record, thresholds: dict[str, float]) -> float | None:
    for key in (f"{r.dataset}/{r.category}", r.dataset, "all"):
        if key in thresholds:
            return thresholds[key]
    return None


# -- page ------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def summary_html(data: dict[str, Any]) -> str:
    """The static summary at the top (escaped server-side)."""
    e = html.escape
    res = data["results"]
    cfg = data["config"]
    c = res.get("counts", {})
    metrics = res.get("metrics", {})
    datasets = [d for d in metrics if d != "average"]
    qtypes = sorted({q for d in datasets for q in metrics[d].get("qtypes", {})})
    facts = [("model", res.get("model")), ("task", res.get("task")), ("run", res.get("run_id")),
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
    parts = ['<dl class="facts">']
    parts += [f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in facts if v is not None]
    parts.append("</dl>")
    head = ["dataset", "n", "accuracy", "accuracy (MMAD's rule)", *qtypes]
    has_auroc = any("auroc" in metrics[d] for d in metrics)
    if has_auroc:
        head.append("AUROC")
    parts.append('<table class="summary" id="summary"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
                 + "</tr></thead><tbody>")
    for d in [*datasets, "average"]:
        m = metrics[d]
        qt = m.get("qtypes", {})
        cells = [d, str(m.get("n", "")), _pct(m.get("accuracy")), _pct(m.get("accuracy_mmad")),
                 *(_pct(qt[q]["accuracy"]) if q in qt else "-" for q in qtypes)]
        if has_auroc:
            cells.append(_pct(m.get("auroc")))
        cls = ' class="avg"' if d == "average" else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(x)}</td>" for x in cells) + "</tr>")
    parts.append("</tbody></table>")
    parts += [f'<p class="note">{e(n)}</p>' for n in data["notes"]]
    return "\n".join(parts)


def _json_for_script(obj: Any) -> str:
    """JSON safe inside <script>: no `</script>`, no `<!--`, whatever the strings hold."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any], *, per_page: int = 50) -> str:
    res = data["results"]
    title = f"adbench report: {res.get('model')} on {res.get('task')} ({res.get('run_id')})"
    payload = {"samples": data["samples"], "perPage": int(per_page)}
    # Pixels go into one inert <script type="text/plain"> per image (base64 has no `<`), so
    # the page parses only the metadata up front and reads the thumbnails of the page shown.
    meta, blobs = [], []
    for i, im in enumerate(data["images"]):
        m = {k: v for k, v in im.items() if k != "src"}
        if "src" in im:
            m["blob"] = f"im-{i}"
            blobs.append(f'<script type="text/plain" id="im-{i}">{im["src"]}</script>')
        meta.append(m)
    parts = {
        "TITLE": html.escape(title),
        "SUMMARY": summary_html(data),
        "DATA": _json_for_script(payload),
        "IMAGES": _json_for_script(meta),
        "BLOBS": "\n".join(blobs),
    }
    # one pass, so a run's own text that happens to contain "%DATA%" is never substituted
    return re.sub(r"%(TITLE|SUMMARY|DATA|IMAGES|BLOBS)%", lambda m: parts[m.group(1)], _TEMPLATE)


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


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0 1em; }
dl.facts dt { font-weight: 600; }
table.summary { border-collapse: collapse; margin: 1em 0; }
table.summary td, table.summary th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
table.summary td:first-child, table.summary th:first-child { text-align: left; }
table.summary tr.avg { font-weight: 600; background: #f3f3f3; }
.note { color: #a60; }
#controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ddd; z-index: 2; }
#controls label { margin-right: 1em; }
.legend span { display: inline-block; margin-right: 1em; }
.sw { display: inline-block; width: 1em; height: .7em; border: 2px solid; vertical-align: middle; }
.card { display: flex; gap: 1em; border: 1px solid #ddd; border-left: 6px solid #999; margin: .8em 0; padding: .6em; }
.card.ok { border-left-color: #2a2; } .card.wrong { border-left-color: #d22; } .card.failed { border-left-color: #e90; }
.imgs { display: flex; gap: .5em; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; text-align: center; font-size: 12px; color: #555; }
.frame { position: relative; display: inline-block; line-height: 0; }
.frame img { width: 192px; height: auto; } /* small images scaled up, large thumbnails down */
.frame svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; }
.placeholder { width: 160px; height: 120px; display: flex; align-items: center; justify-content: center;
  background: #eee; color: #a00; font-size: 11px; padding: 4px; word-break: break-all; line-height: 1.2; }
.text { flex: 1; min-width: 0; }
.text h3 { margin: 0 0 .3em; font-size: 1em; word-break: break-all; }
.meta { color: #555; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f7; padding: .4em; margin: .2em 0; }
.verdict.ok { color: #2a2; } .verdict.wrong { color: #d22; } .error { color: #d22; font-weight: 600; }
.pager button { margin: 0 .3em; }
</style></head>
<body>
<h1>%TITLE%</h1>
%SUMMARY%
<div id="controls">
 <label>show <select id="f-show"><option value="all">all</option><option value="wrong">wrong answers</option>
  <option value="failed">failures (error or unparsed)</option><option value="correct">correct</option></select></label>
 <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
 <label>question type <select id="f-qtype"><option value="">all</option></select></label>
 <label>id contains <input id="f-search" size="20"></label>
 <label><input type="checkbox" id="f-overlay" checked> boxes and mask</label>
 <span class="pager"><button id="prev">&larr;</button><span id="page-info"></span><button id="next">&rarr;</button></span>
 <span id="match-count"></span>
 <div class="legend"><span><i class="sw" style="border-color:#0c0"></i> GT box</span>
  <span><i class="sw" style="border-color:#ff0;border-style:dashed"></i> GT mask outline</span>
  <span><i class="sw" style="border-color:#f0f"></i> predicted box</span></div>
</div>
<div id="cards"></div>
<p id="img-status" data-total="0" data-loaded="0" data-failed="0"></p>
<script type="application/json" id="report-data">%DATA%</script>
<script type="application/json" id="report-images">%IMAGES%</script>
%BLOBS%
<script>
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const IMAGES = JSON.parse(document.getElementById("report-images").textContent);
  const S = DATA.samples, PER = DATA.perPage, SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fillSelect(sel, values) {
    for (const v of values) { const o = el("option", null, v); o.value = v; sel.appendChild(o); }
  }
  fillSelect($("f-dataset"), [...new Set(S.map((s) => s.dataset))].sort());
  fillSelect($("f-qtype"), [...new Set(S.map((s) => s.qtype))].sort());

  function state() {
    const p = new URLSearchParams(location.hash.slice(1));
    return { show: p.get("show") || "all", dataset: p.get("dataset") || "", qtype: p.get("qtype") || "",
             q: p.get("q") || "", page: Math.max(1, parseInt(p.get("page") || "1", 10) || 1) };
  }
  function setState(change) {
    const st = Object.assign(state(), change);
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(st)) if (v && !(k === "show" && v === "all") && !(k === "page" && v === 1)) p.set(k, v);
    location.hash = p.toString();
  }
  const failed = (s) => s.error !== null || s.parse === "unparsed";
  function keep(s, st) {
    if (st.show === "wrong" && s.correct) return false;
    if (st.show === "correct" && !s.correct) return false;
    if (st.show === "failed" && !failed(s)) return false;
    if (st.dataset && s.dataset !== st.dataset) return false;
    if (st.qtype && s.qtype !== st.qtype) return false;
    return !st.q || s.id.includes(st.q);
  }

  function rect(svg, b, color, dash) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
    r.setAttribute("width", Math.max(0, b[2] - b[0])); r.setAttribute("height", Math.max(0, b[3] - b[1]));
    r.setAttribute("fill", "none"); r.setAttribute("stroke", color); r.setAttribute("stroke-width", "2");
    r.setAttribute("vector-effect", "non-scaling-stroke");
    if (dash) r.setAttribute("stroke-dasharray", "4 3");
    if (b[4]) { const t = document.createElementNS(SVG, "title"); t.textContent = b[4]; r.appendChild(t); }
    svg.appendChild(r);
  }
  function figure(idx, caption, s) {
    const f = el("figure");
    const info = idx === null || idx === undefined ? null : IMAGES[idx];
    if (!info || info.missing) {
      const ph = el("div", "placeholder", info ? info.missing : "no image");
      ph.setAttribute("data-missing", info ? info.path : "");
      f.appendChild(ph);
    } else {
      const frame = el("div", "frame");
      const img = el("img");
      img.alt = caption; img.title = info.path; img.setAttribute("data-path", info.path);
      track(img);
      img.src = document.getElementById(info.blob).textContent;
      frame.appendChild(img);
      if (s) {
        const svg = document.createElementNS(SVG, "svg");
        svg.setAttribute("viewBox", "0 0 " + info.w + " " + info.h);
        svg.setAttribute("preserveAspectRatio", "none");
        svg.setAttribute("class", "overlay");
        const m = s.mask === null ? null : IMAGES[s.mask];
        if (m && m.outline) for (const line of m.outline) {
          const pl = document.createElementNS(SVG, "polyline");
          pl.setAttribute("points", line.join(" ")); pl.setAttribute("fill", "none");
          pl.setAttribute("stroke", "#ff0"); pl.setAttribute("stroke-width", "2");
          pl.setAttribute("stroke-dasharray", "4 3"); pl.setAttribute("vector-effect", "non-scaling-stroke");
          svg.appendChild(pl);
        }
        for (const b of s.gt) rect(svg, b, "#0c0", false);
        for (const b of s.boxes) rect(svg, b, "#f0f", false);
        svg.style.display = $("f-overlay").checked ? "" : "none";
        frame.appendChild(svg);
      }
      f.appendChild(frame);
    }
    f.appendChild(el("figcaption", null, caption));
    return f;
  }

  let imgTotal = 0, imgLoaded = 0, imgFailed = 0;
  function status() {
    const p = $("img-status");
    p.setAttribute("data-total", imgTotal); p.setAttribute("data-loaded", imgLoaded); p.setAttribute("data-failed", imgFailed);
    p.textContent = "images on this page: " + imgLoaded + " loaded, " + imgFailed + " failed, of " + imgTotal;
  }
  function track(img) {
    imgTotal += 1;
    img.addEventListener("load", () => { imgLoaded += 1; img.setAttribute("data-natural-width", img.naturalWidth); status(); });
    img.addEventListener("error", () => { imgFailed += 1; img.setAttribute("data-natural-width", "0"); status(); });
  }

  function card(s) {
    const verdict = failed(s) ? "failed" : (s.correct ? "ok" : "wrong");
    const c = el("div", "card " + verdict);
    c.setAttribute("data-id", s.id); c.setAttribute("data-correct", s.correct ? "1" : "0");
    const imgs = el("div", "imgs");
    imgs.appendChild(figure(s.img, "query", s));
    s.refs.forEach((r, i) => imgs.appendChild(figure(r, "reference " + (i + 1), null)));
    if (s.mask !== null && IMAGES[s.mask].missing) imgs.appendChild(figure(s.mask, "mask", null));
    c.appendChild(imgs);
    const t = el("div", "text");
    t.appendChild(el("h3", null, s.id));
    const label = s.label === 1 ? "anomalous" : (s.label === 0 ? "normal" : "unknown");
    t.appendChild(el("div", "meta", [s.dataset, s.category, s.qtype, "defect: " + (s.defect || "-"), "label: " + label].join(" · ")));
    if (s.q) {
      t.appendChild(el("div", "question", s.q));
      const ul = el("ul", "options");
      for (const [k, v] of s.opts) ul.appendChild(el("li", null, k + ". " + v));
      t.appendChild(ul);
    }
    for (const [name, text] of s.stages) {
      t.appendChild(el("div", "stage-name", name));
      t.appendChild(el("pre", "stage", text));
    }
    if (s.text !== null && s.text !== undefined) {
      t.appendChild(el("div", "stage-name", "reply"));
      t.appendChild(el("pre", "reply", s.text));
    }
    if (s.score !== null && s.score !== undefined) {
      let d = "score " + Number(s.score).toPrecision(4);
      if (s.decision !== null && s.decision !== undefined) d += " \u2192 " + (s.decision ? "anomalous" : "normal");
      if (s.threshold !== null && s.threshold !== undefined) d += " (threshold " + Number(s.threshold).toPrecision(4) + ")";
      t.appendChild(el("div", "score", d));
    }
    const v = el("div", "verdict " + (s.correct ? "ok" : "wrong"));
    v.appendChild(el("span", "answer", "answer: " + (s.answer === null || s.answer === undefined ? "-" : s.answer)));
    v.appendChild(document.createTextNode(" · "));
    v.appendChild(el("span", "gold", "gold: " + s.gold));
    v.appendChild(document.createTextNode(" · "));
    v.appendChild(el("span", "correctness", s.correct ? "correct" : "wrong"));
    if (s.parse === "unparsed") v.appendChild(el("span", "unparsed", " (reply not parsable)"));
    t.appendChild(v);
    if (s.error !== null) t.appendChild(el("div", "error", "error: " + s.error));
    c.appendChild(t);
    return c;
  }

  function render() {
    const st = state();
    $("f-show").value = st.show; $("f-dataset").value = st.dataset; $("f-qtype").value = st.qtype;
    if ($("f-search").value !== st.q) $("f-search").value = st.q;
    const rows = S.filter((s) => keep(s, st));
    const pages = Math.max(1, Math.ceil(rows.length / PER));
    const page = Math.min(st.page, pages);
    const cards = $("cards");
    cards.textContent = "";
    imgTotal = imgLoaded = imgFailed = 0;
    for (const s of rows.slice((page - 1) * PER, page * PER)) cards.appendChild(card(s));
    $("page-info").textContent = "page " + page + " of " + pages;
    $("page-info").setAttribute("data-page", page); $("page-info").setAttribute("data-pages", pages);
    $("match-count").textContent = rows.length + " of " + S.length + " samples";
    $("match-count").setAttribute("data-count", rows.length);
    $("prev").disabled = page <= 1; $("next").disabled = page >= pages;
    status();
  }
  $("f-show").addEventListener("change", (e) => setState({ show: e.target.value, page: 1 }));
  $("f-dataset").addEventListener("change", (e) => setState({ dataset: e.target.value, page: 1 }));
  $("f-qtype").addEventListener("change", (e) => setState({ qtype: e.target.value, page: 1 }));
  $("f-search").addEventListener("change", (e) => setState({ q: e.target.value, page: 1 }));
  $("f-overlay").addEventListener("change", (e) => {
    for (const svg of document.querySelectorAll("svg.overlay")) svg.style.display = e.target.checked ? "" : "none";
  });
  $("prev").addEventListener("click", () => setState({ page: state().page - 1 }));
  $("next").addEventListener("click", () => setState({ page: state().page + 1 }));
  window.addEventListener("hashchange", render);
  render();
})();
</script>
</body></html>
"""
