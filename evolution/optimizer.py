"""The generic search core: NSGA-II (optionally surrogate-assisted) / GA / random search, and the
strategies of `evolution.strategies` (aging evolution, RL controller), over integer vectors.

Nothing here knows about architectures. A problem is per-variable choice counts plus an objective
function on a batch of vectors::

    objective_fn(X: int array (n, n_var)) -> (F (n, n_obj), G (n, n_constr) or None[, records])

where every objective is minimised, a row is feasible when all its G <= 0, and the optional
`records` (one dict per row) are extra columns for the archive. `optimize` runs pymoo's
ask/tell loop generation by generation: vectors already in the `Archive` are never passed to
`objective_fn` again, and with a `run_dir` the archive (``candidates.csv``) and the algorithm's
state (``checkpoint.json``: population X/F/G/CV/rank/crowding, RNG state, the set of evaluated
vectors; plain data, no pickle) are written atomically after every generation, so `resume=True`
rebuilds the algorithm from the config and continues from the last completed generation with the
same random stream as an uninterrupted run.

    >>> choices = np.array([3] * 4)
    >>> def fn(X):  # two conflicting objectives: sum of choices vs. sum of (2 - choices)
    ...     return np.c_[X.sum(1), (2 - X).sum(1)], None
    >>> res = nsga2(choices, fn, n_obj=2, pop=8, gens=3, seed=0)
    >>> bool(np.all(res.F.sum(1) == 8))
    True
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.evaluator import Evaluator
from pymoo.core.individual import Individual
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.ux import UX
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.problems.static import StaticProblem
from tqdm import tqdm

from evolution.archive import Archive
from evolution.config import SearchConfig
from evolution.operators import (CanonicalRepair, CategoricalMutation, SeenDuplicateElimination,
                                 UniqueSampling, identity, sample_unique)
from evolution.strategies import AgingEvolution, PolicyGradient, SurrogateNSGA2
from evolution.surrogate import Surrogate
from core.io import atomic_write_csv, atomic_write_text

ObjectiveFn = Callable[[np.ndarray], tuple]
CHECKPOINT, CANDIDATES = "checkpoint.json", "candidates.csv"
SURROGATE_LOG = "surrogate.csv"  # per generation: Kendall tau of predicted vs evaluated AP
LEGACY_CHECKPOINT = "checkpoint.pkl"  # pickled algorithm of older versions: never unpickled
CHECKPOINT_FORMAT = "facenas-search-checkpoint/1"


def vector_key(x) -> str:
    """Archive key of a plain vector: ``"0-2-1"``."""
    return "-".join(str(int(v)) for v in x)


class EncodedProblem(Problem):
    """Bounds and sizes of a categorical encoding (evaluation happens in `optimize`, not here)."""

    def __init__(self, choices, n_obj: int, n_constr: int = 0,
                 canonical: Callable = identity, key: Callable = vector_key):
        choices = np.asarray(choices, dtype=np.int64).ravel()
        if choices.size == 0 or np.any(choices < 1):
            raise ValueError(f"choices must be positive counts per variable, got {choices.tolist()}")
        super().__init__(n_var=len(choices), n_obj=n_obj, n_ieq_constr=n_constr,
                         xl=np.zeros_like(choices), xu=choices - 1, vtype=int)
        self.choices, self.canonical, self.key = choices, canonical, key

    def _evaluate(self, x, out, *args, **kwargs):
        raise RuntimeError("EncodedProblem is evaluated by evolution.optimizer.optimize (ask/tell)")


class RandomSearch:
    """Random search in the loop's ask/tell shape: `pop_size` new distinct vectors per generation."""

    def __init__(self, pop_size: int):
        self.pop_size, self.eliminate_duplicates = pop_size, SeenDuplicateElimination()

    def setup(self, problem: EncodedProblem, seed: int, **kwargs) -> "RandomSearch":
        self.problem, self.random_state = problem, np.random.default_rng(seed)
        self.pop = Population.empty()
        return self

    def ask(self) -> Population:
        X = sample_unique(self.problem.choices, self.pop_size, self.random_state,
                          self.problem.canonical, self.eliminate_duplicates.seen)
        return Population.new(X=X)

    def tell(self, infills: Population, **kwargs) -> None:
        self.pop = Population.merge(self.pop, infills)


def tournament_by_cv_and_fitness(pop, P, random_state=None, **kwargs) -> np.ndarray:
    """GA binary tournament: lower constraint violation wins, then lower F; ties by a coin flip.

    Same rule as pymoo's `comp_by_cv_and_fitness` (kept as a plain module-level function)."""
    cv, f = pop.get("CV")[:, 0], pop.get("F")[:, 0]
    a, b = P[:, 0], P[:, 1]
    by_cv = (cv[a] > 0) | (cv[b] > 0)
    va, vb = np.where(by_cv, cv[a], f[a]), np.where(by_cv, cv[b], f[b])
    coin = random_state.random(len(P)) < 0.5
    return np.where(va < vb, a, np.where(vb < va, b, np.where(coin, a, b)))[:, None].astype(int)


