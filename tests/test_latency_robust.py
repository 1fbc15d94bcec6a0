"""Robust timing (latency.robust, the interleaved table build) and the validation shares.

Fake runners and a synthetic drifting clock: no onnxruntime timing except one preemption check.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import latency.measure as measure_mod
from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, table_meta
from latency.robust import Runner, drift_factors, noise_summary, noise_warning, time_interleaved
from latency.table import read_meta
from latency.validate import metrics
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A synthetic machine: every run advances time by 1; `slowdown(t)` scales all work."""

    def __init__(self, slowdown=lambda t: 1.0):
        self.t, self.slowdown, self.log = 0, slowdown, []

    def runner(self, name, ms: float):
        def run(n: int) -> np.ndarray:
            self.log.append((name, n))
            out = np.array([ms * self.slowdown(self.t + i) for i in range(n)])
            self.t += n
            return out
        return run


def test_interleaved_rounds_cover_every_entry_in_every_round():
    clock = Clock()
    runners = [clock.runner(i, 1.0 + i) for i in range(7)] + [None]
    stats, ref = time_interleaved(runners, rounds=4, warmup=4, repeats=20, quantile=0.2,
                                  reference=clock.runner("ref", 0.5), ref_repeats=3)
    rounds, current = [], None
    for name, n in clock.log:
        if name == "ref":
            if n == 3:  # the timed reference call opens a round (after one warm-up call)
                current = []
                rounds.append(current)
        else:
            current.append((name, n))
    assert len(rounds) == 4
    for calls in rounds:  # each entry: one warm-up call (ceil(4/4) runs) then 5 timed runs
        assert [n for _, n in calls] == [1, 5] * 7
        assert sorted(name for name, _ in calls[::2]) == list(range(7))
    orders = {tuple(name for name, _ in calls[::2]) for calls in rounds}
    assert len(orders) > 1  # a fresh order each round, not one entry after the other
    assert [s["median_ms"] for s in stats[:7]] == pytest.approx([1.0 + i for i in range(7)])
    assert stats[7]["median_ms"] == 0.0 and all(s["n"] == 20 for s in stats[:7])
    assert ref["factors"] == [1.0] * 4


def test_drift_correction_with_a_synthetic_drifting_clock():
    # this group is timed while the machine runs 30% slower than when the build's reference
    # baseline was set (base_ms), and getting slower (throttling, a co-runner on the caches)
    def make(correct: bool):
        clock = Clock(slowdown=lambda t: 1.3 + 0.2 * t / 2000)
        runners = [clock.runner(i, 1.0 + 0.1 * i) for i in range(20)]
        ref = clock.runner("ref", 0.5) if correct else None
        return time_interleaved(runners, rounds=5, warmup=0, repeats=20, quantile=0.2,
                                reference=ref, ref_repeats=3, base_ms=0.5)

    truth = np.array([1.0 + 0.1 * i for i in range(20)])
    corrected, ref = make(True)
    plain, _ = make(False)
    err_corrected = np.abs(np.array([s["median_ms"] for s in corrected]) / truth - 1)
    err_plain = np.abs(np.array([s["median_ms"] for s in plain]) / truth - 1)
    assert err_plain.min() > 0.25  # without the reference the drift stays in the table
    assert err_corrected.max() < 0.02  # the reference re-timed each round takes it out
    assert 1.29 < ref["factors"][0] < ref["factors"][-1] < 1.51
    # within the deadband the reference's own noise is not applied
    assert list(drift_factors([0.5, 0.505, 0.495, 0.6], 0.5)) == [1.0, 1.0, 1.0, 1.2]


def test_noise_estimate_and_busy_warning():
    quiet = noise_summary([1.0, 1.01, 0.99, 1.0], runs=100, preempted=1)
    assert quiet["reference_cv"] < 0.01 and quiet["preempted_pct"] == 1.0
    assert noise_warning(quiet, 0.02) is None
    busy = noise_summary([1.0, 1.3, 0.9, 1.6, 1.0], runs=100, preempted=30)
    message = noise_warning(busy, 0.02)
    assert message and "too busy" in message and "latency.max_noise 2.0%" in message


