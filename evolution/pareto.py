"""Non-dominated filtering and hypervolume (all objectives minimised, constraints G <= 0 feasible).

    >>> F = np.array([[-0.8, 10.0], [-0.6, 5.0], [-0.5, 9.0]])
    >>> nondominated(F).tolist()
    [True, True, False]
    >>> round(hypervolume(F, ref=(0.0, 12.0)), 3)   # 0.8 * 2 + 0.6 * 5
    4.6
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV


def feasible(G: np.ndarray | None, n: int) -> np.ndarray:
    """Boolean mask: every constraint <= 0 (all True without constraints)."""
    if G is None or np.size(G) == 0:
        return np.ones(n, dtype=bool)
    return np.all(np.asarray(G, dtype=float).reshape(n, -1) <= 0, axis=1)


def nondominated(F: np.ndarray) -> np.ndarray:
    """Mask of rows no other row dominates (<= everywhere, < somewhere); equal rows are all kept."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=bool)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)  # le[j, i]: row j <= row i everywhere
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    return ~np.any(le & lt, axis=0)


def hypervolume(F: np.ndarray, ref) -> float:
    """Hypervolume dominated by the rows of `F` that strictly dominate `ref` (0 if none)."""
    F, ref = np.asarray(F, dtype=float), np.asarray(ref, dtype=float)
    F = F[np.all(F < ref, axis=1)] if len(F) else F.reshape(0, len(ref))
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=ref)(F[nondominated(F)]))


def feasible_front(F: np.ndarray, G: np.ndarray | None = None) -> np.ndarray:
    """Indices of the non-dominated feasible rows."""
    ok = np.flatnonzero(feasible(G, len(F)))
    return ok[nondominated(np.asarray(F)[ok])] if len(ok) else ok