def build_algorithm(problem: EncodedProblem, config: SearchConfig):
    """`random`, `aging`, `rl` (`evolution.strategies`), else pymoo GA (one objective, e.g. the
    MnasNet reward) or NSGA-II (with a surrogate if `config.surrogate`); set up, seeded."""
    if config.algorithm == "random":
        return RandomSearch(config.population).setup(problem, seed=config.seed)
    if config.algorithm in ("aging", "rl"):
        return _build_strategy(problem, config).setup(problem, seed=config.seed)
    seen = SeenDuplicateElimination()
    operators = dict(pop_size=config.population, sampling=UniqueSampling(problem.canonical, seen),
                     crossover=UX(prob=config.crossover_rate),
                     mutation=CategoricalMutation(config.mutation_rate),
                     repair=CanonicalRepair(problem.canonical), eliminate_duplicates=seen)
    if problem.n_obj == 1:
        algorithm = GA(selection=TournamentSelection(func_comp=tournament_by_cv_and_fitness),
                       **operators)
    elif config.surrogate:
        algorithm = SurrogateNSGA2(Surrogate(), config.surrogate_pool, **operators)
    else:
        algorithm = NSGA2(**operators)
    algorithm.setup(problem, termination=NoTermination(), seed=config.seed)
    return algorithm


def _build_strategy(problem: EncodedProblem, config: SearchConfig):
    needs_budget = config.algorithm == "rl" or config.aging_fitness == "reward"
    if needs_budget and (problem.n_obj < 2 or problem.n_ieq_constr < 1):
        raise ValueError(f"search.algorithm {config.algorithm} with the MnasNet reward needs the "
                         "objectives (AP, latency) and a latency budget (its target T)")
    weights = dict(alpha=config.mnas_alpha, beta=config.mnas_beta)
    if config.algorithm == "rl":
        return PolicyGradient(config.population, config.rl_learning_rate,
                              config.rl_baseline_decay, **weights)
    return AgingEvolution(config.population, config.aging_population, config.aging_sample,
                          config.aging_fitness, **weights,
                          surrogate=Surrogate() if config.surrogate else None,
                          pool=config.surrogate_pool)


def evaluate_cached(X: np.ndarray, objective_fn: ObjectiveFn, archive: Archive,
                    key: Callable, generation: int) -> tuple[np.ndarray, np.ndarray]:
    """(F, G) of the rows of X; only keys missing from `archive` go to `objective_fn` (once each)."""
    keys = [key(x) for x in X]
    todo = list(dict.fromkeys(k for k in keys if k not in archive))
    if todo:
        rows = [keys.index(k) for k in todo]
        out = objective_fn(X[rows])
        F, G = np.asarray(out[0], dtype=float).reshape(len(rows), -1), out[1]
        G = np.zeros((len(rows), 0)) if G is None else np.asarray(G, dtype=float).reshape(len(rows), -1)
        records = out[2] if len(out) > 2 else [{}] * len(rows)
        for j, k in enumerate(todo):
            archive.add(k, records[j], F[j], G[j], generation)
    for k in keys:  # a row evaluated earlier only as the baseline now belongs to this generation
        if archive[k]["generation"] < 0:
            archive[k]["generation"] = generation
    return archive.objectives(keys)


@dataclass
class LoopState:
    """The loop's position: the algorithm after `generation` completed generations."""

    algorithm: object
    generation: int = 0
    fingerprint: dict = field(default_factory=dict)


def _encode(value):
    """A population field as JSON-able data (arrays keep dtype and shape, so they round-trip)."""
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a population field of type {type(value).__name__}")


def _decode(value):
    if isinstance(value, dict):
        return np.array(value["data"], dtype=value["dtype"]).reshape(value["shape"])
    return value


def _individual_state(ind: Individual) -> dict:
    fields = {k: _encode(v) for k, v in vars(ind).items() if k.startswith("_")}
    return {"fields": fields, "evaluated": sorted(ind.evaluated or ()),
            "data": {k: _encode(v) for k, v in ind.data.items()}}


def _new_individual(state: dict) -> Individual:
    ind = Individual()
    for k, v in state["fields"].items():
        setattr(ind, k, _decode(v))
    ind.evaluated = set(state["evaluated"])
    ind.data = {k: _decode(v) for k, v in state["data"].items()}
    return ind


def algorithm_state(algorithm) -> dict:
    """Everything `ask` depends on, as plain data: population, RNG state, evaluated vectors."""
    pop = algorithm.pop if algorithm.pop is not None else []
    extra = algorithm.extra_state() if hasattr(algorithm, "extra_state") else None
    return {"class": type(algorithm).__name__, "n_iter": getattr(algorithm, "n_iter", None),
            "is_initialized": getattr(algorithm, "is_initialized", None),
            "random_state": algorithm.random_state.bit_generator.state,
            "seen": sorted(list(x) for x in algorithm.eliminate_duplicates.seen),
            "pop": [_individual_state(ind) for ind in pop], "extra": extra}


