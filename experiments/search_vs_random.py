"""NSGA-II vs random search at equal evaluations: median hypervolume over seeds, printed as JSON.

    python experiments/search_vs_random.py --evaluator analytic --seeds 0 1 2
    python experiments/search_vs_random.py --evaluator analytic --choices 4 4 4 4 4 4 4 4 4 4 4 4
    python experiments/search_vs_random.py --evaluator supernet --population 8 --generations 4

An evaluator is a factory ``(args) -> Task`` in `EVALUATORS`: a categorical problem (choice counts,
batch objective function, constraints, HV reference point). To compare on the supernet, add a
factory that builds ``evolution.ArchObjectives(space, evaluate, latency, config, budget_ms,
input_size)`` and returns ``Task(space.choices, objectives, objectives.n_obj, objectives.n_constr,
(0.0, budget_ms), canonical=space.canonical)``. Evaluations are memoised across algorithms and
seeds (each run still counts its own), so an expensive evaluator pays once per distinct vector.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from evolution import AnalyticProblem, ArchSearchConfig, SearchConfig, search
from evolution.optimizer import vector_key
from evolution.operators import identity


@dataclass
class Task:
    choices: np.ndarray
    objective_fn: Callable  # X (n, n_var) -> (F, G[, records]), all minimised
    n_obj: int
    n_constr: int
    hv_reference: tuple[float, ...]
    canonical: Callable = identity
    true_hv: float | None = None  # when the front is known exactly
    info: dict = field(default_factory=dict)


def make_analytic(args) -> Task:
    problem = AnalyticProblem(args.choices, seed=args.problem_seed)
    size = int(np.prod(problem.choices, dtype=float))
    true_hv = problem.true_front()[1] if size <= 1_000_000 else None
    return Task(problem.choices, problem, 2, 1, problem.hv_reference, true_hv=true_hv,
                info={"space_size": size, "budget_ms": problem.budget_ms})


def make_supernet(args) -> Task:
    """The real objectives: one-shot AP of the trained supernet and the latency table."""
    from detection.config import DetectorConfig
    from core.checkpoint import load_checkpoint
    from evolution.budget import parse_budget
    from evolution.evaluator import EvalConfig, SupernetEvaluator
    from evolution.problem import ArchObjectives
    from latency.table import LatencyTable
    from core.experiment import Experiment

    exp = Experiment.from_yaml(args.config or "experiments/default.yaml")
    det = exp.section("detector", DetectorConfig)
    run_dir = Path("runs") / exp.name
    budget = parse_budget(args.budget)
    config = replace(exp.section("search", ArchSearchConfig), latency_budget=budget, progress=False)
    table = LatencyTable.load(args.latency_table or run_dir / "latency.csv", exp.space, det)
    evaluator = SupernetEvaluator.from_checkpoint(
        load_checkpoint(Path(args.supernet or run_dir / "supernet.pt")), exp,
        EvalConfig(config.eval_images, config.bn_batches, config.eval_batch_size))
    objectives = ArchObjectives(exp.space, evaluator, table.predict_many, config, budget,
                                det.input_size)
    return Task(exp.space.choices, objectives, objectives.n_obj, objectives.n_constr,
                (0.0, budget), canonical=exp.space.canonical,
                info={"budget_ms": budget, "ap_metric": config.ap_metric})


EVALUATORS: dict[str, Callable[[argparse.Namespace], Task]] = {"analytic": make_analytic,
                                                               "supernet": make_supernet}


class Memo:
    """Objective function memoised by vector (rows are canonical, so equal archs share a row)."""

    def __init__(self, fn: Callable):
        self.fn, self.cache, self.n_distinct = fn, {}, 0

    def __call__(self, X: np.ndarray):
        todo = [x for x in X if vector_key(x) not in self.cache]
        if todo:
            out = self.fn(np.array(todo))
            G = out[1] if out[1] is not None else np.zeros((len(todo), 0))
            records = out[2] if len(out) > 2 else [{}] * len(todo)
            for x, f, g, r in zip(todo, out[0], G, records):
                self.cache[vector_key(x)] = (f, g, r)
            self.n_distinct += len(todo)
        rows = [self.cache[vector_key(x)] for x in X]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), [r[2] for r in rows]


def compare(task: Task, args, out_dir: Path) -> dict:
    memo = Memo(task.objective_fn)
    hv: dict[str, list[float]] = {"nsga2": [], "random": []}
    evals: dict[str, list[int]] = {"nsga2": [], "random": []}
    for algorithm in hv:
        for seed in args.seeds:
            config = SearchConfig(algorithm=algorithm, population=args.population,
                                  generations=args.generations, seed=seed, progress=False)
            result = search(task.choices, memo, config, out_dir / f"{algorithm}-seed{seed}",
                            n_obj=task.n_obj, n_constr=task.n_constr, canonical=task.canonical,
                            hv_reference=task.hv_reference)
            hv[algorithm].append(round(result.hypervolume, 6))
            evals[algorithm].append(result.n_evaluated)
    report = {"evaluator": args.evaluator, "population": args.population,
              "generations": args.generations, "seeds": args.seeds, "evaluations": evals,
              "hv_reference": list(task.hv_reference), "hypervolume": hv,
              "median": {a: statistics.median(v) for a, v in hv.items()}, **task.info,
              "distinct_evaluated": memo.n_distinct}
    if task.true_hv is not None:
        report["true_hv"] = round(task.true_hv, 6)
        report["median_fraction_of_true"] = {a: round(m / task.true_hv, 4)
                                             for a, m in report["median"].items()}
    return report


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluator", choices=sorted(EVALUATORS), default="analytic")
    parser.add_argument("--config", help="experiment YAML (for evaluators that need one)")
    parser.add_argument("--choices", type=int, nargs="+", default=[3] * 6,
                        help="analytic: choices per variable (default 3 x 6 = 729 vectors)")
    parser.add_argument("--problem-seed", type=int, default=0, help="analytic: weights seed")
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--supernet", help="supernet: checkpoint (default runs/<name>/supernet.pt)")
    parser.add_argument("--latency-table", help="supernet: table (default runs/<name>/latency.csv)")
    parser.add_argument("--budget", default="12ms", help="supernet: latency budget")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    task = EVALUATORS[args.evaluator](args)
    if args.out:
        report = compare(task, args, Path(args.out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = compare(task, args, Path(tmp))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
