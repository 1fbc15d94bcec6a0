"""Timing that holds on a busy machine: interleaved rounds, a low quantile, preemption and drift.

    >>> runners = [Runner(bind_session(s)) for s in sessions]                   # doctest: +SKIP
    >>> stats, noise = time_interleaved(runners, rounds=5, warmup=10, repeats=50,
    ...                                 quantile=0.2, reference=Runner(bind_session(ref)))
    >>> stats[0]["median_ms"], noise["reference_cv"]                           # doctest: +SKIP

Why each part (the old method timed one entry at a time, 10 warm-up + 50 runs, and kept the median;
with busy processes beside it the table's calibrated MAPE went from 2.98% to 32%):

* **Interleaved rounds.** All entries of a group (``latency.flush_every`` of them) are timed in
  ``latency.rounds`` rounds, each visiting every entry in a fresh random order for ``repeats /
  rounds`` runs. A burst of load lasting a second used to inflate a contiguous band of entries (one
  stage, one width); now it costs each entry of the group a fraction of its runs. Groups keep the
  resume guarantee (a kill loses at most one group) and bound memory (sessions live per group).
* **Preempted time removed** (``clock: wall``, ``threads: 1``). Each run also reads the thread's CPU
  time; when the wall time exceeds it by more than ``SLACK_MS`` the thread was off the CPU (another
  process ran), and the run counts as CPU time + ``SLACK_MS``. With one onnxruntime thread the work
  runs on the calling thread, so this is the run's time minus the time it waited for a core.
  ``clock: cpu`` (process CPU time for every run) stays an option. With threads > 1 the caller's
  CPU time says nothing about the pool, so only the quantile and the reference guard those runs.
* **A low quantile** (``latency.quantile``, 0.2) instead of the median: interference only ever adds
  time, so the low end of the distribution is the part the load leaves alone. The table's
  ``median_ms`` column holds this statistic (the name is kept for compatibility; the sidecar's
  ``settings.quantile`` says which).
* **A reference workload** (a fixed 3x3 conv) is re-timed at the start of every round. Its spread
  over the build is the table's own noise estimate (``noise.reference_cv`` in the sidecar, printed,
  with a warning above ``latency.max_noise``), and a round where it runs slower or faster than the
  build's baseline by more than ``DEADBAND`` (frequency scaling, throttling, a co-runner thrashing
  the caches) has its entries' runs scaled back by the same ratio. Calibration and validation time
  whole subnets with the same code and the table's baseline, so all three share one scale.
* **Thread pinning is an option, off** (``latency.pin``, `pinned`: the timing thread bound to the last
  CPU it may use while timing; Linux). Measured here (50 whole detectors timed twice per setting,
  alternating, 2026-12-05; MAPE of one timing against the other): tiny 0.51-0.70% unpinned,
  0.67-0.85% pinned; default 1.04% (max 3.4%) unpinned, 2.85% (max 5.7%) pinned. No gain on this
  VM (with as many busy processes as cores it can only forbid moving to the core that frees up
  first). It is there for devices
  whose cores differ (big.LITTLE phones: the last CPU is usually a big one).

Measured (`experiments/bench_latency.py`, this 2-core EPYC VM, 1 thread, 20 calibration + 30
validation subnets): in an earlier session (2026-12-05, one other process on one core), before
tables were timed in context (`latency.keys`), default
config at 320x320, old method calibrated MAPE 5.16% (max 15.9%, 67% within +-5%), this one 1.04%
(max 5.6%, 97% within +-5%, Kendall 1.00), reference CV 0.20%. Later that day, with a noisier host
(reference CV 2-4% with nothing else running) and entries in context: default 1.53% quiet, 3.04%
with a spinner per core (old method: 2.55%, 14.3%); tiny (subnets of 0.04-0.3 ms) 0.99% and 0.81%
(old 3.18%, 1.99%). The README's latency section has the whole table and an earlier run.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator, Sequence

import numpy as np

SLACK_MS = 0.02  # wall - CPU time a run may show without having been preempted (clock reads, IRQs)
DEADBAND = 0.02  # reference within +-2% of its baseline: no drift correction (its own noise)


class Runner:
    """Times `run()` n times per call; returns per-run ms and counts preempted runs.

    mode "wall": elapsed time; "cpu": process CPU time; "oncpu": elapsed time with the time spent
    off the CPU (beyond SLACK_MS) removed, via the calling thread's CPU time (one-thread sessions).
    """

    def __init__(self, run: Callable[[], None], mode: str = "oncpu"):
        if mode not in ("wall", "cpu", "oncpu"):
            raise ValueError(f"unknown timing mode {mode!r} (wall, cpu or oncpu)")
        self.run, self.mode = run, mode
        self.runs = self.preempted = 0

    def __call__(self, n: int) -> np.ndarray:
        run, out = self.run, np.empty(n, dtype=np.float64)
        if self.mode == "oncpu":
            wall, cpu = time.perf_counter_ns, time.thread_time_ns
            for i in range(n):
                t0, c0 = wall(), cpu()
                run()
                c1, t1 = cpu(), wall()
                out[i] = (t1 - t0) / 1e6
                on_cpu = (c1 - c0) / 1e6 + SLACK_MS
                if out[i] > on_cpu:
                    out[i] = on_cpu
                    self.preempted += 1
        else:
            clock = time.perf_counter_ns if self.mode == "wall" else time.process_time_ns
            for i in range(n):
                t0 = clock()
                run()
                out[i] = (clock() - t0) / 1e6
        self.runs += n
        return out


@contextlib.contextmanager
def pinned(enabled: bool = True) -> Iterator[int | None]:
    """Run the block with the calling thread bound to one CPU (the last it may use), then restore
    its CPU set; yields that CPU, or None where the OS has no affinity call (macOS, Windows) or the
    process may use one CPU only. One-thread onnxruntime sessions run on the calling thread, so
    this keeps every timed run on one core and its caches (module docstring)."""
    allowed = os.sched_getaffinity(0) if enabled and hasattr(os, "sched_setaffinity") else set()
    if len(allowed) < 2:
        yield None
        return
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def drift_factors(reference_ms: Sequence[float], base_ms: float,
                  deadband: float = DEADBAND) -> np.ndarray:
    """Per-round slowdown reference / base; 1 where within +-deadband (the reference's own noise)."""
    ratio = np.asarray(reference_ms, dtype=np.float64) / base_ms
    return np.where(np.abs(ratio - 1) <= deadband, 1.0, ratio)


def time_interleaved(runners: Sequence[Callable[[int], np.ndarray] | None], rounds: int,
                     warmup: int, repeats: int, quantile: float = 0.2,
                     reference: Callable[[int], np.ndarray] | None = None, ref_repeats: int = 7,
                     base_ms: float | None = None, deadband: float = DEADBAND,
                     seed: int = 0, pin: bool = False) -> tuple[list[dict], dict]:
    """Time every runner in `rounds` rounds (fresh random order each), `ceil(repeats / rounds)`
    runs per round after `ceil(warmup / rounds)` untimed ones; a None runner times as 0.

    Each round first times `reference`; runs of a round whose reference quantile is off
    `base_ms` (default: the median over these rounds) by more than `deadband` are divided by that
    ratio. Returns per runner {median_ms: the `quantile` of its corrected runs, p90_ms, cv (std /
    mean of the runs), pass_cv (std / mean of the per-round quantiles), n}, and {reference_ms: per
    round, base_ms, factors}. `pin`: all of it on one CPU (`pinned`).
    """
    per_round, warm = -(-repeats // rounds), -(-warmup // rounds)
    rng = np.random.default_rng(seed)
    times: list[list[np.ndarray]] = [[] for _ in runners]
    ref_ms: list[float] = []
    live = [i for i, r in enumerate(runners) if r is not None]
    with pinned(pin):
        for _ in range(rounds):
            if reference is not None:
                reference(1)
                ref_ms.append(float(np.quantile(reference(ref_repeats), quantile)))
            for i in rng.permutation(live):
                if warm:
                    runners[i](warm)
                times[i].append(runners[i](per_round))
    if ref_ms:
        base = float(np.median(ref_ms)) if base_ms is None else float(base_ms)
        factors = drift_factors(ref_ms, base, deadband)
    else:
        base, factors = float("nan"), np.ones(rounds)
    stats = []
    for per in times:
        if not per:
            stats.append({"median_ms": 0.0, "p90_ms": 0.0, "cv": 0.0, "pass_cv": 0.0, "n": 0})
            continue
        corrected = [t / f for t, f in zip(per, factors)]
        runs = np.concatenate(corrected)
        q_round = np.array([np.quantile(t, quantile) for t in corrected])
        mean = float(runs.mean())
        stats.append({"median_ms": float(np.quantile(runs, quantile)),
                      "p90_ms": float(np.quantile(runs, 0.9)),
                      "cv": float(runs.std() / mean) if mean > 0 else 0.0,
                      "pass_cv": float(q_round.std() / q_round.mean()) if q_round.mean() > 0 else 0.0,
                      "n": int(runs.size), "rounds_ms": q_round.tolist()})
    return stats, {"reference_ms": ref_ms, "base_ms": base, "factors": factors.tolist()}


class InterleavedBuild:
    """A table build timed group by group (`time_interleaved`), as `latency.measure` does locally
    and `device_bench` on a device: keeps the reference baseline, rounds, runs, preemptions and
    per-call overheads across groups (and across a resume, from a saved `noise` record)."""

    def __init__(self, reference: Callable[[int], np.ndarray], empty: Callable[[int], np.ndarray],
                 rounds: int, warmup: int, repeats: int, quantile: float, noise: dict | None = None,
                 pin: bool = False):
        self.reference, self.empty, self.pin = reference, empty, pin
        self.rounds, self.warmup, self.repeats, self.quantile = rounds, warmup, repeats, quantile
        noise = noise or {}
        self.ref_rounds = list(noise.get("reference_rounds_ms", []))
        self.overheads = list(noise.get("overhead_groups_ms", []))
        self.base = noise.get("base_ms")
        self.runs, self.preempted = int(noise.get("runs", 0)), int(noise.get("preempted", 0))

    def time_group(self, runners: Sequence[Callable[[int], np.ndarray] | None], seed: int
                   ) -> list[dict]:
        """`time_interleaved` stats of `runners` (None times as 0) against this build's baseline."""
        stats, ref = time_interleaved(list(runners) + [self.empty], self.rounds, self.warmup,
                                      self.repeats, self.quantile, self.reference,
                                      base_ms=self.base, seed=seed, pin=self.pin)
        self.overheads.append(stats.pop()["median_ms"])
        self.base = ref["base_ms"] if self.base is None else self.base
        self.ref_rounds += ref["reference_ms"]
        live = [r for r in runners if r is not None]
        self.runs += sum(getattr(r, "runs", 0) for r in live)  # `Runner` counts; a plain callable not
        self.preempted += sum(getattr(r, "preempted", 0) for r in live)
        return stats

    @property
    def noise(self) -> dict:
        """The sidecar's / results' ``noise`` record (`noise_summary` + what a resume needs)."""
        return {**noise_summary(self.ref_rounds, self.runs, self.preempted), "base_ms": self.base,
                "preempted": self.preempted, "reference_rounds_ms": self.ref_rounds,
                "overhead_groups_ms": self.overheads}

    @property
    def overhead_ms(self) -> float:
        """onnxruntime's fixed cost per call (median over the groups, see `parts.empty_onnx`)."""
        return float(np.median(self.overheads)) if self.overheads else 0.0


def noise_summary(reference_ms: Sequence[float], runs: int = 0, preempted: int = 0) -> dict:
    """The build's own noise estimate: CV of the reference over all rounds, its range around the
    median (%), and the share of timed runs that were preempted (oncpu mode)."""
    ref = np.asarray(reference_ms, dtype=np.float64)
    out = {"rounds": int(ref.size), "runs": int(runs),
           "preempted_pct": 100.0 * preempted / runs if runs else 0.0}
    if ref.size:
        med = float(np.median(ref))
        out.update(reference_ms=med, reference_cv=float(ref.std() / ref.mean()),
                   drift_pct=[float(100 * (ref.min() / med - 1)), float(100 * (ref.max() / med - 1))])
    return out


def noise_warning(noise: dict, max_noise: float) -> str | None:
    """A warning when the reference workload varied more than `max_noise` (CV) over the build."""
    cv = noise.get("reference_cv")
    if cv is None or cv <= max_noise:
        return None
    return (f"warning: the machine was too busy for the requested accuracy: the reference workload "
            f"varied by CV {100 * cv:.1f}% over {noise['rounds']} rounds (latency.max_noise "
            f"{100 * max_noise:.1f}%; range {noise['drift_pct'][0]:+.1f}%..{noise['drift_pct'][1]:+.1f}%, "
            f"{noise['preempted_pct']:.1f}% of runs preempted); stop other programs and re-run "
            "with --force, or set latency.clock: cpu (threads 1)")
