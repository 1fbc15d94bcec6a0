"""The arch adapter: a `SearchSpace`, an AP evaluator and a latency predictor as an objective function.

The search core (`evolution.optimizer`) sees integer vectors; `ArchObjectives` decodes them and asks

* ``evaluate(archs: list[Arch]) -> list[dict]``, each dict with at least ``"ap"`` (any other keys,
  e.g. ``ap_easy/ap_medium/ap_hard``, are kept as CSV columns), and
* ``latency(archs: list[Arch]) -> np.ndarray`` of predicted milliseconds (the table's predict_many),

and returns, for config.objectives / config.algorithm (all minimised):

=================  ======================================  ===========================
objectives         F                                        G (with a budget)
=================  ======================================  ===========================
ap_latency         [-AP, latency_ms]                        [latency_ms - budget_ms]
ap_latency_params  [-AP, latency_ms, params]                same
ap_latency_macs   [-AP, latency_ms, macs]                 same
algorithm mnas     [-AP x (latency_ms / budget_ms) ** w]    none (a soft constraint)
=================  ======================================  ===========================

    >>> round(float(mnas_reward(0.5, 12.0, 10.0)), 6)   # 0.5 * 1.2 ** -0.07
    0.493659
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from evolution.config import SearchConfig
from core.space import Arch, SearchSpace

Evaluate = Callable[[Sequence[Arch]], list]
Latency = Callable[[Sequence[Arch]], np.ndarray]


def mnas_reward(ap, latency_ms, target_ms: float, alpha: float = -0.07, beta: float = -0.07):
    """MnasNet reward ACC x (LAT/T)^w with w = alpha if LAT <= T else beta."""
    ap, latency_ms = np.asarray(ap, dtype=float), np.asarray(latency_ms, dtype=float)
    w = np.where(latency_ms <= target_ms, alpha, beta)
    return ap * (latency_ms / target_ms) ** w


def resolve_ap_key(metric: str, record: dict) -> str:
    """Evaluator key used as AP: `metric` itself or ``ap_<metric>`` ("hard" -> "ap_hard")."""
    for key in (metric, f"ap_{metric}"):
        if key in record:
            return key
    raise KeyError(f"search.ap_metric {metric!r}: the evaluator returned neither {metric!r} nor "
                   f"'ap_{metric}' (keys: {', '.join(sorted(record))})")


class ArchObjectives:
    """``X -> (F, G, records)`` for the core; records hold every evaluator key + cost columns."""

    def __init__(self, space: SearchSpace, evaluate: Evaluate, latency: Latency,
                 config: SearchConfig, budget_ms: float | None, input_size: tuple[int, int]):
        if config.algorithm == "mnas" and budget_ms is None:
            raise ValueError("search.algorithm mnas needs a latency_budget (the reward's target T)")
        self.space, self.evaluate, self.latency = space, evaluate, latency
        self.config, self.budget_ms, self.input_size = config, budget_ms, tuple(input_size)
        self.ap_key: str | None = None  # resolved on the first evaluation

    @property
    def n_obj(self) -> int:
        return 1 if self.config.algorithm == "mnas" else 2 + (self.config.objectives != "ap_latency")

    @property
    def n_constr(self) -> int:
        return 0 if self.config.algorithm == "mnas" or self.budget_ms is None else 1

    def records(self, archs: Sequence[Arch]) -> list[dict]:
        """Evaluator metrics + predicted latency, params, MACs, feasibility (+ MnasNet reward)."""
        metrics = list(self.evaluate(list(archs)))
        latency = np.asarray(self.latency(list(archs)), dtype=float).reshape(-1)
        if len(metrics) != len(archs) or len(latency) != len(archs):
            raise ValueError(f"evaluator/latency returned {len(metrics)}/{len(latency)} results "
                             f"for {len(archs)} archs")
        self.ap_key = self.ap_key or resolve_ap_key(self.config.ap_metric, metrics[0])
        out = []
        for arch, m, ms in zip(archs, metrics, latency):
            rec = {k: float(v) for k, v in m.items()}
            rec.update(latency_ms=float(ms), params=self.space.params(arch),
                       macs=self.space.macs(arch, self.input_size),
                       feasible=bool(self.budget_ms is None or ms <= self.budget_ms))
            if self.config.algorithm == "mnas":
                rec["mnas_reward"] = float(mnas_reward(rec[self.ap_key], ms, self.budget_ms,
                                                       self.config.mnas_alpha, self.config.mnas_beta))
            out.append(rec)
        return out

    def objectives(self, records: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
        if self.config.algorithm == "mnas":
            return -np.array([[r["mnas_reward"] for r in records]]).T, None
        third = {"ap_latency": [], "ap_latency_params": ["params"],
                 "ap_latency_macs": ["macs"]}[self.config.objectives]
        F = np.array([[-r[self.ap_key], r["latency_ms"]] + [float(r[c]) for c in third]
                      for r in records])
        G = None if self.budget_ms is None else F[:, 1:2] - self.budget_ms
        return F, G

    def __call__(self, X: np.ndarray):
        records = self.records([self.space.decode(x) for x in X])
        F, G = self.objectives(records)
        return F, G, records
