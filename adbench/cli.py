"""The `adbench` command line.

    adbench list [models|tasks|recipes] [NAME...] [-v]
    adbench run --model NAME[,NAME...] --task NAME[,NAME...] [-M [MODEL:]k=v]... [-T [TASK:]k=v]... [--limit N]
                [--label [MODEL:]NAME] [--config FILE.yaml] [--print-config] ...
    adbench score RUN_DIR
    adbench leaderboard RUN_DIR... [--metric strict|mmad] [--format markdown|csv|latex] [--out FILE]
    adbench leaderboard --layout table1|table2|table3|table4|mmad|datasets|categories|qtypes|boxes [RUN_DIR...]
                        [--reference paper]
                        [--compare MODEL] [--ci] [--metric strict|mmad] [--format ...] [--out FILE]
    adbench report RUN_DIR [--out FILE.html]
    adbench plot RUN_DIR|TRAIN_DIR... [--out DIR] [--format svg|png]
    adbench data demo [--out DIR]
    adbench data check [--data-root DIR] [--datasets NAME...]
    adbench data boxes [--data-root DIR] [--datasets NAME...] [--kernel K] [--min-area A]
    adbench demo [--no-adfm]
    adbench train --recipe NAME [--set key=value]... --out DIR [--data-root DIR]
    adbench train --recipe NAME [--set key=value]... --print-config [--out DIR]
    adbench variance --model NAME [-M k=v]... --task NAME [-T k=v]... [-n 6] [--limit N]
                     [--reward-variant paper|released] [--json]

Every command prints a user's mistake (an `adbench.errors.UserError`: a bad argument, file,
recipe or data folder) as one line naming it, and exits 2; any other exception is a bug and
keeps its traceback. `-M` / `-T` values are typed from the model's or task's signature
(`adbench.args`) before anything is built. `adbench run` also exits 1 when its failures pass
`--max-failed` or the model failed its first queries all alike, and 3 when `--max-cost`
stopped it (`adbench.runner.RunOutcome.exit_code`; README, "Failed, incomplete and
over-budget runs").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adbench import __version__, registry
from adbench.errors import UserError

#: Models `adbench demo` runs: offline, CPU, no weights beyond what pip installs.
DEMO_MODELS = ("chance", "patchcore")
DEMO_TASK = "demo-binary"
#: `adbench demo` also trains this recipe into <out>/adfm-tiny and scores the adapter.
DEMO_RECIPE = "tiny"
DEMO_TRAIN_FOLDER = "adfm-tiny"
DEMO_TINY_LABEL = "adfm (tiny demo model)"


def _add_run_args(p: argparse.ArgumentParser) -> None:
    # defaults are RunSpec's (None here = not given, so that a --config file's value stands)
    p.add_argument("--model", action="append", metavar="NAME[,NAME...]",
                   help="registered model name(s), comma-separated: every model runs on every task "
                   "(see `adbench list models`)")
    p.add_argument("--task", action="append", metavar="NAME[,NAME...]",
                   help="registered task or task group name(s), comma-separated (see `adbench list tasks`)")
    p.add_argument("-M", dest="model_args", action="append", metavar="[MODEL:]KEY=VALUE",
                   help="model argument for every model, or for MODEL only (repeatable)")
    p.add_argument("-T", dest="task_args", action="append", metavar="[TASK:]KEY=VALUE",
                   help="task argument for every task, or for TASK (or a group's tasks) only (repeatable)")
    p.add_argument("--label", action="append", metavar="[MODEL:]NAME",
                   help="the run's row name in tables (recorded in config.json); MODEL:NAME with several models")
    p.add_argument("--config", type=Path, metavar="FILE.yaml",
                   help="read the run configuration from a YAML file (keys: the flags' names); flags override it")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as YAML (a --config file) and run nothing")
    p.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    p.add_argument("--limit", type=int, help="deterministic subset of N samples, stratified by dataset/category/label")
    p.add_argument("--batch-size", type=int, help="queries per model call (default 8)")
    p.add_argument("--seed", type=int, help="seed for subsets and sampling (default 0)")
    p.add_argument("--out", type=Path, help="runs folder (default ./runs)")
    p.add_argument("--run-id", help="name of the run folder (default: a hash of the configuration)")
    p.add_argument("--max-cost", type=float, help="stop before the run's API cost would pass this many USD "
                   "(checked before every batch, resumed or not; exit 3 when it stops the run)")
    p.add_argument("--max-failed", type=float, metavar="SHARE|N",
                   help="exit 1 when more samples of this session failed than this: a share below 1 of the "
                   "samples asked (default 0.5) or a number of samples")
    p.add_argument("--no-retry-failed", action="store_true", help="on resume, do not ask transient failures again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                   help="under torchrun / accelerate launch: how long a process waits for the others at a "
                   "synchronisation point (model loading, one batch, scoring) before it fails (default 1800)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adbench", description="Benchmark MLLMs on industrial anomaly detection.")
    parser.add_argument("--version", action="version", version=f"adbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models, tasks (and task groups) and training recipes")
    p.add_argument("what", nargs="?", choices=["models", "tasks", "recipes"], help="one kind (default: all)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these, with their -M / -T arguments")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="each model's -M (task's -T) arguments with their types and defaults")

    p = sub.add_parser("run", help="run a model on a task (resumes an interrupted run)")
    _add_run_args(p)

    p = sub.add_parser("score", help="recompute results.json from samples.jsonl")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")

    p = sub.add_parser("leaderboard", help="table of runs: models x datasets, or one of the paper's tables")
    p.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    p.add_argument("--out", type=Path, help="write the table to this file instead of stdout")
    p.add_argument("--layout", help="table1 (MMAD binary per dataset), table2 (cross-dataset), table3 (question "
                   "types), table4 (ablation), mmad (MMAD's summary, all question types), datasets (one column per dataset; "
                   "the default with --compare/--ci), categories (one per dataset/category), qtypes (one per "
                   "question type of the runs) or boxes (the quality of the boxes a model wrote, per dataset)")
    p.add_argument("--reference", choices=["paper"], help="add the published rows of the layout's paper table")
    p.add_argument("--compare", metavar="MODEL", help="add difference columns against this row (a run's label or "
                   "a published model, e.g. GPT-4.1); McNemar's test where both are runs on the same samples")
    p.add_argument("--ci", action="store_true", help="95%% bootstrap confidence interval for every run figure")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--metric", default="strict", choices=["strict", "mmad"],
                   help="the runs' figures: strict (default; failed or unparsable replies count as wrong) or mmad "
                   "(MMAD's own answer rule and summary); --ci and --compare follow it")

    p = sub.add_parser("report", help="self-contained HTML report of one run (images, boxes, reasoning, answers)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--thumb", type=int, default=256, help="thumbnail size in pixels (longest side, default 256)")
    p.add_argument("--per-page", type=int, default=50, help="samples per page (default 50)")

    p = sub.add_parser("plot", help="figures as files: a run's ROC curves, score histograms, per-category accuracy "
                       "and confusion matrices; a training's reward, KL and loss curves")
    p.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR|TRAIN_DIR",
                   help="run directories and/or training folders (the --out of `adbench train`)")
    p.add_argument("--out", type=Path, default=Path("plots"), help="folder for the figures (default ./plots); "
                   "one subfolder per run or training")
    p.add_argument("--format", default="svg", choices=["svg", "png"], help="file format (default svg)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the category intervals "
                   "(default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")

    p = sub.add_parser("data", help="datasets: demo suite, checks, pseudo boxes")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="write the built-in demo suite (MMAD format)")
    d.add_argument("--out", type=Path, help="folder (default: <data root>/demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="regenerate even if present")
    d = dsub.add_parser("check", help="which datasets are present, image counts, and every problem with its path")
    d.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    d.add_argument("--datasets", nargs="+", metavar="NAME", help="check only these (exit 1 if one is unusable)")
    d.add_argument("--fast", action="store_true", help="only check that files exist (do not open images)")
    d.add_argument("--show", type=int, default=20, help="paths listed per kind of problem (default 20)")
    d.add_argument("--workers", type=int, default=8, help="threads checking images (default 8)")
    d = dsub.add_parser("boxes", help="precompute the pseudo ground-truth boxes of every mask (cached on disk)")
    d.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    d.add_argument("--datasets", nargs="+", metavar="NAME", help="only these datasets (default: all present)")
    d.add_argument("--kernel", type=int, default=None, help="dilation kernel side, pixels (default 15)")
    d.add_argument("--min-area", type=int, default=None, help="smallest component kept, pixels (default 16)")
    d.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    d.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("demo", help="run every offline model on the demo suite and print the leaderboard")
    p.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default ./runs)")
    p.add_argument("--limit", type=int, help="subset size per model")
    p.add_argument("--no-adfm", action="store_true", help="skip training and scoring the tiny AD-FM model")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="GRPO training of AD-FM from a recipe (TRL); resumes from its last checkpoint")
    p.add_argument("--recipe", required=True, help="recipe name (see `adbench list recipes`) or a .yaml file")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set grpo.beta=0.1 (repeatable; keys checked and values "
                        "typed by the recipe schema)")
    p.add_argument("--out", type=Path, help="output folder (adapter in OUT/adapter); required unless --print-config")
    p.add_argument("--data-root", type=Path, help="data folder (default: recipe data.data_root, $ADBENCH_DATA, cache)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved recipe and the exact GRPOConfig / LoraConfig arguments as JSON; "
                        "loads no model or data, needs no GPU")

    p = sub.add_parser("variance", help="share of images whose sampled responses all get the same reward (Fig. 5)")
    p.add_argument("--model", required=True, help="a local sampling model, e.g. adfm")
    p.add_argument("--task", required=True)
    p.add_argument("-M", dest="model_args", action="append", metavar="KEY=VALUE", help="model argument (repeatable)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("-n", type=int, default=6, help="responses sampled per image (default 6, as the paper)")
    p.add_argument("--limit", type=int, help="deterministic stratified subset of N images")
    p.add_argument("--reward-variant", default="paper", choices=["paper", "released"])
    p.add_argument("--alpha", type=float, default=0.3, help="weight of r_count inside r_loc (default 0.3)")
    p.add_argument("--data-root", type=Path, help="data folder (default: $ADBENCH_DATA or the user cache)")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed (default 0)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true",
                   help="print JSON (shares, the sampling settings used, every response's text and rewards)")
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    if args.what is None:
        if args.names:
            raise UserError("adbench list NAME needs the kind first: adbench list models|tasks NAME")
        for i, what in enumerate(("models", "tasks", "recipes")):
            if i:
                print()
            print(f"{what}:")
            _list(what, [], args.verbose)
        return 0
    return _list(args.what, args.names, args.verbose or bool(args.names))


def _list(what: str, names: list[str], verbose: bool) -> int:
    """One kind's names and descriptions; `verbose`: with each one's arguments (types, defaults)."""
    if what == "recipes":
        if names:
            raise UserError("adbench list recipes takes no NAME; `adbench train --recipe NAME --print-config` "
                            "shows one recipe")
        return _training("list_recipes")()
    entries = registry.models() if what == "models" else registry.tasks()
    groups = registry.groups() if what == "tasks" else {}
    descriptions = {n: e.description for n, e in entries.items()}
    descriptions |= {n: f"group: {', '.join(g.members)}, one run each" + (f"; {g.description}" if g.description else "")
                     for n, g in groups.items()}
    for name in names:  # an unknown name: the registry's error, which lists the valid ones
        if name not in descriptions and what == "tasks":
            registry.expand_tasks([name])
        elif name not in descriptions:
            registry.check_model(name)
    shown = names or list(descriptions)
    width = max(map(len, shown), default=0)
    for name in shown:
        print(f"{name:<{width}}  {descriptions[name]}")
        if verbose and name not in groups:
            for line in _argument_lines(what, name):
                print(f"    {line}")
    return 0


def _argument_lines(kind: str, name: str) -> list[str]:
    """`-M key: type = default` per argument the model (task) takes: the signature `adbench.args` types against."""
    from adbench.args import type_text

    params, open_ = registry.arguments(kind, name)
    flag = registry.FLAGS[kind]
    lines = [f"{flag} {p.name}: {type_text(p.hint)}" + (" (required)" if p.required else f" = {_value_text(p.default)}")
             for p in params]
    if open_:
        lines.append(f"{flag} any other key: passed on as given (read as JSON, else text)")
    return lines or ["(no arguments)"]


def _value_text(value: Any) -> str:
    """A default as it would be written after `-M key=`."""
    import json

    if isinstance(value, str):
        return value if value else "''"
    try:
        return json.dumps(value)  # None -> null, True -> true, (1, 2) -> [1, 2]
    except TypeError:
        return str(value)


def cmd_run(args: argparse.Namespace) -> int:
    from adbench import runconfig
    from adbench.runner import run

    options = {"data_root": args.data_root, "limit": args.limit, "batch_size": args.batch_size, "seed": args.seed,
               "out": args.out, "run_id": args.run_id, "max_cost": args.max_cost, "max_failed": args.max_failed,
               "retry_failed": False if args.no_retry_failed else None, "progress": False if args.no_progress else None,
               "dist_timeout": args.dist_timeout}
    config = runconfig.from_cli(args.model, args.task, args.model_args, args.task_args, args.label, options)
    if args.config is not None:
        config = runconfig.read_file(args.config).override(config)
    resolved = config.resolve()  # every name, scope and -M / -T value checked and typed before anything runs
    if args.print_config:
        print(resolved.to_yaml(), end="")
        return 0
    if len(resolved.specs) > 1:
        return _run_many(resolved.specs)
    outcome = run(resolved.specs[0])
    _report_outcome(outcome)
    return outcome.exit_code


def _run_many(specs: list[Any]) -> int:
    """Every (model, task) pair in turn, then one leaderboard over them; exit status: the worst pair's."""
    from adbench.api import leaderboard
    from adbench.data.paths import resolve_data_root
    from adbench.distributed import World
    from adbench.runner import EXIT_OK
    from adbench.sweep import run_pairs, worst

    resolve_data_root(specs[0].data_root)  # a named data folder that does not exist: one error, not one per pair
    pairs = run_pairs(specs, _report_outcome)
    if not World.from_env().is_main:  # a multi-process launch: rank 0 prints the leaderboard and the tally
        return worst([p.exit_code for p in pairs])
    finished = [p.outcome for p in pairs if p.outcome is not None]
    if finished:
        print(leaderboard(finished).text, end="")
    not_done = [p for p in pairs if p.exit_code != EXIT_OK]
    print(f"adbench: {len(pairs) - len(not_done)} of {len(pairs)} runs done", file=sys.stderr)
    for p in not_done:
        why = p.error or p.outcome.stopped or "more failed samples than --max-failed allows"
        print(f"  not done: {p.name} (exit {p.exit_code}): {why}", file=sys.stderr)
    return worst([p.exit_code for p in pairs])


