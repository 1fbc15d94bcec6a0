"""The whole facenas pipeline on one experiment; re-running resumes where it stopped.

    python pipeline.py                                   # default experiment, generated data, 12 ms
    python pipeline.py --latency-budget 6ms --data /data/widerface --retrain-epochs 20

1. train the supernet (train_supernet.py)       -> runs/<name>/supernet.pt
2. measure, calibrate, validate the latency table -> runs/<name>/latency.csv
3. search under the budget (evolve.py)           -> runs/<name>/search/
   confirm the front: the members that could be the pick and the baseline re-scored on more
   images, paired (stages.pick.confirm)         -> runs/<name>/search/confirmed.csv
4. retrain the pick (default: the fastest front member whose one-shot AP is at least the
   baseline's) and the baseline, same budget      -> runs/<name>/retrain/<arch hash>/
5. trust check: retrain a few more archs; does one-shot AP rank them as retraining does?
   pick vs baseline with a paired bootstrap      -> runs/<name>/retrain/{trust,comparison}.json
6. write the report (report.py)                  -> runs/<name>/search/report.html

Each stage's own resume is used: a finished stage is skipped, an interrupted one continues,
whenever it was killed (even before its first checkpoint). Ctrl-C stops with one line.
The stages are the functions of stages/pipeline.py; this is `facenas pipeline`.
"""

import sys

from stages.cli import main as facenas, run_command


def main(argv: list[str] | None = None):
    """`facenas pipeline` (stages/cli.py): the same flags, the same result."""
    return run_command("pipeline", argv)


if __name__ == "__main__":
    facenas(["pipeline", *sys.argv[1:]])  # errors: one line; Ctrl-C: exit 130, resumable
