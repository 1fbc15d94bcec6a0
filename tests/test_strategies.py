"""Search strategies (evolution.strategies, evolution.surrogate): determinism, resume, budget, the RL
controller learning, the surrogate's tau log, and the benchmark script on a small setting."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evolution import AnalyticProblem, ArchSearchConfig, SearchConfig, fake_arch_evaluator, run_search, search
from evolution.strategies import PolicyGradient
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
# (algorithm, surrogate): every strategy the engine offers
STRATEGIES = [("nsga2", False), ("nsga2", True), ("aging", False), ("aging", True), ("rl", False),
              ("random", False), ("mnas", False)]
IDS = [f"{a}+surrogate" if s else a for a, s in STRATEGIES]


def _config(algorithm, surrogate, **kw) -> SearchConfig:
    base = dict(algorithm=algorithm, surrogate=surrogate, population=8, generations=4, seed=0,
                progress=False, aging_population=12, aging_sample=4, surrogate_pool=4)
    return ArchSearchConfig(**{**base, **kw})


class Crashing:
    """An analytic problem (3^8, with a budget) that raises on its n-th call (a killed evaluation);
    `single`: only -AP, no constraint (the single-objective GA of algorithm mnas)."""

    def __init__(self, crash_on_call: int | None = None, single: bool = False):
        self.problem = AnalyticProblem([3] * 8, seed=1)
        self.calls, self.crash_on_call, self.single = 0, crash_on_call, single

    def __call__(self, X):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        F, G, records = self.problem(X)
        return (F[:, :1], None, records) if self.single else (F, G, records)


def _search(algorithm, surrogate, out, crash_on_call=None, resume=False, **kw):
    fn = Crashing(crash_on_call, single=algorithm == "mnas")
    n_obj, n_constr = (1, 0) if algorithm == "mnas" else (2, 1)
    return search(fn.problem.choices, fn, _config(algorithm, surrogate, **kw), out, n_obj=n_obj,
                  n_constr=n_constr, hv_reference=fn.problem.hv_reference if n_obj == 2 else None,
                  resume=resume)


@pytest.mark.parametrize("algorithm, surrogate", STRATEGIES, ids=IDS)
def test_same_seed_same_result_and_resume_is_byte_identical(algorithm, surrogate, tmp_path):
    straight = _search(algorithm, surrogate, tmp_path / "a")
    _search(algorithm, surrogate, tmp_path / "b")
    other = _search(algorithm, surrogate, tmp_path / "c", seed=1)
    names = ["candidates.csv", "pareto.csv"] + (["surrogate.csv"] if surrogate else [])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert set(straight.candidates["x"]) != set(other.candidates["x"])
    assert straight.n_evaluated == 8 * 4
    # killed while evaluating generation 3 (calls 0, 1, 2 done), then resumed
    with pytest.raises(RuntimeError, match="simulated crash"):
        _search(algorithm, surrogate, tmp_path / "d", crash_on_call=3)
    _search(algorithm, surrogate, tmp_path / "d", resume=True)
    # stopped after 2 generations, then extended to 4
    _search(algorithm, surrogate, tmp_path / "e", generations=2)
    _search(algorithm, surrogate, tmp_path / "e", resume=True)
    for run in ("d", "e"):
        for name in names:
            assert (tmp_path / run / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), \
                (run, name)
    state = json.loads((tmp_path / "a" / "checkpoint.json").read_text())  # plain JSON
    if algorithm == "rl":
        assert {"logits", "m", "v", "steps", "baseline"} <= set(state["algorithm"]["extra"])


@pytest.mark.parametrize("algorithm, surrogate", [s for s in STRATEGIES if s[0] != "mnas"],
                         ids=[i for i in IDS if i != "mnas"])
def test_budget_is_respected_on_the_front(algorithm, surrogate, tmp_path):
    space = Experiment.from_yaml(ROOT / "experiments" / "tiny.yaml").space
    evaluate, latency = fake_arch_evaluator(space)
    config = _config(algorithm, surrogate, generations=3, latency_budget="4ms")
    result = run_search(space, evaluate, latency, config, tmp_path, input_size=(64, 64),
                        baseline=space.baseline)
    assert result.n_evaluated == 8 * 3 and len(result.pareto)
    assert (result.pareto["latency_ms"] <= 4.0).all() and result.pareto["feasible"].all()
    assert (result.candidates["latency_ms"] > 4.0).any()  # infeasible ones exist, off the front


def test_rl_reward_increases_when_one_choice_is_clearly_best(tmp_path):
    choices = np.array([4] * 6)

    def problem(X):  # choice 2 of every variable adds accuracy; latency constant at the target
        acc = 0.3 + 0.1 * (X == 2).sum(1)
        return np.c_[-acc, np.full(len(X), 5.0)], np.zeros((len(X), 1))

    config = ArchSearchConfig(algorithm="rl", population=16, generations=12, seed=0, progress=False,
                          rl_learning_rate=0.2)
    result = search(choices, problem, config, tmp_path, n_obj=2, n_constr=1)
    reward = -result.candidates.groupby("generation")["f0"].mean()
    assert reward.iloc[-3:].mean() > reward.iloc[:3].mean() + 0.1
    state = json.loads((tmp_path / "checkpoint.json").read_text())["algorithm"]["extra"]
    policy = PolicyGradient(16).setup(type("P", (), {"choices": choices, "n_var": 6})(), seed=0)
    policy.load_extra_state(state)
    assert all(p.argmax() == 2 and p[2] > 0.5 for p in policy.probabilities())
    assert state["history"][-1] > state["history"][0]


@pytest.mark.parametrize("algorithm", ["nsga2", "aging"])
def test_surrogate_tau_is_logged(algorithm, tmp_path):
    problem = AnalyticProblem([4] * 6, seed=2)
    config = _config(algorithm, True, generations=6)
    search(problem.choices, problem, config, tmp_path, n_obj=2, n_constr=1)
    log = pd.read_csv(tmp_path / "surrogate.csv")
    assert list(log.columns) == ["generation", "n_train", "n_pool", "n_evaluated", "kendall_tau"]
    assert len(log) >= 3 and log["generation"].is_monotonic_increasing
    assert (log["n_pool"] > log["n_evaluated"]).all()  # it pre-screened a larger pool
    assert log["kendall_tau"].between(-1, 1).all() and log["kendall_tau"].median() > 0.3


def test_config_checks_the_strategy_settings():
    with pytest.raises(ValueError, match="surrogate_pool"):
        ArchSearchConfig(surrogate_pool=0)
    with pytest.raises(ValueError, match="aging_sample"):
        ArchSearchConfig(algorithm="aging", aging_population=4, aging_sample=4)
    with pytest.raises(ValueError, match="aging_fitness"):
        ArchSearchConfig(aging_fitness="speed")
    problem = AnalyticProblem([3] * 4)
    with pytest.raises(ValueError, match="latency budget"):
        search(problem.choices, lambda X: problem(X)[:1] + (None,), _config("rl", False),
               "/nonexistent/never-created", n_obj=2)


def test_aging_with_the_budget_as_a_constraint(tmp_path):
    problem = AnalyticProblem([3] * 8, seed=1)
    config = _config("aging", False, aging_fitness="constraint", generations=6)
    result = search(problem.choices, problem, config, tmp_path, n_obj=2, n_constr=1)
    last = result.candidates[result.candidates["generation"] >= 4]
    assert (last["g0"] <= 0).mean() > 0.5  # children of feasible parents are mostly feasible


def test_benchmark_script_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("search_benchmark",
                                                  ROOT / "experiments" / "search_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    report = module.main(["--out", str(tmp_path), "--quick", "--seeds", "2", "--problems", "nk5x6",
                          "--strategies", "nsga2", "random", "rl"])
    assert {"table.md", "regret.png", "results.jsonl"} <= {p.name for p in tmp_path.iterdir()}
    assert len(report["rows"]) == 6 and all(r["distinct"] == 100 for r in report["rows"])
    med, q1, q3 = report["summary"][("nk5x6", 100, "random", "regret")]
    assert 0 < q1 <= med <= q3
    problem = module.make_nk()
    front, levels = problem.true_front()
    X = np.array(np.unravel_index(front, tuple(problem.choices))).T
    perfect = module.metrics(problem, front, levels, 1.0, X)
    hv = perfect["hv"]
    assert perfect["regret"] == 0 and perfect["front"] == 1
    empty = module.metrics(problem, front, levels, hv, X[:0])
    assert empty["regret"] == pytest.approx(np.mean(levels[:, 1] - problem.worst))
    assert empty["front"] == empty["hv"] == 0 and empty["gap"] == levels[-1, 1] - problem.worst
