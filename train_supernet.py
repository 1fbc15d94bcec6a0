"""Train the one-shot supernet as the backbone of a face detector.

    python train_supernet.py                                  # default: generated data, strict-fair
    python train_supernet.py --data /data/widerface --sampler uniform --out runs/spos
    python train_supernet.py --resume                         # continue runs/default

Writes runs/<name>/{config.yaml, supernet.pt, log.csv, evals.csv}; see detection/run.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "experiments" / "default.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment YAML")
    p.add_argument("--data", help="WIDER FACE root (official layout); default: the generated dataset")
    p.add_argument("--out", help="run folder (default runs/<experiment name>)")
    p.add_argument("--sampler", choices=["strict_fair", "uniform"], help="path sampling")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    from detection.engine import NonFiniteLoss
    from detection.run import RunDirError, train
    from supernet.experiment import Experiment
    from supernet.lock import LockError

    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.sampler:
        overrides.append(f"train.sampler={args.sampler}")
    try:
        exp = Experiment.from_yaml(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / exp.name
        summary = train(exp, out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    except (RunDirError, NonFiniteLoss, LockError, ValueError, TypeError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    if summary.get("skipped_images"):
        print(f"note: {summary['skipped_images']} unreadable training images were skipped "
              "(see the warnings above)")
    print(f"supernet written to {out / 'supernet.pt'} ({summary['steps']} steps)")
    return summary


if __name__ == "__main__":
    main()
