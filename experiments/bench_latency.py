"""Build, calibrate and validate a latency table in one go, and print every figure worth reporting.

    python experiments/bench_latency.py --config experiments/default.yaml --out-dir runs/lut_t1
    python experiments/bench_latency.py --config experiments/default.yaml --out-dir runs/lut_t2 \\
        --set latency.threads=2

Run it on a quiet machine: other processes inflate wall-clock timings (on a shared box add
``--set latency.clock=cpu``, threads 1 only). Prints one JSON summary: table build time, entry
count, CV, predict_many speed, smallest/largest end to end vs --budget-ms, validation MAPE/tau.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from detection.config import DetectorConfig
from latency import measure, validate
from latency.config import LatencyConfig
from latency.table import LatencyTable, read_meta
from supernet.experiment import Experiment


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="experiments/default.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--force", action="store_true", help="re-measure the table from scratch")
    p.add_argument("--budget-ms", type=float, default=12.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = Path(args.out_dir)
    table_path = str(out / "table.csv")
    sets = [x for s in args.set for x in ("--set", s)]
    start = time.perf_counter()
    measure.main(["--config", args.config, "--out", table_path, *sets, "--calibrate"]
                 + (["--force"] if args.force else []))
    wall = time.perf_counter() - start
    validate.main(["--table", table_path])
    exp = Experiment.from_yaml(args.config, args.set)
    det = exp.section("detector", DetectorConfig)
    lat = exp.section("latency", LatencyConfig)
    table = LatencyTable.load(table_path, exp.space, det)
    rng = np.random.default_rng(0)
    archs = [exp.space.sample(rng) for _ in range(10_000)]
    t0 = time.perf_counter()
    table.predict_many(archs)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    table.predict_many(archs)
    cached = time.perf_counter() - t0
    meta = read_meta(table_path)
    report = json.loads(Path(f"{table_path}.validation.json").read_text())
    small, large = report["smallest"]["measured_ms"], report["largest"]["measured_ms"]
    summary = {
        "config": args.config, "set": args.set, "device": meta["device"],
        "settings": meta["settings"], "input_size": meta["input_size"],
        "entries": meta["n_entries"], "blocks": int((table.frame.kind == "block").sum()),
        "table_build_s": meta["build_seconds"], "measure_and_calibrate_s": round(wall, 1),
        "cv": meta["cv"], "calibration": {k: meta["calibration"][k] for k in ("a", "b", "n",
                                                                           "fit_mape")},
        "predict_many_10k_s": {"first": round(first, 3), "cached": round(cached, 4)},
        "smallest_ms": small, "largest_ms": large, "budget_ms": args.budget_ms,
        "budget_is_a_constraint": small < args.budget_ms < large,
        "validation": {"n": report["n"], "raw": report["raw"], "calibrated": report["calibrated"]},
        "threads": lat.threads,
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
