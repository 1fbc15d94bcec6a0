"""The one way facenas times a whole model: the table's calibration and validation subnets, a
retrained detector's measured latency and the ranking experiment all go through `time_models`.

    >>> time_models([onnx_bytes_a, onnx_bytes_b], lat)   # doctest: +SKIP
    [{'median_ms': 4.2, 'p90_ms': 4.6, 'cv': 0.03, 'round_cv': 0.01, 'rounds_ms': [...]}, ...]

All sessions are opened first, then timed in `lat.rounds` rounds, so a burst of load from other
processes hits every model a little instead of a contiguous band. With `lat.method` interleaved
this is the table's own statistic (`latency.robust.time_interleaved`: random order per round,
warmup and repeats split over the rounds, preempted time removed, drift corrected against the
reference workload, the `lat.quantile` of the runs), so a table entry, a calibration subnet and a
retrained model are comparable numbers; sequential: alternating order, full warmup + repeats per
round, median of round medians. Before this module the retrained model was timed by its own copy
of the sequential loop, which a changed `latency.method` silently left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from latency.config import LatencyConfig
from latency.device_bench import bind_session, make_session, time_session
from latency.parts import reference_onnx
from latency.robust import Runner, time_interleaved


def timing_mode(lat: LatencyConfig) -> str:
    """`latency.robust.Runner` mode: wall time minus preempted time where one thread makes that
    measurable, else the configured clock."""
    if lat.clock == "cpu":
        return "cpu"
    return "oncpu" if lat.threads == 1 else "wall"


def open_session(model: bytes | str | Path, lat: LatencyConfig) -> Runner:
    """A `Runner` on a fresh onnxruntime session of `model` (ONNX bytes or a file)."""
    return Runner(bind_session(make_session(model, lat.threads, lat.provider)), timing_mode(lat))


def time_models(models: Sequence[bytes | str | Path], lat: LatencyConfig,
                desc: str = "end to end", progress: bool = True) -> list[dict]:
    """Time each whole model end to end (module docstring). Per model: median_ms (the statistic,
    a quantile for the interleaved method), p90_ms, cv, round_cv (std / mean of the per-round
    figures) and rounds_ms."""
    if not models:
        return []
    models = [Path(m) if isinstance(m, str) else m for m in models]
    if lat.method == "interleaved":
        runners = [open_session(m, lat) for m in models]
        stats, _ = time_interleaved(runners, lat.rounds, lat.warmup, lat.repeats, lat.quantile,
                                    open_session(reference_onnx(), lat), seed=lat.seed, pin=lat.pin)
        return [{"median_ms": st["median_ms"], "p90_ms": st["p90_ms"], "cv": st["cv"],
                 "round_cv": st["pass_cv"], "rounds_ms": st["rounds_ms"]} for st in stats]
    sessions = [make_session(m, lat.threads, lat.provider) for m in models]
    timings: list[list[dict]] = [[] for _ in models]
    with tqdm(total=lat.rounds * len(models), desc=f"{desc}: timing", unit="run",
              disable=not progress) as bar:
        for r in range(lat.rounds):
            order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
            for i in order:
                timings[i].append(time_session(sessions[i], lat.warmup, lat.repeats, lat.passes,
                                               clock=lat.clock))
                bar.update()
    out = []
    for runs in timings:
        med = np.array([t["median_ms"] for t in runs])
        out.append({"median_ms": float(np.median(med)),
                    "p90_ms": float(np.median([t["p90_ms"] for t in runs])),
                    "cv": float(np.mean([t["cv"] for t in runs])),
                    "round_cv": float(med.std() / med.mean()), "rounds_ms": med.tolist()})
    return out
