"""Retrain a searched arch stand-alone, then score it, export it to ONNX and time it.

    python retrain.py --arch "K3C32S2-DK3C16S1-E6K3C24S2-..."        # or --arch baseline
    python retrain.py --pareto runs/default/search/pareto.csv --pick best-under:12ms   # or --pick 3
    python retrain.py --pareto ... --pick 0 --init supernet            # start from inherited weights
    python retrain.py --arch baseline --data /data/widerface-val-mini --train-split val --epochs 2
    python retrain.py --pareto ... --pick 0 --resume

Writes to --out (default runs/<name>/retrain/<sha1(arch)[:8]>): model.pt, log.csv, evals.csv,
config.yaml (the training run), model.onnx, arch.txt and metrics.json (AP, ONNX check, measured vs
predicted latency, params, MACs); see stages/retrain.py. The config defaults to the one saved
with the search's (or --supernet's) run, else experiments/default.yaml.
"""

import sys

from stages.cli import main as facenas, run_command


def main(argv: list[str] | None = None):
    """`facenas retrain` (stages/cli.py): the same flags, the same result."""
    return run_command("retrain", argv)


if __name__ == "__main__":
    facenas(["retrain", *sys.argv[1:]])  # errors: one line; Ctrl-C: exit 130, resumable
