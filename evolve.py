"""Search the space for subnets that are accurate and fast on the target device (pymoo NSGA-II).

    python evolve.py --latency-budget 12ms          # default run's supernet and latency table
    python evolve.py --supernet runs/x/supernet.pt --latency-table runs/x/latency.csv \\
        --latency-budget 12ms --population 32 --generations 20 --out runs/x/search --seed 0
    python evolve.py --latency-budget 12ms --objective mnas      # MnasNet reward, single objective
    python evolve.py --latency-budget 12ms --algorithm random    # random search, same evaluations
    python evolve.py --latency-budget 12ms --no-surrogate        # plain NSGA-II (default: a GP
                                                                 # pre-screens the offspring)
    python evolve.py --latency-budget 12ms --algorithm aging     # AmoebaNet regularized evolution
    python evolve.py --latency-budget 12ms --algorithm rl        # MnasNet's controller (REINFORCE)
    python evolve.py --latency-budget 12ms --resume              # continue an interrupted search
    python evolve.py --latency-budget 12ms --overwrite           # replace the search in --out

Objectives: AP estimate (inherited supernet weights, BN recalibrated, AP on a fixed val subset;
`search.ap_metric`: easy | medium | hard | mean | min50) and predicted latency (the table), with the
budget as a constraint. Writes candidates.csv, pareto.csv, pareto.png, search.yaml to --out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "experiments" / "default.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the search in --out")
    p.add_argument("--strict", action="store_true",
                   help="refuse a latency table that lacks entries of this space instead of "
                        "predicting them with the latency model (latency.model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    return p


def _overrides(args) -> list[str]:
    out = list(args.set)
    for flag, key in (("population", "population"), ("generations", "generations"),
                      ("seed", "seed"), ("latency_budget", "latency_budget"),
                      ("metric", "ap_metric"), ("algorithm", "algorithm")):
        value = getattr(args, flag)
        if value is not None:
            out.append(f"search.{key}={value}")
    if args.objective == "mnas":
        if args.algorithm is not None:  # both name the search algorithm: refuse, don't pick one
            raise SystemExit(f"error: --objective mnas runs the MnasNet search; it excludes "
                             f"--algorithm {args.algorithm}")
        out.append("search.algorithm=mnas")
    if args.surrogate is not None:
        out.append(f"search.surrogate={str(args.surrogate).lower()}")
    if args.data:
        out.append(f"data.root={args.data}")
    if args.no_progress:
        out.append("search.progress=false")
    return out


def main(argv: list[str] | None = None):
    args = get_args_parser().parse_args(argv)
    import torch

    from detection.config import DetectorConfig
    from detection.engine import TrainConfig
    from detection.distributed import gather_shards, init_distributed
    from detection.run import load_checkpoint
    from evolution import SearchConfig, parse_budget, run_search
    from evolution.evaluator import EvalConfig, SupernetEvaluator
    from latency.table import LatencyTable
    from supernet.device import select_device
    from supernet.experiment import Experiment
    from supernet.lock import LockError, hold_lock

    if args.config is None:  # a search that continues a run takes that run's experiment
        saved = Path(args.supernet).parent / "config.yaml" if args.supernet else None
        args.config = str(saved if saved is not None and saved.is_file() else DEFAULT_CONFIG)
    try:
        exp = Experiment.from_yaml(args.config, _overrides(args))
        cfg = exp.section("search", SearchConfig)
        det = exp.section("detector", DetectorConfig)
        run_dir = Path("runs") / exp.name
        supernet = Path(args.supernet or run_dir / "supernet.pt")
        table_path = Path(args.latency_table or run_dir / "latency.csv")
        out = Path(args.out or run_dir / "search")
        if cfg.latency_budget is None:
            raise ValueError("give --latency-budget (e.g. 12ms) or search.latency_budget")
        parse_budget(cfg.latency_budget)  # fail before loading anything
        if args.resume and args.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if not supernet.is_file():
            raise FileNotFoundError(f"supernet checkpoint not found: {supernet} (train one with "
                                    f"python train_supernet.py --config {args.config})")
        if not table_path.is_file() and args.latency_table is None:
            from latency.measure import main as measure

            print(f"no latency table at {table_path}: measuring it on this machine")
            measure(["--config", args.config, "--out", str(table_path), "--calibrate",
                     *sum((["--set", s] for s in args.set), [])])
        threads = exp.section("train", TrainConfig).threads
        if threads:
            torch.set_num_threads(threads)
        table = LatencyTable.load(table_path, exp.space, det, strict=args.strict)
        if args.strict:  # refuse before any search work, naming what is missing
            from latency.keys import build_entries

            missing = table.missing(e.key for e in build_entries(exp.space, det))
            if missing:
                raise SystemExit(f"error: --strict: latency table {table_path} lacks {len(missing)} "
                                 f"entries of this space (first: {missing[0]}); complete it with "
                                 f"python -m latency.measure --config {args.config} --out {table_path}")
        print(f"supernet {supernet}\nlatency table {table_path} ({table.meta.get('device', {})})")
        evaluator = SupernetEvaluator.from_checkpoint(
            load_checkpoint(supernet), exp,
            EvalConfig(cfg.eval_images, cfg.bn_batches, cfg.eval_batch_size, cfg.seed),
            device=args.device, source=str(supernet))
        # under torchrun every rank runs the same search (same seed) and evaluates its share of
        # each generation; results are gathered so all ranks continue identically; rank 0 writes
        info = init_distributed(select_device(args.device))
        sharded = lambda archs: gather_shards(archs, info, evaluator)  # noqa: E731
        run_out = out
        if not info.is_main:  # a private copy: same state on resume, writes go nowhere shared
            run_out = Path(tempfile.mkdtemp(prefix=f"facenas-rank{info.rank}-"))
            if args.resume and out.is_dir():
                shutil.copytree(out, run_out, dirs_exist_ok=True)
        lock, refusal = hold_lock(out), None  # one writer per search folder: rank 0
        if info.is_main:
            try:
                lock.acquire()
            except LockError as err:
                refusal = str(err)
        refusal = gather_shards([refusal] * info.world_size, info, lambda mine: mine)[0]
        if refusal is not None:  # every rank stops (none waits for rank 0 forever)
            raise LockError(refusal)
        try:
            result = run_search(exp.space, sharded, table.predict_many, cfg, run_out,
                                input_size=det.input_size, baseline=exp.space.baseline,
                                resume=args.resume, overwrite=args.overwrite,
                                record={"supernet": str(supernet), "latency_table": str(table_path),
                                        "experiment": str(args.config)})
        finally:
            lock.release()
        if not info.is_main:
            return result
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError, LockError) as err:
        sys.exit(f"error: {err}")
    print(result.report())
    print(f"written to {out}: candidates.csv, pareto.csv, pareto.png, search.yaml")
    return result


if __name__ == "__main__":
    main()
