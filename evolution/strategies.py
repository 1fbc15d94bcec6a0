"""Search strategies beside pymoo's NSGA-II, in the engine's ask/tell shape (`evolution.optimizer`).

Every strategy asks for `pop_size` new distinct vectors per generation (never one evaluated before),
so all of them spend exactly population x generations evaluations, and all keep the problem's
objectives (F = [-AP, latency, ...], G = [latency - budget]) in the archive and on the front. The
single-objective ones scalarise internally (`scalar_fitness`):

* `AgingEvolution` (AmoebaNet's regularized evolution): P archs alive in age order; each child is a
  copy of the best of S < P archs drawn at random from them with one choice changed; the oldest
  die. Fitness: the MnasNet reward ACC x (LAT/T)^w, or the budget as a constraint (feasible first,
  then AP).
* `PolicyGradient` (MnasNet's controller): a policy over the categorical tokens, REINFORCE with a
  moving-average baseline and Adam, rewarded with ACC x (LAT/T)^w.
* `SurrogateNSGA2`: NSGA-II whose mating makes `pool` x more offspring than it evaluates and lets an
  `evolution.surrogate.Surrogate` pick the most promising (NSGANetV2); `AgingEvolution` takes the
  same surrogate.

The target T of the reward is the problem's budget, read from its first constraint: the engine's
problems define G0 = latency - budget, so T = F1 - G0. State beyond the engine's (population, RNG,
evaluated set) goes through `extra_state` / `load_extra_state` as plain data.

    >>> F = np.array([[-0.8, 12.0], [-0.7, 8.0]]); G = F[:, 1:] - 10.0
    >>> violation, value = scalar_fitness(F, G, "constraint")
    >>> violation.tolist(), value.tolist()
    ([2.0, 0.0], [-0.8, -0.7])
    >>> np.round(-scalar_fitness(F, G, "reward")[1], 3).tolist()   # 0.8 * 1.2^-0.07, 0.7 * 0.8^-0.07
    [0.79, 0.711]
"""

from __future__ import annotations

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population

from evolution.operators import SeenDuplicateElimination, canonicalize, sample_unique
from evolution.problem import mnas_reward
from evolution.surrogate import Surrogate

FITNESS = ("reward", "constraint")


def scalar_fitness(F: np.ndarray, G: np.ndarray, mode: str, alpha: float = -0.07,
                   beta: float = -0.07) -> tuple[np.ndarray, np.ndarray]:
    """(violation, value) per row, both minimised lexicographically; see the module doc."""
    F = np.asarray(F, dtype=float)
    G = np.asarray(G, dtype=float).reshape(len(F), -1)
    if mode == "reward":
        if G.shape[1] == 0 or F.shape[1] < 2:
            raise ValueError("the MnasNet reward needs objectives (AP, latency) and a latency budget")
        target = F[:, 1] - G[:, 0]
        return np.zeros(len(F)), -mnas_reward(-F[:, 0], F[:, 1], target, alpha, beta)
    if mode == "constraint":
        return np.maximum(G, 0).sum(1), F[:, 0].copy()
    raise ValueError(f"fitness {mode!r} is not one of {FITNESS}")


def _fitness_fn(mode: str, alpha: float, beta: float):
    return lambda F, G: scalar_fitness(F, G, mode, alpha, beta)


