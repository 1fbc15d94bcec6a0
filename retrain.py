"""Retrain a searched arch stand-alone, then score it, export it to ONNX and time it.

    python retrain.py --arch "K3C32S2-DK3C16S1-E6K3C24S2-..."        # or --arch baseline
    python retrain.py --pareto runs/default/search/pareto.csv --pick best-under:12ms   # or --pick 3
    python retrain.py --pareto ... --pick 0 --init supernet            # start from inherited weights
    python retrain.py --arch baseline --data /data/widerface-val-mini --train-split val --epochs 2
    python retrain.py --pareto ... --pick 0 --resume

Writes to --out (default runs/<name>/retrain/<sha1(arch)[:8]>): model.pt, log.csv, evals.csv,
config.yaml (the training run), model.onnx, arch.txt and metrics.json (AP, ONNX check, measured vs
predicted latency, params, FLOPs); see detection/retrain.py. The config defaults to the one saved
with the search's (or --supernet's) run, else experiments/default.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "experiments" / "default.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    from detection import retrain as rt
    from detection.run import RunDirError
    from supernet.experiment import Experiment
    from supernet.lock import LockError

    try:
        if (args.pareto is None) != (args.pick is None):
            raise ValueError("--pick goes with --pareto (and --pareto needs --pick)")
        overrides = list(args.set)
        for value, key in ((args.epochs, "train.epochs"), (args.eval_images, "retrain.eval_images"),
                           (args.device, "train.device")):
            if value is not None:
                overrides.append(f"{key}={value}")
        data = rt.resolve_train_root(args.data, args.train_split)
        if data is not None:
            overrides.append(f"data.root={data}")
        run_dir = rt.find_run_dir(args.pareto, args.supernet)
        config = args.config or (run_dir / "config.yaml" if run_dir else DEFAULT_CONFIG)
        exp = Experiment.from_yaml(config, overrides)
        run_dir = run_dir or Path("runs") / exp.name
        one_shot = None
        if args.pareto:
            pareto = rt.read_pareto(args.pareto)
            search_dir = Path(args.pareto).parent
            key = rt.search_ap_key(search_dir, pareto)
            row = rt.pick_from_pareto(pareto, args.pick, key, rt.baseline_one_shot(search_dir, key))
            arch, one_shot = exp.space.parse(row["arch"]), json.loads(row.to_json())
        else:
            arch = exp.space.baseline if args.arch == "baseline" else exp.space.parse(args.arch)
        supernet = Path(args.supernet or run_dir / "supernet.pt") if args.init == "supernet" else None
        init = rt.load_supernet(supernet, exp) if supernet else None
        table = rt.open_table(Path(args.latency_table or run_dir / "latency.csv"), exp,
                              required=args.latency_table is not None)
        out = Path(args.out or run_dir / "retrain" / rt.arch_hash(arch))
        print(f"retraining {arch}\n  config {config}\n  out {out}")
        metrics = rt.retrain(exp, arch, out, init=init, init_source=supernet and f"supernet:{supernet}",
                             table=table, one_shot=one_shot, resume=args.resume,
                             overwrite=args.overwrite, progress=not args.no_progress,
                             extra={"train_split": args.train_split, "config": str(config)})
    except (RunDirError, LockError, ValueError, TypeError, FileNotFoundError, KeyError) as err:
        sys.exit(f"error: {err}")
    print(rt.summary_text(metrics) + f"\nwritten to {out}/metrics.json")
    return metrics


if __name__ == "__main__":
    main()
