"""Train the one-shot supernet as the backbone of a face detector.

    python train_supernet.py                                  # default: generated data, strict-fair
    python train_supernet.py --data /data/widerface --sampler uniform --out runs/spos
    python train_supernet.py --resume                         # continue runs/default

Writes runs/<name>/{config.yaml, supernet.pt, log.csv, evals.csv}; see stages/trainer.py.
"""

import sys

from stages.cli import main as facenas, run_command


def main(argv: list[str] | None = None):
    """`facenas train` (stages/cli.py): the same flags, the same result."""
    return run_command("train", argv)


if __name__ == "__main__":
    facenas(["train", *sys.argv[1:]])  # errors: one line; Ctrl-C: exit 130, resumable
