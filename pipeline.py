"""The whole facenas pipeline on one experiment; re-running resumes where it stopped.

    python pipeline.py                                   # default experiment, generated data, 12 ms
    python pipeline.py --latency-budget 6ms --data /data/widerface --retrain-epochs 20

1. train the supernet (train_supernet.py)       -> runs/<name>/supernet.pt
2. measure + calibrate the latency table         -> runs/<name>/latency.csv
3. search under the budget (evolve.py)           -> runs/<name>/search/
4. retrain the best subnet under the budget      -> runs/<name>/retrain/<arch hash>/
5. write the report (report.py)                  -> runs/<name>/search/report.html

Each stage's own resume is used: a finished stage is skipped, an interrupted one continues.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "experiments" / "default.yaml"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--latency-budget", default="12ms")
    p.add_argument("--data", help="WIDER FACE root (default: the generated dataset)")
    p.add_argument("--retrain-epochs", type=int, default=2, help="brief retraining of the pick")
    return p


def _stage(name: str, fn, timings: dict) -> None:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    fn()
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"== {name}: {timings[name]} s", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    import evolve
    import report
    import retrain
    import train_supernet
    from latency.measure import main as measure
    from latency.table import read_meta
    from supernet.experiment import Experiment

    exp = Experiment.from_yaml(args.config)
    run = Path("runs") / exp.name
    data = ["--data", args.data] if args.data else []
    common = ["--config", args.config, *data]
    table = run / "latency.csv"
    search = run / "search"
    timings: dict[str, float] = {}

    def train() -> None:
        done = (run / "supernet.pt").exists()
        train_supernet.main([*common, "--out", str(run), *(["--resume"] if done else [])])

    def latency() -> None:
        measure(["--config", args.config, "--out", str(table)])  # resumes measured entries
        if not read_meta(table).get("calibration", {}).get("fitted"):
            from latency.calibrate import main as calibrate

            calibrate(["--table", str(table), "--config", args.config])

    def search_() -> None:
        resume = (search / "checkpoint.json").exists()
        evolve.main([*common, "--latency-budget", args.latency_budget, "--out", str(search),
                     *(["--resume"] if resume else [])])

    def retrain_() -> None:
        retrain.main(["--pareto", str(search / "pareto.csv"), "--pick",
                      f"best-under:{args.latency_budget}", "--epochs", str(args.retrain_epochs),
                      "--config", args.config, *data, "--resume"])

    _stage("train supernet", train, timings)
    _stage("latency table", latency, timings)
    _stage("search", search_, timings)
    _stage("retrain", retrain_, timings)
    _stage("report", lambda: report.main([str(search)]), timings)
    timings["total"] = round(sum(timings.values()), 1)
    print(json.dumps({"seconds": timings, "report": str(search / "report.html")}, indent=1))
    return timings


if __name__ == "__main__":
    main()
