"""evolution.rank_stats (tau-b/rho with bootstrap intervals, paired differences, ceiling, regret)
and evolution.zero_cost.synflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from detection.config import DetectorConfig
from detection.model import build_detector
from evolution.rank_stats import (budget_regret, kendall_tau_b, noise_ceiling, paired_tau_difference,
                                  rank_agreement, spearman_rho)
from evolution.zero_cost import synflow
from core.experiment import Experiment

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


def _noisy(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n)
    return truth, truth + noise * rng.normal(size=n)


def test_tau_b_and_rho_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.integers(0, 4, 25).astype(float)  # many ties in both arrays
        y = x + rng.integers(0, 3, 25)
        assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert np.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))  # constant: undefined, not 0
    assert np.isnan(kendall_tau_b([1, np.nan, 3], [1, 2, 3]))


def test_perfect_ranker_has_tau_one_and_a_point_interval():
    truth = np.linspace(0.1, 0.9, 12)
    r = rank_agreement(truth, truth ** 3, n_boot=500)  # any increasing function ranks perfectly
    assert (r["tau"], r["tau_lo"], r["tau_hi"]) == (1.0, 1.0, 1.0)
    assert (r["rho"], r["rho_lo"], r["rho_hi"]) == pytest.approx((1.0, 1.0, 1.0))
    assert 0 < r["n_boot"] <= 500


def test_interval_contains_estimate_and_narrows_with_more_archs():
    truth, score = _noisy(80, 1.0, seed=0)
    small = rank_agreement(truth[:10], score[:10], n_boot=1000, seed=1)
    large = rank_agreement(truth, score, n_boot=1000, seed=1)
    for r in (small, large):
        assert r["tau_lo"] <= r["tau"] <= r["tau_hi"] and r["rho_lo"] <= r["rho"] <= r["rho_hi"]
    assert small["tau_hi"] - small["tau_lo"] > large["tau_hi"] - large["tau_lo"]
    assert rank_agreement(truth, score, n_boot=300, seed=5) == rank_agreement(truth, score, n_boot=300,
                                                                              seed=5)


def test_paired_difference():
    truth, score = _noisy(20, 0.5, seed=2)
    same = paired_tau_difference(truth, score, score, n_boot=300)
    assert (same["diff"], same["lo"], same["hi"], same["share_le_0"]) == (0.0, 0.0, 0.0, 1.0)
    better = paired_tau_difference(truth, truth, -truth, n_boot=300)  # perfect vs reversed
    assert better["diff"] == 2.0 and better["share_le_0"] == 0.0


def test_regret_on_a_hand_made_case():
    truth = np.array([0.50, 0.70, 0.60, 0.90, 0.20])
    latency = np.array([1.0, 2.0, 3.0, 9.0, 0.5])  # budget 3 ms: items 0, 1, 2, 4; best 0.70
    score = np.array([5.0, 1.0, 4.0, 99.0, 3.0])  # under budget it ranks 0, 2, 4, 1
    r = budget_regret(truth, score, latency, budget=3.0)
    assert r["n_feasible"] == 4
    assert r["top1"] == pytest.approx(0.70 - 0.50)
    assert r["top3"] == pytest.approx(0.70 - 0.60)
    assert budget_regret(truth, truth, latency, budget=3.0)["top1"] == 0.0
    assert np.isnan(budget_regret(truth, score, latency, budget=0.1)["top1"])  # nothing fits


def test_noise_ceiling_of_identical_seeds_is_one():
    run = np.array([0.3, 0.1, 0.5, 0.45, 0.2, 0.6])
    c = noise_ceiling(run, run.copy(), n_boot=200)
    assert c["tau"] == 1.0 and c["tau_lo"] == 1.0


def test_synflow_grows_with_the_arch_and_is_deterministic(tiny_space):
    det = Experiment.from_yaml(TINY).section("detector", DetectorConfig)
    scores = {}
    for name, arch in (("small", tiny_space.smallest()), ("large", tiny_space.largest())):
        values = []
        for _ in range(2):
            torch.manual_seed(0)
            model = build_detector(tiny_space, arch, det)
            before = {k: v.clone() for k, v in model.state_dict().items()}
            values.append(synflow(model, det.input_size))
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
        assert values[0] == values[1] and np.isfinite(values[0])
        scores[name] = values[0]
    assert scores["large"] > scores["small"] > 0
