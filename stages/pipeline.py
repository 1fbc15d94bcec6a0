"""The whole facenas pipeline on one run; calling it again resumes where it stopped.

    >>> timings = pipeline(Run.create("experiments/tiny.yaml"), "5ms", retrain_epochs=1)  # doctest: +SKIP

1. train the supernet (`stages.trainer.train_supernet`)        -> runs/<name>/supernet.pt
2. measure, calibrate and validate the latency table (`stages.table.build_table`)
                                                                  -> runs/<name>/latency.csv
3. search under the budget (`stages.search.search`)             -> runs/<name>/search/
   confirm the front: the members that could be the pick and the baseline re-scored on more
   images, paired (`stages.pick.confirm`)                      -> runs/<name>/search/confirmed.csv
4. retrain the pick (default: the fastest front member whose one-shot AP is at least the
   baseline's) and the baseline, same budget (`stages.retrain.retrain`)
                                                                  -> runs/<name>/retrain/<arch hash>/
5. trust check: retrain a few more archs; does one-shot AP rank them as retraining does? And pick
   vs baseline with a paired bootstrap (`stages.trust.trust_check`)
                                                                  -> runs/<name>/retrain/{trust,comparison}.json
6. the report (`stages.report.report`)                          -> runs/<name>/search/report.html

Each stage's own resume is used: a finished stage is skipped, an interrupted one continues,
whenever it was killed (even before its first checkpoint).
"""

from __future__ import annotations

import time
from typing import Callable

from core.lock import hold_lock
from stages.pick import choose_pick, confirm
from stages.report import report
from stages.retrain import retrain
from stages.run import Run
from stages.search import search
from stages.table import build_table
from stages.trainer import train_supernet
from stages.trust import trust_check

VALIDATION_ARCHS = 8  # subnets timed end to end to validate the run's table (report section)


def _stage(name: str, fn: Callable[[], object], timings: dict) -> None:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    fn()
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"== {name}: {timings[name]} s", flush=True)


def pipeline(run: Run, budget: str = "12ms", *, retrain_epochs: int = 4,
             pick: str = "fastest-not-worse", trust_archs: int = 3, progress: bool = True) -> dict:
    """Every stage on `run` (module docstring); returns seconds per stage and their total."""
    timings: dict[str, float] = {}
    picked: dict = {}

    def retrain_pick_and_baseline() -> None:  # the same budget for both
        picked.update(choose_pick(run, pick, budget))
        print(f"pick ({picked['rule']}): {picked['arch']}", flush=True)
        for arch in (picked["arch"], "baseline"):
            retrain(run, arch, epochs=retrain_epochs, resume=True, progress=progress)

    with hold_lock(run.root):  # one pipeline per run folder (its stages take the same lock again)
        _stage("train supernet", lambda: train_supernet(run, resume=True, progress=progress), timings)
        _stage("latency table", lambda: build_table(run, validate=VALIDATION_ARCHS,
                                                     progress=progress), timings)
        # resume also reuses a candidates.csv written before the first checkpoint.json
        _stage("search", lambda: print(search(run, budget, resume=True).report()), timings)
        _stage("confirm front", lambda: confirm(run), timings)
        _stage("retrain pick and baseline", retrain_pick_and_baseline, timings)
        _stage("trust check", lambda: trust_check(run, picked, trust_archs, retrain_epochs,
                                                  progress), timings)
        _stage("report", lambda: print(f"report written to {report(run)}"), timings)
    timings["total"] = round(sum(timings.values()), 1)
    return timings
