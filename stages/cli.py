"""The `facenas` command: one subcommand per stage and tool, each a parser plus one stage call.

    facenas train [--config YAML] [--data ROOT] [--resume]       stage 2, the supernet
    facenas latency measure|calibrate|validate|model|report|bundle|device-bench ...
    facenas search --latency-budget 12ms                          stage 4 (NSGA-II by default)
    facenas retrain --arch baseline --epochs 20                   one arch, stand-alone
    facenas report runs/default/search
    facenas pipeline [--latency-budget 12ms]                      everything, resumable
    facenas predict --weights runs/x/model.pt --images DIR --out PRED
    facenas evaluate --gt ground_truth --pred PRED                official WIDER FACE AP
    facenas bundle --config YAML --out bundle/                    what a device needs to time

`python train_supernet.py`, `python evolve.py`, `python retrain.py`, `python report.py` and
`python pipeline.py` are the same commands (`facenas train`, `search`, `retrain`, `report`,
`pipeline`) with the same flags. Errors print one line naming the file/value and exit 1;
Ctrl-C exits 130, leaving every artifact written atomically, so the same command resumes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from core.lock import LockError
from stages.run import DEFAULT_CONFIG, Run

# subcommands whose parser lives with their tool: `facenas <name> ...` runs module.main([...])
TOOLS = {"predict": ("stages.predict", "write WIDER FACE prediction files for a folder of images"),
         "evaluate": ("detection.wider_eval", "official WIDER FACE AP of prediction files"),
         "bundle": ("latency.bundle", "the folder a device needs to time the table (onnxruntime "
                                      "+ numpy only)")}
LATENCY_TOOLS = {
    "measure": ("latency.measure", "build the table on this machine (or --import a device's)"),
    "calibrate": ("latency.calibrate", "fit measured ~ a * raw + b on whole subnets"),
    "validate": ("latency.validate", "time spread subnets end to end against the table"),
    "report": ("latency.report", "latency each factor of the space adds; dominated choices"),
    "bundle": ("latency.bundle", "the folder a device needs to time the table"),
    "device-bench": ("latency.device_bench", "time a bundle on the device itself")}
ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError, LockError)


def _errors() -> tuple[type[Exception], ...]:
    """What a command reports as one line: bad input, and a run that refuses to continue."""
    from detection.loop import NonFiniteLoss
    from stages.trainer import RunDirError

    return (*ERRORS, RunDirError, NonFiniteLoss)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# -- train ----------------------------------------------------------------------------------------
def train_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment YAML")
    p.add_argument("--data", help="WIDER FACE root (official layout); default: the generated dataset")
    p.add_argument("--out", help="run folder (default runs/<experiment name>)")
    p.add_argument("--sampler", choices=["strict_fair", "uniform"], help="path sampling")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    _common(p)


def train_command(args) -> dict:
    from stages.trainer import train_supernet

    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.sampler:
        overrides.append(f"train.sampler={args.sampler}")
    run = Run.create(args.config, overrides, args.out)
    summary = train_supernet(run, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.no_progress)
    if summary.get("skipped_images"):
        print(f"note: {summary['skipped_images']} unreadable training images were skipped "
              "(see the warnings above)")
    print(f"supernet written to {run.supernet} ({summary['steps']} steps)")
    return summary


# -- search ---------------------------------------------------------------------------------------
def search_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment YAML (default: the config.yaml saved beside "
                                    "--supernet, else experiments/default.yaml)")
    p.add_argument("--supernet", help="supernet checkpoint (default runs/<name>/supernet.pt)")
    p.add_argument("--latency-table", help="latency table CSV (default runs/<name>/latency.csv; "
                                           "built there if missing)")
    p.add_argument("--latency-budget", help="e.g. 12ms, 12 (ms) or 0.012s")
    p.add_argument("--population", type=int)
    p.add_argument("--generations", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--algorithm", choices=["nsga2", "aging", "rl", "random"], help="default nsga2")
    p.add_argument("--surrogate", action=argparse.BooleanOptionalAction,
                   help="NSGANetV2-style: a GP fitted on the evaluated archs picks which offspring "
                        "to evaluate (nsga2, aging; default on: search.surrogate)")
    p.add_argument("--objective", choices=["pareto", "mnas"], default="pareto",
                   help="pareto: AP and latency (NSGA-II); mnas: ACC x (LAT/T)^w")
    p.add_argument("--metric", help="AP used as objective: easy, medium, hard, mean, min50")
    p.add_argument("--data", help="WIDER FACE root (default: the generated dataset)")
    p.add_argument("--out", help="search folder (default runs/<name>/search)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the search in --out")
    p.add_argument("--strict", action="store_true",
                   help="refuse a latency table that lacks entries of this space instead of "
                        "predicting them with the latency model (latency.model)")
    p.add_argument("--device", default="auto")
    _common(p)


def _search_overrides(args) -> list[str]:
    out = list(args.set)
    for flag, key in (("population", "population"), ("generations", "generations"),
                      ("seed", "seed"), ("latency_budget", "latency_budget"),
                      ("metric", "ap_metric"), ("algorithm", "algorithm")):
        value = getattr(args, flag)
        if value is not None:
            out.append(f"search.{key}={value}")
    if args.objective == "mnas":
        if args.algorithm is not None:  # both name the search algorithm: refuse, don't pick one
            raise ValueError(f"--objective mnas runs the MnasNet search; it excludes "
                             f"--algorithm {args.algorithm}")
        out.append("search.algorithm=mnas")
    if args.surrogate is not None:
        out.append(f"search.surrogate={str(args.surrogate).lower()}")
    if args.data:
        out.append(f"data.root={args.data}")
    if args.no_progress:
        out.append("search.progress=false")
    return out


def search_command(args):
    from pathlib import Path

    from stages.search import search

    # a search that continues a run takes that run's experiment (its saved config.yaml)
    run = Run.find(args.config, _search_overrides(args), beside=args.supernet)
    result = search(run, supernet=args.supernet and Path(args.supernet),
                    table=args.latency_table and Path(args.latency_table),
                    out=args.out and Path(args.out), resume=args.resume, overwrite=args.overwrite,
                    strict=args.strict, device=args.device)
    if result is None:
        return None
    print(result.report())
    print(f"written to {result.out_dir}: candidates.csv, pareto.csv, pareto.png, search.yaml")
    return result


# -- retrain --------------------------------------------------------------------------------------
def retrain_parser(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", help="arch string, or 'baseline'")
    what.add_argument("--pareto", help="a search's pareto.csv (with --pick)")
    p.add_argument("--pick", help="<row> (0-based), best, best-under:<budget> e.g. best-under:12ms, "
                                  "or fastest-not-worse (fastest with one-shot AP >= the baseline's)")
    p.add_argument("--config", help="experiment YAML (default: the run's saved config.yaml)")
    p.add_argument("--init", choices=["scratch", "supernet"], default="scratch")
    p.add_argument("--supernet", help="supernet checkpoint (default runs/<name>/supernet.pt)")
    p.add_argument("--latency-table", help="table for the predicted latency (default "
                                           "runs/<name>/latency.csv if present and matching)")
    p.add_argument("--data", help="WIDER FACE root (default: the generated dataset)")
    p.add_argument("--train-split", choices=["train", "val"], default="train",
                   help="val: train on the val images (for a val-only root; a pipeline check)")
    p.add_argument("--out", help="output folder (default runs/<name>/retrain/<arch hash>)")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    p.add_argument("--eval-images", type=int, help="val images for the AP (default: all)")
    p.add_argument("--device", help="shortcut for --set train.device=...")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    _common(p)


def retrain_command(args) -> dict:
    import json
    from pathlib import Path

    from stages import pick as pk
    from stages.retrain import find_run_dir, resolve_train_root, retrain, summary_text

    if (args.pareto is None) != (args.pick is None):
        raise ValueError("--pick goes with --pareto (and --pareto needs --pick)")
    overrides = list(args.set)
    for value, key in ((args.eval_images, "retrain.eval_images"), (args.device, "train.device")):
        if value is not None:
            overrides.append(f"{key}={value}")
    data = resolve_train_root(args.data, args.train_split)
    if data is not None:
        overrides.append(f"data.root={data}")
    run_dir = find_run_dir(args.pareto, args.supernet)
    if args.config:
        run = Run.create(args.config, overrides, run_dir)
    elif run_dir is not None:
        run = Run.open(run_dir, overrides)
    else:
        run = Run.create(DEFAULT_CONFIG, overrides)
    one_shot, arch = None, args.arch
    if args.pareto:
        pareto = pk.read_pareto(args.pareto)
        search_dir = Path(args.pareto).parent
        key = pk.search_ap_key(search_dir, pareto)
        row = pk.pick_from_pareto(pareto, args.pick, key, pk.baseline_one_shot(search_dir, key))
        arch, one_shot = row["arch"], json.loads(row.to_json())
    metrics = retrain(run, arch, epochs=args.epochs, init=args.init,
                      supernet=args.supernet and Path(args.supernet),
                      table=args.latency_table and Path(args.latency_table),
                      out=args.out and Path(args.out), one_shot=one_shot, resume=args.resume,
                      overwrite=args.overwrite, progress=not args.no_progress,
                      extra={"train_split": args.train_split})
    out = Path(args.out) if args.out else run.retrain_dir(metrics["arch"])
    print(summary_text(metrics) + f"\nwritten to {out}/metrics.json")
    return metrics


# -- report ---------------------------------------------------------------------------------------
def report_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("search", help="search folder (candidates.csv, pareto.csv, search.yaml)")
    p.add_argument("--supernet-run", help="supernet run folder (log.csv, evals.csv); default: "
                                          "the search folder's parent")
    p.add_argument("--latency-table", help="latency table CSV (its .validation.json/.png are shown)")
    p.add_argument("--retrained", action="append", default=[], metavar="DIR",
                   help="retrain folder or metrics.json, besides <run>/retrain/* (repeatable)")
    p.add_argument("--out", help="HTML path (default <search>/report.html)")


def report_command(args):
    from stages.report import build_report

    path = build_report(args.search, args.supernet_run, args.latency_table, args.retrained, args.out)
    print(f"report written to {path}")
    return path


# -- pipeline -------------------------------------------------------------------------------------
def pipeline_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--latency-budget", default="12ms")
    p.add_argument("--data", help="WIDER FACE root (default: the generated dataset)")
    p.add_argument("--retrain-epochs", type=int, default=4,
                   help="retraining budget of the pick, the baseline and the trust-check archs")
    p.add_argument("--pick", default="fastest-not-worse",
                   help="fastest-not-worse (fastest front member with one-shot AP >= the "
                        "baseline's; falls back to best-under the budget), best-under, or a row")
    p.add_argument("--trust-archs", type=int, default=3,
                   help="extra archs retrained to check the one-shot ranking (0: no check)")
    p.add_argument("--out", help="run folder (default runs/<experiment name>)")
    _common(p)


def pipeline_command(args) -> dict:
    import json

    from stages.pipeline import pipeline
    from stages.retrain import resolve_train_root

    overrides = list(args.set)
    if args.data:  # later stages score on the user's val split, as retraining does
        overrides.append(f"data.root={resolve_train_root(args.data, 'train')}")
    run = Run.create(args.config, overrides, args.out)
    timings = pipeline(run, args.latency_budget, retrain_epochs=args.retrain_epochs, pick=args.pick,
                       trust_archs=args.trust_archs, progress=not args.no_progress)
    print(json.dumps({"seconds": timings, "report": str(run.report)}, indent=1))
    return timings


# -- latency model (the other latency tools keep their parsers in their modules) ---------------------
def latency_model_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="table CSV from facenas latency measure")
    p.add_argument("--config", help="experiment YAML (default: the one recorded in the sidecar)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--archs", type=int, default=50, help="sampled subnets for the subnet error")


def latency_model_command(args) -> dict:
    import json

    from detection.config import DetectorConfig
    from latency.model import LatencyModel, cross_validate
    from latency.table import LatencyTable, experiment_of

    exp = experiment_of(args.table, args.config, args.set)
    table = LatencyTable.load(args.table, exp.space, exp.section("detector", DetectorConfig))
    report = {"model": LatencyModel.fit(table.frame).describe(),
              "cross_validation": cross_validate(table, args.folds, args.archs)}
    print(json.dumps(report, indent=1))
    return report


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "train": (train_parser, train_command, "train the one-shot supernet (stage 2)"),
    "search": (search_parser, search_command, "search subnets under a latency budget (stage 4)"),
    "retrain": (retrain_parser, retrain_command, "retrain one arch stand-alone, export and time it"),
    "report": (report_parser, report_command, "write the HTML report of a search"),
    "pipeline": (pipeline_parser, pipeline_command, "every stage on one experiment, resumable"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facenas", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="`facenas <command> --help` for each command's flags")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for name, (add_args, _, help_) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    lat = sub.add_parser("latency", help="latency table: measure, calibrate, validate, model, "
                                          "report, bundle, device-bench")
    lat_sub = lat.add_subparsers(dest="tool", required=True, metavar="tool")
    latency_model_parser(lat_sub.add_parser("model", help="fit the latency model, cross-validated"))
    for name, (_, help_) in LATENCY_TOOLS.items():  # their own parsers answer --help
        lat_sub.add_parser(name, help=help_, add_help=False)
    for name, (_, help_) in TOOLS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def run_command(name: str, argv: list[str] | None = None):
    """Parse `argv` as `facenas <name>`'s flags and run it; errors exit with one line."""
    add_args, command, help_ = COMMANDS[name]
    p = argparse.ArgumentParser(prog=f"facenas {name}", description=help_)
    add_args(p)
    args = p.parse_args(argv)
    try:
        return command(args)
    except _errors() as err:
        sys.exit(f"error: {err}")


def _tool(module: str, prog: str, argv: list[str]):
    """A tool's own main(argv), its usage lines naming the facenas command."""
    saved, sys.argv[0] = sys.argv[0], prog  # argparse takes its default prog from argv[0]
    try:
        return importlib.import_module(module).main(argv)
    finally:
        sys.argv[0] = saved


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in TOOLS:  # their parser, their flags, their --help
            return _tool(TOOLS[argv[0]][0], f"facenas {argv[0]}", argv[1:])
        if len(argv) > 1 and argv[0] == "latency" and argv[1] in LATENCY_TOOLS:
            return _tool(LATENCY_TOOLS[argv[1]][0], f"facenas latency {argv[1]}", argv[2:])
        args = build_parser().parse_args(argv)
        if args.command == "latency":  # only `model` is parsed here
            try:
                return latency_model_command(args)
            except ERRORS as err:
                sys.exit(f"error: {err}")
        return run_command(args.command, argv[1:])
    except KeyboardInterrupt:  # every artifact is written atomically: the state on disk resumes
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)


def entry() -> int:
    """The console script: exit status 0 on success (main's return value is for callers)."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(entry())
