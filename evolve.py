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

import sys

from stages.cli import main as facenas, run_command


def main(argv: list[str] | None = None):
    """`facenas search` (stages/cli.py): the same flags, the same result."""
    return run_command("search", argv)


if __name__ == "__main__":
    facenas(["search", *sys.argv[1:]])  # errors: one line; Ctrl-C: exit 130, resumable
