"""Fit the table's affine correction on whole subnets timed end to end.

    facenas latency calibrate --table runs/lut.csv --n 20        # config read from the sidecar
    facenas latency calibrate --table runs/lut.csv --config experiments/default.yaml --n 20

The sum of isolated block timings misses cache effects between blocks (measured here: whole
networks run ~10% slower than their summed blocks, whose weights stay cached when timed alone);
timing K whole detectors (`detection.model.build_detector`: backbone + laterals + head, one ONNX
model each) and fitting measured ~ a * raw + b (least squares on relative error) corrects most of it.
The K subnets are spread over the space's latency range (`spread_archs`), excluding the smallest
and largest archs, which `latency.validate` always checks; a, b and the data go in the sidecar.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from detection.config import DetectorConfig
from latency.config import LatencyConfig
from detection.model import build_detector
from latency.device_bench import device_info
from latency.export import onnx_bytes
from latency.table import (LatencyTable, calibration_record, experiment_of, read_meta,  # noqa: F401
                           write_meta)
from latency.timing import time_models
from core.experiment import Experiment
from core.lock import LockError, hold_file_lock
from core.space import Arch, SearchSpace


def sample_pool(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Arch]:
    """`n` archs covering the range smallest..largest, not just the random middle.

    Each arch picks t ~ U(0, 1) and takes every variable from `largest` with probability t, else
    from `smallest`; then a random fraction (up to half) of the variables is re-drawn uniformly.
    Plus uniform samples (every third arch).
    """
    lo, hi = space.encode(space.smallest()), space.encode(space.largest())
    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append(space.sample(rng))
            continue
        x = np.where(rng.random(space.n_var) < rng.random(), hi, lo)
        redraw = rng.random(space.n_var) < rng.uniform(0, 0.5)
        x[redraw] = rng.integers(0, space.choices)[redraw]
        out.append(space.decode(x))
    return out


def spread_archs(space: SearchSpace, score: Callable[[Sequence[Arch]], np.ndarray], n: int,
                 seed: int, pool_size: int = 2000, exclude: Sequence[Arch] = (),
                 extremes: bool = False) -> list[Arch]:
    """`n` distinct archs whose scores (e.g. raw latency) are evenly spaced over the space's range.

    `extremes`: include `smallest()` and `largest()` (then n - 2 in between); otherwise both are
    excluded. Archs in `exclude` are never picked.
    """
    small, large = space.smallest(), space.largest()
    banned = set(exclude) | {small, large}
    pool = list(dict.fromkeys(a for a in sample_pool(space, pool_size, np.random.default_rng(seed))
                              if a not in banned))
    scores = np.asarray(score(pool), dtype=float)
    lo_hi = np.asarray(score([small, large]), dtype=float)
    k = n - 2 if extremes else n
    if k > len(pool):
        raise ValueError(f"asked for {n} archs but the pool has only {len(pool)} candidates")
    targets = np.linspace(lo_hi[0], lo_hi[1], k + 2)[1:-1]
    free, picked = np.ones(len(pool), dtype=bool), []
    for t in targets:
        i = int(np.argmin(np.where(free, np.abs(scores - t), np.inf)))
        free[i] = False
        picked.append(pool[i])
    return [small, *picked, large] if extremes else picked


def measure_archs(space: SearchSpace, archs: Sequence[Arch], det: DetectorConfig,
                  lat: LatencyConfig, desc: str = "end to end") -> list[dict]:
    """Time the whole detector of each arch end to end (random weights): the network
    `detection.model.build_detector` deploys, exported by `latency.export.onnx_bytes` and timed by
    `latency.timing.time_models` (per arch: median_ms, p90_ms, cv, round_cv, rounds_ms)."""
    models = [onnx_bytes(build_detector(space, a, det), ((1, 3, *det.input_size),), lat.opset)
              for a in tqdm(archs, desc=f"{desc}: export", unit="subnet")]
    return time_models(models, lat, desc)


def check_same_device(meta: dict, lat: LatencyConfig, table_path: str | Path) -> None:
    """End-to-end timings here only make sense for a table timed here with the same settings."""
    here = device_info(lat.threads, lat.provider)
    for key in ("cpu", "threads", "provider"):
        if meta.get("device", {}).get(key) != here[key]:
            raise SystemExit(f"{table_path} was measured with {key} "
                             f"{meta.get('device', {}).get(key)!r}, this run has {here[key]!r}: "
                             "time subnets where (and how) the table was measured, e.g. with "
                             "latency.bundle --subnets")


def calibrate_table(table_path: str | Path, exp: Experiment, lat: LatencyConfig,
                    det: DetectorConfig, n: int) -> dict:
    """Measure `n` spread subnets, fit a, b, store them in the sidecar; returns the record."""
    table = LatencyTable.load(table_path, exp.space, det)
    check_same_device(table.meta, lat, table_path)
    archs = spread_archs(exp.space, table.raw_many, n, lat.seed, lat.pool_size)
    timings = measure_archs(exp.space, archs, det, lat, desc="calibration")
    record = calibration_record([str(a) for a in archs], table.raw_many(archs).tolist(),
                                [t["median_ms"] for t in timings])
    record["seed"] = lat.seed
    meta = read_meta(table_path)
    meta["calibration"] = record
    write_meta(table_path, meta)
    print(f"calibration on {n} subnets: measured = {record['a']:.4f} * raw + {record['b']:.4f} ms "
          f"(fit MAPE {record['fit_mape']:.2f}%) -> {table_path}.json")
    return record


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="table CSV from latency.measure")
    p.add_argument("--config", help="experiment YAML (default: the one recorded in the sidecar)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--n", type=int, default=None, help="subnets (default latency.calibration_archs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    exp = experiment_of(args.table, args.config, args.set)
    lat = exp.section("latency", LatencyConfig)
    det = exp.section("detector", DetectorConfig)
    try:
        with hold_file_lock(args.table):  # the sidecar's one writer
            record = calibrate_table(args.table, exp, lat, det, args.n or lat.calibration_archs)
    except LockError as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({k: record[k] for k in ("a", "b", "n", "fit_mape")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
