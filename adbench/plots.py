"""Pictures of runs and trainings, drawn with matplotlib: `adbench plot` writes them as files, the
HTML report embeds them as inline SVG.

A run gets (the numbers come from `adbench.results.figures`, i.e. the results engine):
- `categories`: per-category accuracy bars with their bootstrap intervals (any model;
  one bar per row the tables show: a score model's threshold rules side by side);
- `confusion`: a confusion matrix per question type;
- `roc` and `scores` (runs whose records carry scores): ROC curves per dataset with each
  threshold rule's operating point, and per dataset the histograms of normal and
  anomalous scores with each rule's thresholds marked.
A training (`training_figure`) gets its reward (and reward components), KL and loss
curves per GRPO step from the trainer's log history.

Figures are `matplotlib.figure.Figure`s built without pyplot (no global state, no GUI
backend). SVG is written with text as text (`svg.fonttype: none`; matplotlib escapes
it), ids salted per figure so that several inline SVGs in one page never share an id,
and no date, so the same run gives the same file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adbench.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from adbench.results.figures import Confusion, DatasetScores
    from adbench.results.runs import Run
    from adbench.results.tables import Table

FORMATS = ("svg", "png")
PNG_DPI = 150
#: Colours of the two classes and of the threshold rules, the same in every figure.
CLASS_COLOURS = {"normal": "#4c72b0", "anomalous": "#dd8452"}
RULE_STYLES = {"youden": ("#2ca02c", "o", "--"), "calibrated": ("#9467bd", "s", ":"), "fixed": ("#7f7f7f", "^", "-.")}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _grid(fig: Figure, n: int, ncols: int) -> list[Any]:
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


# -- runs --------------------------------------------------------------------------------------


def category_figure(table: Table, title: str) -> Figure:
    """Horizontal bars: each category's accuracy (%) per row of the table, with its interval."""
    cols = [c for c in table.layout.column_names if c != "Avg."]
    rows = table.rows
    n, k = len(cols), max(1, len(rows))
    fig = _figure(7.5, 1.2 + 0.28 * n * k)
    ax = fig.subplots()
    height = 0.8 / k
    y = np.arange(n)
    for i, row in enumerate(rows):
        vals = np.array([np.nan if row.figures.get(c) is None else row.figures[c] for c in cols], dtype=float)
        lo = np.array([row.intervals.get(c, (v, v))[0] for c, v in zip(cols, vals)], dtype=float)
        hi = np.array([row.intervals.get(c, (v, v))[1] for c, v in zip(cols, vals)], dtype=float)
        err = np.nan_to_num(np.vstack([vals - lo, hi - vals]))
        ax.barh(y - 0.4 + height * (i + 0.5), np.nan_to_num(vals), height=height, xerr=err, capsize=2,
                label=row.label, error_kw={"elinewidth": 0.8})
    ax.set_yticks(y, cols)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%); lines: 95% bootstrap interval")
    ax.set_title(title)
    if len(rows) > 1:  # a score model's threshold rules: beside the bars, never over them
        fig.legend(loc="outside right upper", fontsize="small")
    return fig


def confusion_figure(matrices: Sequence[Confusion], title: str) -> Figure:
    """One matrix per question type: true (rows) against answered (columns), counts in the cells."""
    ncols = min(3, len(matrices))
    nrows = (len(matrices) + ncols - 1) // ncols
    fig = _figure(max(6.0, 4.2 * ncols), 3.4 * nrows + 0.4)  # wide enough for the title
    for ax, m in zip(_grid(fig, len(matrices), ncols), matrices):
        ax.imshow(m.counts, cmap="Blues", vmin=0, vmax=max(1, int(m.counts.max())))
        ax.set_xticks(range(len(m.predicted)), m.predicted, rotation=30, ha="right")
        ax.set_yticks(range(len(m.true)), m.true)
        ax.set_xlabel("answered")
        ax.set_ylabel("true")
        ax.set_title(m.qtype, fontsize="medium")
        top = m.counts.max()
        for (i, j), v in np.ndenumerate(m.counts):
            ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if top and v > top / 2 else "black")
    fig.suptitle(title)
    return fig