def restore_algorithm(algorithm, state: dict) -> None:
    """Put `algorithm_state` back into a freshly built (`build_algorithm`) algorithm."""
    if state["class"] != type(algorithm).__name__:
        raise ValueError(f"checkpoint holds a {state['class']} search, the config builds "
                         f"{type(algorithm).__name__}")
    algorithm.random_state.bit_generator.state = state["random_state"]
    seen = algorithm.eliminate_duplicates.seen  # shared with sampling and mating: update in place
    seen.clear()
    seen.update(tuple(x) for x in state["seen"])
    algorithm.pop = Population([_new_individual(s) for s in state["pop"]])
    if state.get("extra") is not None:  # strategy state beyond pymoo's: policy, surrogate data
        algorithm.load_extra_state(state["extra"])
    if state["is_initialized"] is not None:
        algorithm.n_iter, algorithm.is_initialized = state["n_iter"], state["is_initialized"]
        algorithm.start_time = time.time()
        if algorithm.is_initialized:
            algorithm._set_optimum()


def _save_state(path: Path, state: LoopState) -> None:
    data = {"format": CHECKPOINT_FORMAT, "generation": state.generation,
            "fingerprint": state.fingerprint, "algorithm": algorithm_state(state.algorithm)}
    atomic_write_text(path, json.dumps(data) + "\n")  # floats: shortest repr, read back exactly


def _load_state(path: Path, fingerprint: dict, problem: EncodedProblem,
                config: SearchConfig) -> LoopState:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a readable search checkpoint ({err})") from None
    fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists, as stored
    saved = data["fingerprint"]
    diff = sorted(k for k in set(fingerprint) | set(saved) if fingerprint.get(k) != saved.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {fingerprint.get(k)!r}"
                            for k in diff)
        raise ValueError(f"cannot resume {path}: the search config differs ({details})")
    algorithm = build_algorithm(problem, config)
    restore_algorithm(algorithm, data["algorithm"])
    return LoopState(algorithm, int(data["generation"]), saved)


def optimize(problem: EncodedProblem, objective_fn: ObjectiveFn, config: SearchConfig,
             archive: Archive | None = None, *, run_dir: str | Path | None = None,
             fingerprint: dict | None = None, resume: bool = False,
             summary: Callable[[Archive], dict] | None = None) -> tuple[object, Archive]:
    """Run `config.generations` generations (continuing a checkpoint if `resume`); see module doc."""
    archive = archive if archive is not None else Archive("x")
    ckpt = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    fingerprint = dict(fingerprint or {})
    if ckpt is not None and resume and ckpt.exists():
        state = _load_state(ckpt, fingerprint, problem, config)
    elif ckpt is not None and resume and (ckpt.parent / LEGACY_CHECKPOINT).exists():
        raise ValueError(f"{ckpt.parent / LEGACY_CHECKPOINT}: a search checkpoint of an older facenas "
                         "(a pickle, which is never loaded: unpickling can run code); start the "
                         "search again with --overwrite or another --out")
    else:
        state = LoopState(build_algorithm(problem, config), 0, fingerprint)
    bar = tqdm(total=config.generations, initial=min(state.generation, config.generations),
               disable=not config.progress, desc=config.algorithm, unit="gen")
    for gen in range(state.generation, config.generations):
        pop = state.algorithm.ask()
        X = np.rint(pop.get("X")).astype(np.int64).reshape(len(pop), problem.n_var)
        F, G = evaluate_cached(X, objective_fn, archive, problem.key, gen)
        values = {"F": F, "G": G} if problem.n_ieq_constr else {"F": F}
        Evaluator().eval(StaticProblem(problem, **values), pop)
        state.algorithm.tell(infills=pop)
        state.algorithm.eliminate_duplicates.seen.update(tuple(int(v) for v in x) for x in X)
        state.generation = gen + 1
        if ckpt is not None:  # archive first: a crash in between only re-asks cached archs
            archive.save(ckpt.parent / CANDIDATES)
            surrogate = getattr(state.algorithm, "surrogate", None)
            if surrogate is not None and surrogate.log:
                atomic_write_csv(pd.DataFrame(surrogate.log), ckpt.parent / SURROGATE_LOG)
            _save_state(ckpt, state)
        if summary is not None:
            bar.set_postfix(summary(archive), refresh=False)
        bar.update()
    bar.close()
    return state.algorithm, archive


def nsga2(choices, evaluate_fn: ObjectiveFn, n_obj: int, n_constr: int = 0, pop: int = 32,
          gens: int = 20, seed: int = 0, canonical: Callable = identity):
    """In-memory NSGA-II (GA if `n_obj` == 1) on a categorical encoding -> pymoo `Result`."""
    problem = EncodedProblem(choices, n_obj, n_constr, canonical)
    config = SearchConfig(population=pop, generations=gens, seed=seed, progress=False)
    algorithm, _ = optimize(problem, evaluate_fn, config)
    return algorithm.result()
