"""pymoo operators for categorical encodings (one integer per variable, 0..n_choices-1).

Choices are categories (op ``ir6`` is not "between" ``ir3`` and ``dw``), so the operators never use
the ordinal distance that SBX/PM assume:

* `UniqueSampling`: each variable uniform, canonicalised, distinct (and not already evaluated), so
  the first generation is a full population of new archs.
* crossover: pymoo's uniform crossover (UX) swaps whole choices between two parents.
* `CategoricalMutation`: each variable is resampled with probability `rate` (default 1 / n_var, one
  change per child on average) uniformly among its *other* choices, so a mutation always changes it.
* `CanonicalRepair`: maps each vector to its canonical form (`space.canonical` zeroes the entries of
  layers past the chosen depth), so equal archs have equal vectors.
* `SeenDuplicateElimination`: rejects children equal to each other, to the population, or to any
  vector evaluated before (`seen`, grown by the search loop), so no evaluation is spent twice.

Their only state is `SeenDuplicateElimination.seen`, which the search checkpoint stores as data.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

Canonical = Callable[[np.ndarray], np.ndarray]


def identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def canonicalize(X: np.ndarray, canonical: Canonical) -> np.ndarray:
    """Canonical form of each row of `X` (n, n_var) as int64."""
    X = np.rint(np.atleast_2d(X)).astype(np.int64)
    return np.array([canonical(x) for x in X], dtype=np.int64).reshape(X.shape)


def n_choices(problem) -> np.ndarray:
    xl, xu = problem.bounds()
    return (np.asarray(xu) - np.asarray(xl) + 1).astype(np.int64)


class CanonicalRepair(Repair):
    def __init__(self, canonical: Canonical = identity):
        super().__init__()
        self.canonical = canonical

    def _do(self, problem, X, **kwargs):
        return canonicalize(X, self.canonical)


class CategoricalMutation(Mutation):
    def __init__(self, rate: float | None = None):
        super().__init__(prob=1.0)
        self.rate = rate

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        X = np.rint(X).astype(np.int64)
        n = n_choices(problem)
        rate = self.rate if self.rate is not None else 1.0 / problem.n_var
        flip = (random_state.random(X.shape) < rate) & (n > 1)
        # shift by 1..n-1 (mod n): uniform over the other choices of that variable
        shift = np.floor(random_state.random(X.shape) * (n - 1)).astype(np.int64) + 1
        return np.where(flip, (X + shift) % n, X)


class SeenDuplicateElimination(DuplicateElimination):
    def __init__(self):
        super().__init__()
        self.seen: set[tuple[int, ...]] = set()

    def _do(self, pop, other, is_duplicate):
        keys = [tuple(int(v) for v in x) for x in pop.get("X")]
        if other is None:
            taken = set(self.seen)
            for i, key in enumerate(keys):
                is_duplicate[i] = key in taken
                taken.add(key)
        else:
            taken = {tuple(int(v) for v in x) for x in other.get("X")}
            is_duplicate |= np.array([key in taken for key in keys], dtype=bool)
        return is_duplicate


class UniqueSampling(Sampling):
    def __init__(self, canonical: Canonical = identity, seen: SeenDuplicateElimination | None = None):
        super().__init__()
        self.canonical, self.seen = canonical, seen

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return sample_unique(n_choices(problem), n_samples, random_state, self.canonical,
                             self.seen.seen if self.seen is not None else set())


def sample_unique(choices: np.ndarray, n: int, rng: np.random.Generator,
                  canonical: Canonical = identity, exclude: set | None = None,
                  max_draws: int = 100) -> np.ndarray:
    """`n` distinct canonical vectors (fewer only if the space runs out) not in `exclude`."""
    taken, out = set(exclude or ()), []
    for _ in range(max_draws):
        X = canonicalize(rng.integers(0, choices, size=(n, len(choices))), canonical)
        for x in X:
            key = tuple(int(v) for v in x)
            if key not in taken and len(out) < n:
                taken.add(key)
                out.append(x)
        if len(out) == n:
            break
    return np.array(out, dtype=np.int64).reshape(len(out), len(choices))
