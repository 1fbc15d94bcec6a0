"""NSGANetV2-style surrogate: predict a candidate's objectives before paying for its evaluation.

`Surrogate` keeps every evaluated vector with its objective and constraint values (F, G), fits one
Gaussian process per column on them, and ranks a pool of unevaluated candidates by prediction, so
that a search evaluates for real only the most promising few (`select`). After the real evaluation
it logs the Kendall tau between predicted and measured first objective (the AP) of that
generation's batch (`log`, written by the engine to ``surrogate.csv``).

The model is a GP over the categorical encoding with the kernel

    k(x, x') = w * (1 - d(x, x') / n_var) + (1 - w) * exp(-theta * d(x, x') / n_var)

where d is the Hamming distance (half the L1 distance of the one-hot encodings). The first term is
the linear kernel of the one-hot encoding (a Bayesian ridge regression: additive main effects such
as per-block latency), the second a stationary kernel for the interactions between choices. Each
column's targets are standardised; w, theta and the noise level are chosen per column by the
marginal likelihood over a small grid, the signal variance in closed form. Fitting is exact
(n <= a few thousand), deterministic and needs numpy only, so a resumed search refits the same
model from the stored data.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 3, size=(60, 5))
    >>> y = X.sum(1) + 2.0 * (X[:, 0] == X[:, 1])          # additive + an interaction
    >>> model = GaussianProcess().fit(X, y[:, None])
    >>> Xt = rng.integers(0, 3, size=(40, 5))
    >>> mean, _ = model.predict(Xt)
    >>> bool(kendall_tau(mean[:, 0], Xt.sum(1) + 2.0 * (Xt[:, 0] == Xt[:, 1])) > 0.7)
    True
"""

from __future__ import annotations

import numpy as np
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from scipy.stats import kendalltau

from evolution.pareto import nondominated

LINEAR_WEIGHTS = (0.3, 0.7, 0.95)  # share of the additive (one-hot linear) kernel
THETAS = (1.0, 4.0, 16.0)  # decay of the interaction kernel per unit of relative Hamming distance
NOISES = (1e-4, 1e-2, 1e-1)  # noise variance relative to the standardised targets
SELECT_POINTS = 150  # hyperparameters are chosen on the latest this many points (O(n^3) per grid point)


def kendall_tau(predicted, measured) -> float:
    """Kendall's tau-b (nan when either side is constant or there are < 2 points)."""
    predicted, measured = np.ravel(predicted), np.ravel(measured)
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return float("nan")
    return float(kendalltau(predicted, measured).statistic)