def _report_outcome(outcome: Any) -> None:
    """A finished run: its summary, why it stopped or failed, and its run directory (the last line)."""
    if not outcome.is_main:  # a multi-process run: rank 0 prints the summary; the others exit with the same status
        return
    _print_summary(outcome.results)
    if outcome.failed_early is not None:
        print(f"adbench: error: the model failed its first queries, all with: {outcome.failed_early}\n"
              "  nothing of them was recorded; fix the cause and run the same command again", file=sys.stderr)
    elif outcome.stopped:
        print(f"stopped early ({outcome.stopped}); run the same command again to continue", file=sys.stderr)
    if outcome.too_many_failed:
        print(f"adbench: error: {outcome.n_new_failed} of the {outcome.n_new} samples asked in this session failed "
              f"(more than --max-failed {outcome.max_failed:g} allows); they are recorded and count as wrong",
              file=sys.stderr)
    print(outcome.run_dir)


def _print_summary(results: dict) -> None:
    from adbench.results.runs import run_name
    from adbench.results.status import run_status
    from adbench.results.writer import format_percent

    c = results["counts"]
    avg = results["metrics"].get("average", {}).get("accuracy")  # the engine's figure, printed as tables print it
    acc = "-" if avg is None else f"{format_percent(avg)}%"
    print(f"{run_name(results)} on {results['task']}: accuracy {acc} "
          f"(n={c['n']}, failed={c['n_failed']}, unparsed={c['n_unparsed']})")
    for line in run_status(results).lines():
        print(f"  {line}")


