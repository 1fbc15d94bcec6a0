"""Latency configuration (the `latency:` section of an experiment YAML); defaults live here.

    latency:
      threads: 2        # onnxruntime intra-op threads (set explicitly: the table is per thread count)
      repeats: 50

    >>> exp = Experiment.from_yaml("experiments/default.yaml")   # doctest: +SKIP
    >>> cfg = exp.section("latency", LatencyConfig)              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyConfig:
    threads: int = 1  # onnxruntime intra_op_num_threads; 1 = no thread pool, least noise
    warmup: int = 10  # untimed runs per entry (first runs allocate and fill caches)
    repeats: int = 50  # timed runs per entry (split over the rounds): the table keeps a quantile
    passes: int = 1  # >1: re-time each entry this many times, pass_cv = run-to-run variation
    opset: int = 17
    provider: str = "CPUExecutionProvider"
    # "wall" = elapsed time. "cpu" = process CPU time: ignores time preempted by other processes,
    # for building a table on a shared busy machine; only meaningful with threads: 1
    clock: str = "wall"
    # "interleaved": entries timed in rounds, low quantile, preempted time removed, drift corrected
    # against a reference workload (latency.robust explains why). "sequential": the old method, one
    # entry at a time (warmup, then repeats), median; kept to compare against
    method: str = "interleaved"
    # time every entry after a depthwise 1x1 conv producing its inputs, minus that conv alone: the
    # entry as the network runs it (latency.keys says why, with figures); false: each alone, with
    # the layout-reorder correction (tables built before this setting)
    context: bool = True
    pin: bool = False  # interleaved: bind the timing process to one CPU while timing (Linux)
    quantile: float = 0.2  # interleaved: the table's figure is this quantile of an entry's runs
    max_noise: float = 0.02  # interleaved: warn when the reference workload's CV exceeds this
    flush_every: int = 20  # rewrite the CSV after this many new entries (a kill loses at most this)
    rounds: int = 5  # interleaved rounds over the entries (and over whole subnets; sequential: 3 is
    # plenty there); warmup and repeats are split over them
    calibration_archs: int = 20  # whole subnets measured end to end to fit the affine correction
    validation_archs: int = 30  # whole subnets for `latency.validate` (other seed, disjoint)
    pool_size: int = 2000  # archs sampled to pick calibration/validation subnets spread in latency
    seed: int = 0  # calibration subnets; validation uses seed + 1

    def __post_init__(self) -> None:
        for name in ("threads", "repeats", "passes", "rounds", "opset", "flush_every", "pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"latency.{name} must be >= 1, got {getattr(self, name)}")
        if self.clock not in ("wall", "cpu"):
            raise ValueError(f"latency.clock must be 'wall' or 'cpu', got {self.clock!r}")
        if self.clock == "cpu" and self.threads != 1:
            raise ValueError("latency.clock 'cpu' adds up the CPU time of all threads: "
                             f"use it with threads: 1, not {self.threads}")
        if self.method not in ("interleaved", "sequential"):
            raise ValueError(f"latency.method must be 'interleaved' or 'sequential', got {self.method!r}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"latency.quantile must be in (0, 1], got {self.quantile}")
        if not self.max_noise > 0:
            raise ValueError(f"latency.max_noise must be > 0, got {self.max_noise}")
        if self.warmup < 0:
            raise ValueError(f"latency.warmup must be >= 0, got {self.warmup}")
        if self.calibration_archs < 2:
            raise ValueError(f"latency.calibration_archs must be >= 2 (an affine fit), "
                             f"got {self.calibration_archs}")
