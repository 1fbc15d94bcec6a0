"""How well one score ranks items like another: rank correlations with bootstrap intervals.

Arrays in, dicts out; numpy and scipy only, so any stage can use it (the ranking experiment, a
trust check of a supernet before a search). "Truth" is the reference score (e.g. stand-alone AP),
"score" a ranker's prediction (e.g. one-shot AP); higher is better for both.

    >>> truth = np.array([0.1, 0.4, 0.3, 0.8, 0.6])
    >>> r = rank_agreement(truth, truth + 0.05 * np.arange(5), n_boot=200)
    >>> r["tau"], r["tau_lo"] <= r["tau"] <= r["tau_hi"]
    (1.0, True)
    >>> budget_regret(truth, -truth, cost=np.arange(5.0), budget=3.0)["top1"]  # picks the worst
    0.7000000000000001

* `rank_agreement`: Kendall tau-b (ties in either array handled as scipy's default) and Spearman
  rho, each with a percentile bootstrap interval over items (resample indices with replacement);
  resamples where either array is constant have no correlation and are skipped.
* `paired_tau_difference`: tau(truth, a) - tau(truth, b) on the *same* resamples, so the shared
  noise of the truth cancels; ``share_le_0`` is the fraction of resamples where a is not better
  (a one-sided bootstrap p-value for "a ranks better than b").
* `noise_ceiling`: the agreement of two repeated measurements of the truth (two training seeds);
  no ranker can be expected to agree with one seed better than the other seed does.
* `budget_regret`: what trusting the ranker costs when picking under a cost budget.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

_CHUNK = 256  # resamples per vectorised batch: (chunk, n, n) sign arrays stay small


def _as_arrays(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    if len({a.size for a in out}) != 1:
        raise ValueError(f"arrays of different lengths: {[a.size for a in out]}")
    return out


def kendall_tau_b(x, y) -> float:
    """Kendall tau-b of two 1-D arrays (NaN when either is constant or has a non-finite value)."""
    x, y = _as_arrays(x, y)
    return float(_tau_b_rows(x[None], y[None])[0])


def spearman_rho(x, y) -> float:
    """Spearman rho (Pearson correlation of average ranks); NaN as for `kendall_tau_b`."""
    x, y = _as_arrays(x, y)
    return float(_rho_rows(x[None], y[None])[0])


def _tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Tau-b of each row pair of (B, n) arrays: sum of sign products over pairs divided by
    sqrt(untied-in-x pairs * untied-in-y pairs)."""
    out = np.full(x.shape[0], np.nan)
    for start in range(0, x.shape[0], _CHUNK):
        xs, ys = x[start:start + _CHUNK], y[start:start + _CHUNK]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])  # (b, n, n), each pair counted twice
        dy = np.sign(ys[:, :, None] - ys[:, None, :])
        s = (dx * dy).sum(axis=(1, 2))
        denom = np.sqrt(np.abs(dx).sum(axis=(1, 2)) * np.abs(dy).sum(axis=(1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + _CHUNK] = np.where(denom > 0, s / denom, np.nan)
    finite = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    return np.where(finite, out, np.nan)


def _rho_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom > 0, (rx * ry).sum(axis=1) / denom, np.nan)
    finite = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    return np.where(finite, rho, np.nan)


def bootstrap_indices(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) item indices drawn with replacement; the same seed gives the same resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), 0
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi), int(values.size)


def rank_agreement(truth, score, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Kendall tau-b and Spearman rho of `score` against `truth`, with bootstrap intervals.

    Returns n, tau, tau_lo, tau_hi, rho, rho_lo, rho_hi, n_boot (resamples used: degenerate ones
    are skipped). All NaN when an array has a non-finite value or fewer than 2 items.
    """
    truth, score = _as_arrays(truth, score)
    out = {"n": int(truth.size), "tau": kendall_tau_b(truth, score), "rho": spearman_rho(truth, score)}
    if truth.size < 2 or not np.isfinite(out["tau"]):
        return {**out, "tau_lo": float("nan"), "tau_hi": float("nan"), "rho_lo": float("nan"),
                "rho_hi": float("nan"), "n_boot": 0}
    idx = bootstrap_indices(truth.size, n_boot, seed)
    out["tau_lo"], out["tau_hi"], used = _interval(_tau_b_rows(truth[idx], score[idx]), level)
    out["rho_lo"], out["rho_hi"], _ = _interval(_rho_rows(truth[idx], score[idx]), level)
    out["n_boot"] = used
    return out


def paired_tau_difference(truth, score_a, score_b, *, n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """tau(truth, a) - tau(truth, b) on the same resamples: diff, lo, hi, share_le_0, n_boot.

    ``share_le_0``: fraction of usable resamples where a does not beat b (small = a is better).
    """
    truth, a, b = _as_arrays(truth, score_a, score_b)
    diff = kendall_tau_b(truth, a) - kendall_tau_b(truth, b)
    if truth.size < 2 or not np.isfinite(diff):
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"),
                "share_le_0": float("nan"), "n_boot": 0}
    idx = bootstrap_indices(truth.size, n_boot, seed)
    d = _tau_b_rows(truth[idx], a[idx]) - _tau_b_rows(truth[idx], b[idx])
    lo, hi, used = _interval(d, level)
    d = d[np.isfinite(d)]
    share = float(np.mean(d <= 0)) if d.size else float("nan")
    return {"diff": float(diff), "lo": lo, "hi": hi, "share_le_0": share, "n_boot": used}


def noise_ceiling(run_a, run_b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Agreement between two repeated measurements of the truth (`rank_agreement` of one vs the
    other): the tau a ranker can hope to reach against a single measurement."""
    return rank_agreement(run_a, run_b, n_boot=n_boot, seed=seed, level=level)


def budget_regret(truth, score, cost, budget: float, tops: tuple[int, ...] = (1, 3)) -> dict:
    """Truth lost by picking with `score` among items with cost <= `budget`.

    For each t in `tops`: ``top<t>`` = best truth under budget - best truth among the t items the
    score ranks highest under budget (ties in score keep item order). Also n_feasible and budget.
    NaN when nothing is under budget or an array has a non-finite value.
    """
    truth, score, cost = _as_arrays(truth, score, cost)
    feasible = np.flatnonzero(cost <= budget)
    out = {"budget": float(budget), "n_feasible": int(feasible.size)}
    ok = feasible.size > 0 and np.isfinite(truth[feasible]).all() and np.isfinite(score[feasible]).all()
    order = feasible[np.argsort(-score[feasible], kind="stable")] if ok else feasible
    for t in tops:
        out[f"top{t}"] = float(truth[feasible].max() - truth[order[:t]].max()) if ok else float("nan")
    return out