class GaussianProcess:
    """Exact GP regression over integer (categorical) vectors; one independent GP per target column."""

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "GaussianProcess":
        self.X = np.asarray(X, dtype=np.int64)
        Y = np.asarray(Y, dtype=float).reshape(len(self.X), -1)
        self.mu, self.sd = Y.mean(0), Y.std(0)
        self.sd[self.sd == 0] = 1.0
        Z = (Y - self.mu) / self.sd
        D = self._distance(self.X, self.X)
        self.params = self._select(D[-SELECT_POINTS:, -SELECT_POINTS:], Z[-SELECT_POINTS:])
        self.alpha, self.chol, self.s2 = [], [], []
        for j, (w, theta, noise) in enumerate(self.params):
            L = np.linalg.cholesky(self._kernel(D, w, theta) + noise * np.eye(len(Z)))
            v = np.linalg.solve(L, Z[:, j])
            self.chol.append(L)
            self.alpha.append(np.linalg.solve(L.T, v))
            self.s2.append(max(float(v @ v) / len(Z), 1e-12))  # profiled signal variance
        return self

    def _select(self, D: np.ndarray, Z: np.ndarray) -> list[tuple[float, float, float]]:
        """Per column, the grid's (w, theta, noise) of highest marginal likelihood."""
        best = [(-np.inf, None)] * Z.shape[1]  # per column: (log likelihood, (w, theta, noise))
        for w in LINEAR_WEIGHTS:
            for theta in THETAS:
                lam, Q = np.linalg.eigh(self._kernel(D, w, theta))
                lam, QZ = np.maximum(lam, 0.0), Q.T @ Z
                for noise in NOISES:
                    # marginal likelihood with the signal variance s2 profiled out (s2 = z'K^-1 z / n)
                    s = lam + noise
                    s2 = np.maximum((QZ ** 2 / s[:, None]).sum(0) / len(Z), 1e-12)
                    ll = -0.5 * len(Z) * np.log(s2) - 0.5 * np.log(s).sum()
                    best = [(l, (w, theta, noise)) if l > b[0] else b for l, b in zip(ll, best)]
        return [p for _, p in best]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation, shapes (n, n_columns), in the targets' units."""
        D = self._distance(np.asarray(X, dtype=np.int64), self.X)
        mean, std = [], []
        for (w, theta, noise), L, a, s2 in zip(self.params, self.chol, self.alpha, self.s2):
            Ks = self._kernel(D, w, theta)
            V = np.linalg.solve(L, Ks.T)
            mean.append(Ks @ a)
            std.append(np.sqrt(s2 * np.maximum(1.0 - (V ** 2).sum(0), 0.0)))  # k(x, x) = 1
        mean, std = np.array(mean).T, np.array(std).T
        return mean * self.sd + self.mu, std * self.sd

    @staticmethod
    def _distance(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Relative Hamming distance: the share of variables on which two vectors differ."""
        return (A[:, None, :] != B[None, :, :]).mean(2)

    @staticmethod
    def _kernel(D: np.ndarray, w: float, theta: float) -> np.ndarray:
        return w * (1.0 - D) + (1.0 - w) * np.exp(-theta * D)


class Surrogate:
    """Training data, model and Kendall-tau log of a surrogate-assisted search (state: plain data).

    `select(X, n)` picks the n most promising rows of a candidate pool from predicted (F, G):
    feasible-predicted rows first, ranked by non-dominated level among the pool together with the
    evaluated feasible front (so a candidate predicted to be dominated by a known arch ranks low),
    then by crowding distance within a level; predicted-infeasible rows last, by violation. The
    first objective is predicted optimistically (mean - `optimism` x std) so uncertain regions get
    tried. `scalar` (optional) maps predicted (F, G) to a fitness to minimise (aging evolution),
    replacing the Pareto ranking."""

    def __init__(self, optimism: float = 0.5, min_points: int = 8):
        self.optimism, self.min_points = optimism, min_points
        self.X: list[list[int]] = []
        self.Y: list[list[float]] = []  # [F..., G...] per evaluated vector
        self.n_obj = 0
        self.log: list[dict] = []  # one row per generation with predictions
        self.pending: dict | None = None  # predictions of the batch being evaluated
        self.model: GaussianProcess | None = None

    @property
    def ready(self) -> bool:
        return len(self.X) >= self.min_points

    def observe(self, X: np.ndarray, F: np.ndarray, G: np.ndarray, generation: int) -> None:
        """Add a batch of real evaluations; log the tau of the predictions made for it, if any."""
        X, F = np.asarray(X, dtype=np.int64), np.asarray(F, dtype=float)
        G = np.asarray(G, dtype=float).reshape(len(X), -1)
        if self.pending is not None:
            keys = [tuple(x) for x in X.tolist()]
            pred = dict(zip(map(tuple, self.pending["X"]), self.pending["f0"]))
            both = [(pred[k], f) for k, f in zip(keys, F[:, 0]) if k in pred]
            if both:
                p, m = np.array(both).T
                self.log.append({"generation": generation, "n_train": len(self.X),
                                 "n_pool": self.pending["n_pool"], "n_evaluated": len(both),
                                 "kendall_tau": kendall_tau(p, m)})
            self.pending = None
        self.n_obj = F.shape[1]
        self.X += X.tolist()
        self.Y += np.c_[F, G].tolist()
        self.model = None

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted (F, G, std of F[:, 0]) of the rows of X."""
        if self.model is None:
            self.model = GaussianProcess().fit(np.array(self.X), np.array(self.Y))
        mean, std = self.model.predict(X)
        return mean[:, :self.n_obj], mean[:, self.n_obj:], std[:, 0]

    def select(self, X: np.ndarray, n: int, scalar=None) -> np.ndarray:
        """Indices of the `n` most promising rows of the pool X (all of them if len(X) <= n)."""
        X = np.asarray(X, dtype=np.int64)
        F, G, std = self.predict(X)
        F = F.copy()
        F[:, 0] -= self.optimism * std
        if scalar is not None:
            violation, value = scalar(F, G)
            order = np.lexsort((np.arange(len(X)), value, violation))[:n]
        else:
            order = self._pareto_order(F, G, n)
        self.pending = {"X": X[order].tolist(), "f0": F[order, 0].tolist(), "n_pool": len(X)}
        return order

    def _pareto_order(self, F: np.ndarray, G: np.ndarray, n: int) -> np.ndarray:
        violation = np.maximum(G, 0).sum(1) if G.size else np.zeros(len(F))
        ok = np.flatnonzero(violation <= 0)
        known = np.array(self.Y, dtype=float)
        known = known[np.all(known[:, self.n_obj:] <= 0, axis=1), :self.n_obj]
        known = known[nondominated(known)]  # the evaluated feasible front
        order: list[int] = []
        if len(ok):
            fronts = NonDominatedSorting().do(np.r_[F[ok], known])
            for front in fronts:
                front = front[front < len(ok)]  # candidates only; known rows just push them down
                if len(front) == 0:
                    continue
                if len(order) + len(front) > n:
                    crowd = calc_crowding_distance(F[ok][front])
                    front = front[np.lexsort((front, -crowd))][:n - len(order)]
                order += ok[np.sort(front)].tolist()
                if len(order) >= n:
                    break
        bad = np.flatnonzero(violation > 0)
        order += bad[np.lexsort((bad, violation[bad]))][:n - len(order)].tolist()
        return np.array(order[:n], dtype=np.int64)

    def state_dict(self) -> dict:
        return {"X": self.X, "Y": self.Y, "n_obj": self.n_obj, "log": self.log,
                "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.X, self.Y, self.n_obj = state["X"], state["Y"], state["n_obj"]
        self.log, self.pending, self.model = state["log"], state["pending"], None
