"""Search over a categorical encoding: NSGA-II (by default with a GP surrogate pre-screening the
offspring), aging evolution, MnasNet's RL controller, a MnasNet-reward GA, random search.

One generic core, one thin adapter:

* `search(choices, objective_fn, config, out_dir, n_obj=..., n_constr=...)` searches any problem
  given as per-variable choice counts and a batch objective function
  ``objective_fn(X int (n, n_var)) -> (F (n, n_obj), G (n, n_constr) or None[, records])``
  (all objectives minimised, G <= 0 feasible): a surrogate, a tabular benchmark, a formula.
  `nsga2(choices, objective_fn, n_obj, n_constr, pop, gens, seed)` is the same loop in memory,
  returning a pymoo `Result`.
* `run_search(space, evaluate, latency, config, out_dir, input_size=..., baseline=...)` searches a
  `SearchSpace`: ``evaluate(archs) -> list[dict]`` (at least ``"ap"``) and
  ``latency(archs) -> np.ndarray`` (ms) become F = [-AP, latency(, params|MACs)] with the budget as
  G = latency - budget <= 0 (or, for ``algorithm: mnas``, F = [-AP x (latency/budget)^-0.07]).

Either writes ``candidates.csv`` (every distinct candidate, evaluated once: the cache),
``pareto.csv``, ``search.yaml`` and ``checkpoint.json`` (after every generation; ``resume=True``
continues it bit-identically); `run_search` also writes ``pareto.png`` and records the baseline.

Example on an analytic problem (AP with diminishing returns, additive latency)::

    >>> import tempfile
    >>> import numpy as np
    >>> from evolution import AnalyticProblem, SearchConfig, search
    >>> problem = AnalyticProblem(choices=[3] * 6)          # 729 vectors, front known exactly
    >>> config = SearchConfig(population=16, generations=10, seed=0, progress=False)
    >>> result = search(problem.choices, problem, config, tempfile.mkdtemp(), n_obj=2, n_constr=1,
    ...                 hv_reference=problem.hv_reference)
    >>> result.n_evaluated
    160
    >>> _, true_hv = problem.true_front()
    >>> bool(result.hypervolume >= 0.9 * true_hv)
    True

and on a search space, with a stand-in evaluator (the supernet's place)::

    >>> from core.experiment import Experiment
    >>> from evolution import fake_arch_evaluator, run_search
    >>> space = Experiment.from_yaml("experiments/tiny.yaml").space
    >>> evaluate, latency = fake_arch_evaluator(space)
    >>> config = ArchSearchConfig(population=8, generations=3, latency_budget="4ms", progress=False)
    >>> result = run_search(space, evaluate, latency, config, tempfile.mkdtemp(),
    ...                     input_size=(64, 64), baseline=space.baseline)
    >>> sorted(p.name for p in result.out_dir.iterdir())
    ['candidates.csv', 'checkpoint.json', 'pareto.csv', 'pareto.png', 'search.yaml', 'surrogate.csv']
    >>> bool((result.pareto["latency_ms"] <= 4.0).all())
    True
"""

from evolution.analytic import AnalyticProblem, fake_arch_evaluator
from evolution.archive import Archive
from evolution.budget import check_budget, parse_budget
from evolution.config import ArchSearchConfig, SearchConfig
from evolution.optimizer import EncodedProblem, RandomSearch, build_algorithm, nsga2, optimize
from evolution.pareto import feasible_front, hypervolume, nondominated
from evolution.plots import plot_pareto
from evolution.problem import ArchObjectives, mnas_reward
from evolution.search import SearchResult, run_search, search

__all__ = [
    "AnalyticProblem", "Archive", "ArchObjectives", "ArchSearchConfig", "EncodedProblem", "RandomSearch", "SearchConfig",
    "SearchResult", "build_algorithm", "check_budget", "fake_arch_evaluator", "feasible_front",
    "hypervolume", "mnas_reward", "nondominated", "nsga2", "optimize", "parse_budget", "plot_pareto",
    "run_search", "search",
]