def test_oncpu_runner_removes_time_spent_off_the_cpu():
    runner = Runner(lambda: time.sleep(0.003), mode="oncpu")  # sleeping = waiting for a core
    times = runner(3)
    assert runner.preempted == 3 and times.max() < 1.0  # not the 3 ms of wall time
    wall = Runner(lambda: time.sleep(0.003), mode="wall")(2)
    assert wall.min() >= 3.0


def test_interleaved_table_build_times_every_entry(monkeypatch, tmp_path):
    exp = Experiment.from_yaml(ROOT / "experiments/tiny.yaml")
    det = exp.section("detector", DetectorConfig)
    lat = LatencyConfig(warmup=2, repeats=6, rounds=3, flush_every=50)
    entries = build_entries(exp.space, det, lat.context)
    clock, opened = Clock(), []

    def fake_entry(entry, det, lat):
        opened.append(entry.key)
        return clock.runner(entry.key, 0.001 * (entry.c_in + entry.c_out))

    monkeypatch.setattr(measure_mod, "open_entry", fake_entry)
    monkeypatch.setattr(measure_mod, "open_session", lambda model, lat: clock.runner("ref", 0.004))
    out = tmp_path / "t.csv"
    frame = measure_table(entries, out, table_meta(exp, [], lat, det), det, lat, progress=False)
    assert opened == [e.key for e in entries] and list(frame.key) == opened
    timed = {name for name, _ in clock.log if name != "ref"}
    assert timed == set(opened)
    expected = np.array([0.001 * (e.c_in + e.c_out) for e in entries])
    assert np.allclose(frame.median_ms, expected)
    meta = read_meta(out)
    groups = -(-len(entries) // 50)
    assert meta["noise"]["rounds"] == 3 * groups
    assert meta["noise"]["reference_cv"] == pytest.approx(0.0, abs=1e-12)
    assert meta["settings"]["method"] == "interleaved" and meta["settings"]["quantile"] == 0.2
    assert meta["overhead_ms"] == pytest.approx(0.004)  # the empty model (fake: same runner)
    assert len(pd.read_csv(out)) == len(entries) and meta["complete"]


def test_validation_shares_within_5_and_10_percent():
    measured = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0])
    error_pct = np.array([1.0, -4.9, 5.0, 7.0, -12.0, 0.0, 9.9, 30.0])
    out = metrics(measured * (1 + error_pct / 100), measured)
    assert out["within_5_pct"] == pytest.approx(100 * 4 / 8)  # 1, 4.9, 5 (inclusive), 0
    assert out["within_10_pct"] == pytest.approx(100 * 6 / 8)  # + 7, 9.9
    assert out["mape_pct"] == pytest.approx(np.abs(error_pct).mean())


def test_pinned_binds_one_cpu_while_timing_and_restores(monkeypatch):
    import latency.robust as robust

    state = {"cpus": {0, 1, 2, 3}}
    calls = []
    monkeypatch.setattr(robust.os, "sched_getaffinity", lambda pid: set(state["cpus"]))

    def set_affinity(pid, cpus):
        calls.append(set(cpus))
        state["cpus"] = set(cpus)

    monkeypatch.setattr(robust.os, "sched_setaffinity", set_affinity)
    seen = []

    def runner(n):  # what the timed runs see
        seen.append(set(state["cpus"]))
        return np.ones(n)

    time_interleaved([runner, runner], rounds=2, warmup=0, repeats=4, pin=True)
    assert seen and all(s == {3} for s in seen)  # the last allowed CPU, for every run
    assert state["cpus"] == {0, 1, 2, 3} and calls == [{3}, {0, 1, 2, 3}]
    with pytest.raises(RuntimeError):  # restored on an error too
        with robust.pinned(True) as cpu:
            assert cpu == 3 and state["cpus"] == {3}
            raise RuntimeError("boom")
    assert state["cpus"] == {0, 1, 2, 3}
    calls.clear()
    time_interleaved([runner], rounds=2, warmup=0, repeats=4)  # pin off (the default)
    assert calls == []
    state["cpus"] = {5}
    with robust.pinned(True) as cpu:  # one CPU allowed: nothing to choose
        assert cpu is None
    assert calls == []