def roc_figure(curves: Sequence[DatasetScores], title: str) -> Figure:
    """A ROC curve per dataset, each threshold rule's operating point marked on it."""
    fig = _figure(5.5, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#cccccc", linewidth=0.8)
    for d in curves:
        if d.fpr is None:
            continue
        (line,) = ax.plot(d.fpr, d.tpr, label=f"{d.dataset} (AUROC {100 * d.auroc:.2f})")
        for m in d.rules:
            if m.fpr is not None and m.tpr is not None:
                colour, marker, _ = RULE_STYLES[m.rule]
                ax.plot([m.fpr], [m.tpr], marker=marker, color=line.get_color(), markeredgecolor=colour,
                        markeredgewidth=1.5, linestyle="none")
    for rule, (colour, marker, _) in RULE_STYLES.items():  # the legend's rule markers, once
        if any(m.rule == rule for d in curves for m in d.rules):
            label = next(m.label for d in curves for m in d.rules if m.rule == rule)
            ax.plot([], [], marker=marker, color="white", markeredgecolor=colour, linestyle="none", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (normal called anomalous)")
    ax.set_ylabel("true positive rate (anomalous found)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def score_figure(curves: Sequence[DatasetScores], title: str) -> Figure:
    """Per dataset: histograms of normal and anomalous scores, each threshold rule's thresholds as lines."""
    fig = _figure(4.5 * min(2, len(curves)), 3.2 * ((len(curves) + 1) // 2) + 0.5)
    for ax, d in zip(_grid(fig, len(curves), 2), curves):
        both = np.concatenate([d.normal, d.anomalous])
        edges = np.histogram_bin_edges(both, bins=min(30, max(5, len(both) // 4)))
        for name, scores in (("normal", d.normal), ("anomalous", d.anomalous)):
            if len(scores):
                ax.hist(scores, bins=edges, alpha=0.6, color=CLASS_COLOURS[name], label=f"{name} ({len(scores)})")
        for m in d.rules:
            colour, _, style = RULE_STYLES[m.rule]
            for i, t in enumerate(m.thresholds):
                ax.axvline(t, color=colour, linestyle=style, linewidth=1.2, label=m.label if i == 0 else None)
        ax.set_title(d.dataset if d.auroc is None else f"{d.dataset} (AUROC {100 * d.auroc:.2f})", fontsize="medium")
        ax.set_xlabel("score")
        ax.set_ylabel("images")
        ax.legend(fontsize="x-small")
    fig.suptitle(title)
    return fig


def run_figures(run: Run, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Figure]:
    """A run's figures by name: categories and confusion always; roc and scores when its records carry scores."""
    from adbench.results.figures import category_table, confusions, score_curves

    res = run.results
    name = f"{res['model']} on {res['task']}"
    j = run.judgement()
    if not j.records:
        raise UserError(f"{run.run_dir}: no evaluated records to draw")
    figs = {"categories": category_figure(category_table(run, n_resamples=n_resamples, seed=seed),
                                          f"{name}: accuracy per category"),
            "confusion": confusion_figure(confusions(j), f"{name}: answers per question type")}
    curves = score_curves(j, res)
    if any(d.fpr is not None for d in curves):
        figs["roc"] = roc_figure(curves, f"{name}: ROC per dataset")
    if curves:
        figs["scores"] = score_figure(curves, f"{name}: scores and thresholds")
    return figs


# -- training --------------------------------------------------------------------------------

#: The panels of a training's figure: title and the log keys drawn in it (TRL's GRPOTrainer names).
TRAINING_PANELS = (("reward", ("reward",)), ("KL to the reference model", ("kl",)), ("loss", ("loss",)))
_COMPONENT = re.compile(r"rewards/(.+)/mean")


def reward_components(keys: Any) -> list[tuple[str, str]]:
    """(log key, reward function name) of TRL's per-function reward means among `keys`, sorted."""
    return [(k, m.group(1)) for k in sorted(keys) if (m := _COMPONENT.fullmatch(k))]


def training_figure(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """Reward (with each reward function's mean), KL and loss per step, from a trainer's log history."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(11, 3.4)
    for ax, (panel, keys) in zip(_grid(fig, len(TRAINING_PANELS), len(TRAINING_PANELS)), TRAINING_PANELS):
        drawn = 0
        series = [(k, k) for k in keys]
        if panel == "reward":
            series += reward_components({k for h in history for k in h})
        for key, label in series:
            pts = [(h["step"], h[key]) for h in history if key in h and "step" in h and np.isfinite(h[key])]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="." if len(pts) < 30 else None, label=label,
                        linewidth=2 if key == keys[0] else 1)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, f"not logged ({', '.join(keys)})", ha="center", va="center", transform=ax.transAxes)
        elif len(series) > 1:
            ax.legend(fontsize="x-small")
        ax.set_title(panel, fontsize="medium")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return fig


# -- output ----------------------------------------------------------------------------------


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format: use one of {', '.join(FORMATS)}, got {fmt!r}")


def _rc(salt: str) -> dict[str, Any]:
    return {"svg.fonttype": "none", "svg.hashsalt": salt}


def svg_text(fig: Figure, salt: str) -> str:
    """The figure as an `<svg>` element for inline use in HTML (no XML prologue)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_rc(salt)):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def save_figure(fig: Figure, path: Path, fmt: str) -> Path:
    """Write the figure as SVG or PNG (atomically: a reader never sees half a file)."""
    import matplotlib

    check_format(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with matplotlib.rc_context(_rc(path.stem)):
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=meta)
    tmp.replace(path)
    return path


def folder_name(text: str) -> str:
    """A file-system-safe folder name for a run or training."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "run"


def write_run_plots(run_dir: Path, out: Path, fmt: str = "svg", *, n_resamples: int = 1000,
                    seed: int = 0) -> list[Path]:
    """Every figure of a run into OUT/<model>_<task>_<run id>/<name>.<fmt>; the paths written."""
    from adbench.results.runs import Run, load_results

    check_format(fmt)
    run = Run(Path(run_dir), load_results(Path(run_dir)))
    res = run.results
    folder = Path(out) / folder_name(f"{res['model']}_{res['task']}_{res.get('run_id', Path(run_dir).name)}")
    figs = run_figures(run, n_resamples=n_resamples, seed=seed)
    return [save_figure(fig, folder / f"{name}.{fmt}", fmt) for name, fig in figs.items()]