def cmd_score(args: argparse.Namespace) -> int:
    from adbench.runner import rescore

    for d in args.run_dirs:
        scored = rescore(d)
        _print_summary(scored.results)
        if not scored.written:
            print(f"{d}: a run is in progress there: the figures above are from the records written so far "
                  "(a read-only snapshot); results.json was not written, the run writes it when it ends",
                  file=sys.stderr)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from adbench.api import leaderboard

    text = leaderboard(args.run_dirs, args.layout, reference=args.reference, compare=args.compare, ci=args.ci,
                       metric=args.metric, format=args.format, resamples=args.resamples,
                       confidence=args.confidence, seed=args.seed).text
    if args.out:
        from adbench.store import write_text_file

        write_text_file(args.out, text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from adbench.results.report import write_report

    print(write_report(args.run_dir, args.out, thumb=args.thumb, per_page=args.per_page))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from adbench.plots import write_run_plots
    from adbench.store import RunStore

    for path in args.paths:
        store = RunStore(path)
        if store.results_path.exists() or store.samples_path.exists():  # a run (without results.json: says so)
            written = write_run_plots(path, args.out, args.format, n_resamples=args.resamples, seed=args.seed)
        else:
            written = _training("plot_training")(path, args.out, args.format)
        for w in written:
            print(w)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return cmd_data_check(args)
    if args.data_command == "boxes":
        return cmd_data_boxes(args)
    from adbench.data.demo import generate_demo
    from adbench.data.paths import default_data_root

    out = args.out or default_data_root() / "demo"
    generate_demo(out, seed=args.seed, force=args.force)
    print(out)
    return 0


def _dataset_names(items: list[str] | None) -> list[str] | None:
    """--datasets a b or --datasets a,b; validated against the catalog."""
    from adbench.data.catalog import spec

    if not items:
        return None
    return [spec(n).name for item in items for n in item.split(",") if n.strip()]


def cmd_data_check(args: argparse.Namespace) -> int:
    from adbench.data.check import ABSENT, check_datasets, format_report
    from adbench.data.paths import default_data_root

    root = (args.data_root or default_data_root()).expanduser()
    names = _dataset_names(args.datasets)
    reports = check_datasets(root, names, verify=not args.fast, workers=args.workers)
    print(format_report(root, reports, show=args.show), end="")
    requested = reports if names else [r for r in reports if r.status != ABSENT]
    if not requested:
        missing = "" if root.is_dir() else " (the folder does not exist)"
        print(f"adbench: no dataset found under {root}{missing}; the README lists where to get each and its "
              "folder name", file=sys.stderr)
        return 1
    bad = [r.name for r in requested if not r.usable]
    if bad:
        print(f"adbench: unusable: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def cmd_data_boxes(args: argparse.Namespace) -> int:
    import time

    from adbench.data.catalog import DATASETS, dataset_dir
    from adbench.data.paths import default_data_root
    from adbench.data.pseudo_boxes import BoxParams, default_cache_dir, precompute
    from adbench.schema import ANOMALOUS

    root = (args.data_root or default_data_root()).expanduser()
    defaults = BoxParams()
    params = BoxParams(args.kernel or defaults.kernel, args.min_area or defaults.min_area)
    names = _dataset_names(args.datasets) or [n for n in DATASETS if dataset_dir(root, n).is_dir()]
    if not names:
        missing = "" if root.is_dir() else " (the folder does not exist)"
        print(f"adbench: no dataset found under {root}{missing}", file=sys.stderr)
        return 1
    status = 0
    for name in names:
        folder = dataset_dir(root, name)
        if not folder.is_dir():
            print(f"{name}: not found at {folder}", file=sys.stderr)
            status = 1
            continue
        masks = [s.mask for s in DATASETS[name].scan(folder).samples if s.label == ANOMALOUS and s.mask]
        t0 = time.perf_counter()
        r = precompute(masks, default_cache_dir(root), params, workers=args.workers, progress=not args.no_progress)
        print(f"{name}: {r.n_masks} masks, {r.n_boxes} boxes ({r.computed} computed, {r.cached} from cache) "
              f"in {time.perf_counter() - t0:.1f} s; kernel {params.kernel}, min area {params.min_area}")
        for _mask, err in r.errors or []:
            print(f"  error: {err}", file=sys.stderr)
            status = 1
        if r.write_error:
            print(f"  {r.write_error}", file=sys.stderr)
    print(default_cache_dir(root))
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from adbench.data.demo import ensure_demo
    from adbench.data.paths import default_data_root
    from adbench.results.tables import build_table
    from adbench.results.writer import render_table
    from adbench.runner import RunSpec, run

    data_root = args.data_root or default_data_root()
    print(f"demo suite: {ensure_demo(data_root)}", file=sys.stderr)
    run_dirs = []
    for model in DEMO_MODELS:
        spec = RunSpec(model=model, task=DEMO_TASK, data_root=data_root, out=args.out, limit=args.limit,
                       progress=not args.no_progress)
        run_dirs.append(run(spec).run_dir)
    tiny_dir = None
    if not args.no_adfm:
        adapter = _training("demo_adapter")(Path(args.out) / DEMO_TRAIN_FOLDER, data_root, DEMO_RECIPE,
                                            not args.no_progress)
        spec = RunSpec(model="adfm", task=DEMO_TASK, model_args={"adapter": str(adapter)}, data_root=data_root,
                       out=args.out, limit=args.limit, progress=not args.no_progress, label=DEMO_TINY_LABEL)
        tiny_dir = run(spec).run_dir
        run_dirs.append(tiny_dir)
    table = build_table("datasets", run_dirs)  # the plain leaderboard
    for row in table.rows:
        if tiny_dir is not None and row.run is not None and row.run.run_dir == Path(tiny_dir):
            row.notes.append("a 2-layer random Qwen2.5-VL trained for about a minute on this CPU by the `tiny` "
                             "recipe: it shows the training and scoring path, not AD-FM's accuracy")
    print(render_table(table, "markdown", compact=True), end="")
    for d in run_dirs:
        print(d)
    return 0


def _training(name: str) -> Callable[..., Any]:
    """adbench.training is reached by name, as models and tasks are (core never imports it)."""
    return registry.load_target(f"adbench.training.commands:{name}")


def cmd_train(args: argparse.Namespace) -> int:
    if args.data_root is not None and not args.print_config:  # --print-config reads no data
        from adbench.data.paths import resolve_data_root

        resolve_data_root(args.data_root)  # a named folder must exist (the message says how to make the demo)
    return _training("train_command")(args)


def cmd_variance(args: argparse.Namespace) -> int:
    from adbench.data.paths import resolve_data_root

    resolve_data_root(args.data_root)  # --data-root or $ADBENCH_DATA must exist
    return _training("variance_command")(args)


COMMANDS = {
    "list": cmd_list,
    "run": cmd_run,
    "score": cmd_score,
    "leaderboard": cmd_leaderboard,
    "report": cmd_report,
    "plot": cmd_plot,
    "data": cmd_data,
    "demo": cmd_demo,
    "train": cmd_train,
    "variance": cmd_variance,
}


def _rank_prefix() -> str:
    """'[rank R/N] ' in a process of a multi-process launch (each rank prints its own error), else ''."""
    import os

    size, rank = os.environ.get("WORLD_SIZE", ""), os.environ.get("RANK", "")
    return f"[rank {rank}/{size}] " if size.isdigit() and int(size) > 1 and rank else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:  # a user's mistake: one line; anything else is a bug and keeps its traceback
        print(f"adbench: error: {_rank_prefix()}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