def _ask_fields(pop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.rint(pop.get("X")).astype(np.int64).reshape(len(pop), -1)
    F = pop.get("F").reshape(len(pop), -1)
    G = pop.get("G")
    G = np.zeros((len(pop), 0)) if G is None or np.size(G) == 0 else np.asarray(G, dtype=float)
    return X, F, G.reshape(len(pop), -1)


class _Strategy:
    """What the engine's loop and checkpoint expect: setup, ask, tell, pop, RNG, `seen`."""

    def __init__(self, pop_size: int, surrogate: Surrogate | None = None, pool: int = 1):
        self.pop_size, self.surrogate, self.pool = pop_size, surrogate, pool
        self.eliminate_duplicates = SeenDuplicateElimination()
        self.generation = 0

    def setup(self, problem, seed: int, **kwargs):
        self.problem, self.random_state = problem, np.random.default_rng(seed)
        self.pop = Population.empty()
        return self

    @property
    def seen(self) -> set:
        return self.eliminate_duplicates.seen

    def _random(self, n: int, exclude: set | None = None) -> np.ndarray:
        return sample_unique(self.problem.choices, n, self.random_state, self.problem.canonical,
                             self.seen | (exclude or set()))

    def _observe(self, pop) -> None:
        if self.surrogate is not None and len(pop):
            self.surrogate.observe(*_ask_fields(pop), generation=self.generation)
        self.generation += 1

    def extra_state(self) -> dict:
        return {"generation": self.generation,
                "surrogate": self.surrogate.state_dict() if self.surrogate else None}

    def load_extra_state(self, state: dict) -> None:
        self.generation = state["generation"]
        if self.surrogate is not None:
            self.surrogate.load_state_dict(state["surrogate"])


class AgingEvolution(_Strategy):
    """Regularized evolution (AmoebaNet), `pop_size` children per generation (one per worker).

    The first generations fill the population with random archs; from then on each child is the
    best of `sample` archs drawn from the `population` alive, with one variable set to another of
    its choices (canonicalised; drawn again if that arch was seen). With a surrogate, `pool` x
    `pop_size` children are made this way and the best `pop_size` by predicted fitness are kept."""

    def __init__(self, pop_size: int, population: int, sample: int, fitness: str = "reward",
                 alpha: float = -0.07, beta: float = -0.07, surrogate: Surrogate | None = None,
                 pool: int = 1):
        if not 2 <= sample < population:
            raise ValueError(f"aging evolution needs 2 <= sample < population, got {sample} and "
                             f"{population}")
        super().__init__(pop_size, surrogate, pool)
        self.population, self.sample = population, sample
        self.fitness = _fitness_fn(fitness, alpha, beta)

    def ask(self) -> Population:
        if len(self.pop) < self.population:
            return Population.new(X=self._random(self.pop_size))
        use_surrogate = self.surrogate is not None and self.surrogate.ready
        n = self.pop_size * (self.pool if use_surrogate else 1)
        X = self._children(n)
        if use_surrogate and len(X) > self.pop_size:
            X = X[self.surrogate.select(X, self.pop_size, scalar=self.fitness)]
        return Population.new(X=X)

    def _children(self, n: int) -> np.ndarray:
        alive, F, G = _ask_fields(self.pop)
        violation, value = self.fitness(F, G)
        movable = np.flatnonzero(self.problem.choices > 1)
        out, taken = [], set(self.seen)
        for _ in range(10 * n):
            if len(out) == n:
                break
            drawn = self.random_state.choice(len(alive), self.sample, replace=False)
            parent = drawn[np.lexsort((drawn, value[drawn], violation[drawn]))[0]]
            child = alive[parent].copy()
            j = self.random_state.choice(movable)
            child[j] = (child[j] + self.random_state.integers(1, self.problem.choices[j])) \
                % self.problem.choices[j]
            child = canonicalize(child, self.problem.canonical)[0]
            key = tuple(int(v) for v in child)
            if key not in taken:
                taken.add(key)
                out.append(child)
        if len(out) < n:  # the neighbourhood is exhausted: fill with random archs
            fill = self._random(n - len(out), {tuple(int(v) for v in x) for x in out})
            out += list(fill)
        return np.array(out, dtype=np.int64).reshape(len(out), self.problem.n_var)

    def tell(self, infills: Population, **kwargs) -> None:
        self._observe(infills)
        self.pop = Population.merge(self.pop, infills)[-self.population:]  # the oldest die


class PolicyGradient(_Strategy):
    """MnasNet's controller as independent categorical distributions, one per variable.

    MnasNet samples its tokens from an RNN so that a choice can condition on earlier ones. Here
    each variable has its own softmax over its choices: the spaces searched are factorized per
    layer and per stage, each token is (nearly) meaningful on its own, and independent logits learn
    in a few hundred samples where an RNN controller needs thousands. REINFORCE: each generation
    samples `pop_size` new distinct archs from the policy, the advantage is the MnasNet reward minus
    a moving-average baseline, and Adam ascends sum_i advantage x grad log p(token_i). Don't-care
    tokens (layers past a stage's depth) are sampled too and get no signal on average."""

    def __init__(self, pop_size: int, learning_rate: float = 0.1, baseline_decay: float = 0.9,
                 alpha: float = -0.07, beta: float = -0.07):
        super().__init__(pop_size)
        self.learning_rate, self.baseline_decay = learning_rate, baseline_decay
        self.reward = lambda F, G: -scalar_fitness(F, G, "reward", alpha, beta)[1]

    def setup(self, problem, seed: int, **kwargs):
        super().setup(problem, seed)
        self.offsets = np.r_[0, np.cumsum(problem.choices)]
        size = int(self.offsets[-1])
        self.logits, self.m, self.v = np.zeros(size), np.zeros(size), np.zeros(size)
        self.steps, self.baseline = 0, None
        self.history: list[float] = []  # mean reward of each generation's batch
        return self

    def probabilities(self) -> list[np.ndarray]:
        out = []
        for a, b in zip(self.offsets[:-1], self.offsets[1:]):
            z = np.exp(self.logits[a:b] - self.logits[a:b].max())
            out.append(z / z.sum())
        return out

    def _draw(self, n: int) -> np.ndarray:
        u = self.random_state.random((n, self.problem.n_var))
        columns = [np.searchsorted(np.cumsum(p), u[:, j], side="right").clip(max=len(p) - 1)
                   for j, p in enumerate(self.probabilities())]
        return np.stack(columns, axis=1).astype(np.int64)

    def ask(self) -> Population:
        raw, canon, taken = [], [], set(self.seen)
        for _ in range(50):
            R = self._draw(self.pop_size)
            for r, x in zip(R, canonicalize(R, self.problem.canonical)):
                key = tuple(int(v) for v in x)
                if key not in taken and len(canon) < self.pop_size:
                    taken.add(key)
                    raw.append(r)
                    canon.append(x)
            if len(canon) == self.pop_size:
                break
        if len(canon) < self.pop_size:  # the policy has nearly converged: explore uniformly
            fill = self._random(self.pop_size - len(canon), taken)
            raw, canon = raw + list(fill), canon + list(fill)
        shape = (len(canon), self.problem.n_var)
        return Population.new(X=np.array(canon).reshape(shape), raw=np.array(raw).reshape(shape))

    def tell(self, infills: Population, **kwargs) -> None:
        _, F, G = _ask_fields(infills)
        reward = self.reward(F, G)
        raw = np.rint(infills.get("raw")).astype(np.int64).reshape(len(infills), -1)
        mean = float(reward.mean())
        self.baseline = mean if self.baseline is None else self.baseline
        advantage = reward - self.baseline
        grad = np.zeros_like(self.logits)  # d/dlogits of sum_k advantage_k log p(raw_k), / batch
        for (a, b), p, col in zip(zip(self.offsets[:-1], self.offsets[1:]), self.probabilities(),
                                  raw.T):
            onehot = np.eye(b - a)[col]
            grad[a:b] = advantage @ (onehot - p) / len(raw)
        self._adam(grad)
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean
        self.history.append(mean)
        self.pop = infills
        self.generation += 1

    def _adam(self, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.steps += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad ** 2
        m_hat, v_hat = self.m / (1 - b1 ** self.steps), self.v / (1 - b2 ** self.steps)
        self.logits = self.logits + self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)  # ascent

    def extra_state(self) -> dict:
        return {**super().extra_state(), "logits": self.logits.tolist(), "m": self.m.tolist(),
                "v": self.v.tolist(), "steps": self.steps, "baseline": self.baseline,
                "history": self.history}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.logits, self.m, self.v = (np.array(state[k], dtype=float) for k in ("logits", "m", "v"))
        self.steps, self.baseline, self.history = state["steps"], state["baseline"], state["history"]


class SurrogateNSGA2(NSGA2):
    """NSGA-II that mates `pool` x more offspring than it evaluates; a `Surrogate` picks which."""

    def __init__(self, surrogate: Surrogate, pool: int, **kwargs):
        super().__init__(**kwargs)
        self.surrogate, self.pool, self.generation = surrogate, pool, 0

    def _infill(self):
        if not self.surrogate.ready:
            return super()._infill()
        off = self.mating.do(self.problem, self.pop, self.n_offsprings * self.pool, algorithm=self,
                             random_state=self.random_state)
        if len(off) <= self.n_offsprings:
            return off
        X = np.rint(off.get("X")).astype(np.int64).reshape(len(off), -1)
        return off[self.surrogate.select(X, self.n_offsprings)]

    def tell(self, infills=None, **kwargs):
        if infills is not None and len(infills):
            self.surrogate.observe(*_ask_fields(infills), generation=self.generation)
        self.generation += 1
        return super().tell(infills=infills, **kwargs)

    extra_state = _Strategy.extra_state
    load_extra_state = _Strategy.load_extra_state
