"""Analytic stand-ins for a trained supernet: problems whose Pareto front is known exactly.

`AnalyticProblem` is a plain categorical problem (no space): each variable i with choice v adds
``w_i * v`` to a "capacity" s and ``c_i * v ** 1.5`` ms to the latency; AP = 1 - exp(-s / scale)
has diminishing returns. Small instances (``[3] * 6`` = 729 vectors) are enumerated exactly, so a
search can be scored against the true front's hypervolume.

    >>> problem = AnalyticProblem([3] * 6)
    >>> F, G, _ = problem(problem.enumerate())
    >>> F.shape, G.shape
    ((729, 2), (729, 1))

`fake_arch_evaluator(space)` gives the arch-level pair the search expects from the real pipeline,
``evaluate(archs) -> list[dict]`` (``ap``, ``ap_easy``, ``ap_medium``, ``ap_hard``) and
``latency(archs) -> ms``, computed from MACs, params, kernels and SE (deterministic, instant).
"""

from __future__ import annotations

import itertools

import numpy as np

from evolution.pareto import feasible_front, hypervolume


class AnalyticProblem:
    """Objective function ``X -> (F = [-AP, latency ms], G = latency - budget, records)``."""

    def __init__(self, choices, seed: int = 0, budget_fraction: float = 0.5):
        self.choices = np.asarray(choices, dtype=np.int64)
        rng = np.random.default_rng(seed)
        n = len(self.choices)
        self.weights = rng.uniform(0.2, 1.0, n)  # AP capacity per choice step
        self.costs = rng.uniform(0.2, 1.0, n)  # ms per choice step (convex: v ** 1.5)
        top = self.choices - 1
        self.scale = float(self.weights @ top) / 2
        self.fastest_ms = 1.0
        self.slowest_ms = 1.0 + float(self.costs @ top ** 1.5)
        self.budget_ms = self.fastest_ms + budget_fraction * (self.slowest_ms - self.fastest_ms)
        self.n_calls = 0  # vectors evaluated (tests count cache misses)

    def metrics(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(X).astype(float)
        ap = 1.0 - np.exp(-(X @ self.weights) / self.scale)
        return ap, 1.0 + X ** 1.5 @ self.costs

    def __call__(self, X: np.ndarray):
        ap, latency = self.metrics(X)
        self.n_calls += len(ap)
        records = [{"ap": float(a), "latency_ms": float(t)} for a, t in zip(ap, latency)]
        return np.c_[-ap, latency], (latency - self.budget_ms)[:, None], records

    @property
    def hv_reference(self) -> tuple[float, float]:
        return (0.0, self.budget_ms)

    def enumerate(self) -> np.ndarray:
        """Every vector of the space (only for small spaces)."""
        return np.array(list(itertools.product(*[range(c) for c in self.choices])), dtype=np.int64)

    def true_front(self) -> tuple[np.ndarray, float]:
        """(F of the exact feasible Pareto front, its hypervolume w.r.t. `hv_reference`)."""
        F, G, _ = self(self.enumerate())
        self.n_calls -= len(F)
        front = F[feasible_front(F, G)]
        return front, hypervolume(front, self.hv_reference)


def fake_arch_evaluator(space, input_size: tuple[int, int] = (64, 64)):
    """(evaluate, latency) callables for `space` standing in for the supernet and latency table."""
    ref_macs = space.macs(space.baseline, input_size)

    def evaluate(archs) -> list[dict]:
        out = []
        for arch in archs:
            macs = space.macs(arch, input_size) / ref_macs
            bonus = sum(0.01 * (b.kernel - 3) / 2 + 0.02 * (b.se > 0) for b in arch.blocks[1:])
            ap = float(np.clip(0.6 * (1 - np.exp(-1.5 * macs)) + 0.15 + bonus, 0.0, 1.0))
            out.append({"ap": ap, "ap_easy": ap ** 0.5, "ap_medium": ap ** 0.8, "ap_hard": ap ** 1.6})
        return out

    def latency(archs) -> np.ndarray:
        # memory-bound toy device: MACs, plus a fixed cost per block and per SE (pool + 2 FCs)
        return np.array([2.0 * space.macs(a, input_size) / ref_macs + 0.1 * len(a)
                         + 0.15 * sum(b.se > 0 for b in a.blocks) for a in archs])

    return evaluate, latency
