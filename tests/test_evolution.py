"""evolution/: budget parsing, operators, NSGA-II on an analytic problem with a known front, the arch
adapter on the tiny space (outputs, cache, baseline, MnasNet reward, random search), and resume."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from evolution import (AnalyticProblem, ArchSearchConfig, SearchConfig, check_budget, fake_arch_evaluator, mnas_reward,
                       nondominated, nsga2, parse_budget, run_search, search)
from evolution.optimizer import EncodedProblem
from evolution.operators import CanonicalRepair, CategoricalMutation, SeenDuplicateElimination
from pymoo.core.population import Population
from core.config import from_dict
from core.experiment import Experiment

TINY = Path(__file__).resolve().parents[1] / "experiments" / "tiny.yaml"
INPUT = (64, 64)


@pytest.fixture(scope="module")
def space():
    return Experiment.from_yaml(TINY).space


class Counting:
    """Wraps the fake evaluator: records every arch it is asked for; optionally crashes on call n."""

    def __init__(self, space, crash_on_call: int | None = None):
        self.evaluate, self.latency = fake_arch_evaluator(space, INPUT)
        self.archs: list[str] = []
        self.calls, self.crash_on_call = 0, crash_on_call

    def __call__(self, archs):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        self.archs += [str(a) for a in archs]
        return self.evaluate(archs)


def _config(**kw) -> SearchConfig:
    base = dict(population=8, generations=3, seed=0, latency_budget="4ms", progress=False)
    return ArchSearchConfig(**{**base, **kw})


def _run(space, out, evaluator=None, resume=False, **kw):
    evaluator = evaluator or Counting(space)
    return run_search(space, evaluator, evaluator.latency, _config(**kw), out, input_size=INPUT,
                      baseline=space.baseline, resume=resume)


# -- budget -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, ms", [("12ms", 12.0), ("12", 12.0), ("0.012s", 12.0), (" 12 MS ", 12.0),
                                      ("7.5ms", 7.5), ("1500us", 1.5), (12, 12.0), (0.5, 0.5)])
def test_parse_budget(text, ms):
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["fast", "12 minutes", "ms", "", "-3ms", "0", "1e999ms", None, True])
def test_parse_budget_errors_name_the_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_budget(bad)


def test_check_budget():
    with pytest.raises(ValueError, match=r"fastest subnet .*1\.500 ms"):
        check_budget(1.0, fastest_ms=1.5, slowest_ms=9.0)
    with pytest.warns(UserWarning, match="does not constrain"):
        check_budget(10.0, fastest_ms=1.5, slowest_ms=9.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_budget(5.0, fastest_ms=1.5, slowest_ms=9.0)


def test_run_search_checks_budget(space, tmp_path):
    fastest = float(fake_arch_evaluator(space, INPUT)[1]([space.smallest()])[0])
    with pytest.raises(ValueError, match=f"{fastest:.3f} ms"):
        _run(space, tmp_path / "a", latency_budget="0.5ms")
    with pytest.warns(UserWarning, match="does not constrain"):
        _run(space, tmp_path / "b", latency_budget="1s", generations=1)
    with pytest.raises(ValueError, match="hv_reference"):
        _run(space, tmp_path / "c", hv_reference=(0.0, 1.0, 2.0))
    assert _run(space, tmp_path / "d", hv_reference=(-0.2, 5.0), generations=1).hv_reference == (-0.2, 5.0)


def test_config_is_strict():
    assert from_dict(ArchSearchConfig, {"population": 4, "latency_budget": "12ms"}).population == 4
    assert from_dict(ArchSearchConfig, {"hv_reference": [0, 15]}).hv_reference == (0.0, 15.0)
    with pytest.raises(ValueError, match="unknown key 'pop'"):
        from_dict(ArchSearchConfig, {"pop": 4})
    with pytest.raises(ValueError, match="algorithm"):
        ArchSearchConfig(algorithm="evolution")


# -- operators --------------------------------------------------------------------------------
def test_categorical_mutation_changes_only_flipped_values():
    problem = EncodedProblem(np.array([3, 2, 5, 1]), n_obj=2)
    X = np.zeros((2000, 4), dtype=np.int64)
    Y = CategoricalMutation(rate=0.5)._do(problem, X, random_state=np.random.default_rng(0))
    assert Y.min() >= 0 and np.all(Y.max(0) <= problem.choices - 1)
    assert np.all(Y[:, 3] == 0)  # a single-choice variable never moves
    changed = (Y != X)[:, :3].mean()
    assert 0.45 < changed < 0.55  # mutated values always differ from the old one
    assert set(Y[Y[:, 2] != 0, 2]) == {1, 2, 3, 4}  # uniform over the other choices


def test_repair_and_duplicates_use_canonical_archs(space):
    rng = np.random.default_rng(0)
    canon = space.canonical(rng.integers(0, space.choices))
    arch = space.decode(canon)
    # the don't-care entries (layers past the chosen depth): changing them keeps the arch
    bumped = (canon + 1) % space.choices
    dont_care = [j for j in range(space.n_var)
                 if space.decode(np.where(np.arange(space.n_var) == j, bumped, canon)) == arch]
    assert dont_care and np.all(canon[dont_care] == 0)
    noisy = canon.copy()
    noisy[dont_care] = bumped[dont_care]
    X = CanonicalRepair(space.canonical)._do(None, np.stack([noisy, canon]))
    assert np.array_equal(X[0], canon) and np.array_equal(X[1], canon)
    dedup = SeenDuplicateElimination()
    dedup.seen.add(tuple(int(v) for v in canon))  # evaluated in an earlier generation
    other = space.canonical(rng.integers(0, space.choices))
    pop = Population.new(X=np.stack([X[0], other, other]))
    kept = dedup.do(pop)
    assert len(kept) == 1 and np.array_equal(kept[0].X, other)


# -- the generic core on an analytic problem with a known front -------------------------------
@pytest.mark.slow
def test_nsga2_recovers_the_true_front(tmp_path):
    problem = AnalyticProblem([3] * 6)
    _, true_hv = problem.true_front()
    config = ArchSearchConfig(population=16, generations=10, seed=0, progress=False)
    result = search(problem.choices, problem, config, tmp_path, n_obj=2, n_constr=1,
                    hv_reference=problem.hv_reference)
    assert result.n_evaluated == problem.n_calls == 160  # no vector evaluated twice
    assert result.hypervolume >= 0.9 * true_hv
    F = result.pareto[["f0", "f1"]].to_numpy()
    assert nondominated(F).all() and (result.pareto["g0"] <= 0).all()


def test_search_runs_in_memory_without_an_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problem = AnalyticProblem([3] * 6)
    config = ArchSearchConfig(population=8, generations=3, seed=0, progress=False)
    result = search(problem.choices, problem, config, n_obj=2, n_constr=1,
                    hv_reference=problem.hv_reference)
    assert result.out_dir is None and result.n_evaluated == problem.n_calls == 24
    assert len(result.pareto) >= 1 and result.hypervolume > 0
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
    with pytest.raises(ValueError, match="resume=True needs the out_dir"):
        search(problem.choices, problem, config, n_obj=2, n_constr=1, resume=True)


def test_a_reference_point_of_the_wrong_length_is_an_error(tmp_path):
    problem = AnalyticProblem([3] * 6)
    config = ArchSearchConfig(population=4, generations=1, progress=False)
    with pytest.raises(ValueError, match=r"hv_reference \(1.0, 2.0, 3.0\) has 3 values; the problem has 2"):
        search(problem.choices, problem, config, tmp_path / "s", n_obj=2, n_constr=1,
               hv_reference=(1.0, 2.0, 3.0))
    assert problem.n_calls == 0 and not (tmp_path / "s").exists()  # refused before any work


def test_nsga2_function_returns_a_pymoo_result():
    problem = AnalyticProblem([3] * 6)
    res = nsga2(problem.choices, problem, n_obj=2, n_constr=1, pop=16, gens=5, seed=1)
    assert res.F.shape[1] == 2 and np.all(res.G <= 0)
    again = nsga2(problem.choices, problem, n_obj=2, n_constr=1, pop=16, gens=5, seed=1)
    assert np.array_equal(res.X, again.X)


def test_random_uses_the_same_number_of_evaluations(tmp_path):
    problem = AnalyticProblem([3] * 6)
    counts = {}
    for algorithm in ("nsga2", "random"):
        problem.n_calls = 0
        config = ArchSearchConfig(algorithm=algorithm, population=16, generations=6, progress=False)
        result = search(problem.choices, problem, config, tmp_path / algorithm, n_obj=2, n_constr=1)
        counts[algorithm] = (problem.n_calls, result.n_evaluated)
    assert counts["nsga2"] == counts["random"] == (96, 96)


# -- the arch adapter on the tiny space -------------------------------------------------------
def test_run_search_outputs(space, tmp_path):
    result = _run(space, tmp_path)
    for name in ("candidates.csv", "pareto.csv", "pareto.png", "search.yaml", "checkpoint.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cand = pd.read_csv(tmp_path / "candidates.csv")
    assert not cand["arch"].duplicated().any()
    assert {"generation", "arch", "ap", "ap_easy", "ap_medium", "ap_hard", "latency_ms", "params",
            "macs", "feasible", "baseline"} <= set(cand.columns)
    assert set(cand["generation"]) == {-1, 0, 1, 2}
    assert len(cand[cand["generation"] >= 0]) == 8 * 3
    base = cand[cand["baseline"]]
    assert len(base) == 1 and base["arch"].iloc[0] == str(space.baseline)
    pareto = pd.read_csv(tmp_path / "pareto.csv")
    assert len(pareto) and (pareto["latency_ms"] <= 4.0).all() and pareto["feasible"].all()
    assert nondominated(np.c_[-pareto["ap"], pareto["latency_ms"]]).all()
    feasible = cand[(cand["generation"] >= 0) & cand["feasible"]]
    F = np.c_[-feasible["ap"], feasible["latency_ms"]]
    assert nondominated(F).sum() == len(pareto)  # nothing feasible is missing from the front
    saved = yaml.safe_load((tmp_path / "search.yaml").read_text())
    assert from_dict(ArchSearchConfig, saved["search"]) == _config()
    assert saved["resolved"]["budget_ms"] == 4.0
    assert result.baseline["arch"] == str(space.baseline) and "baseline" in result.report()


def test_each_arch_is_evaluated_once(space, tmp_path):
    evaluator = Counting(space)
    result = _run(space, tmp_path, evaluator, generations=4)
    assert len(evaluator.archs) == len(set(evaluator.archs)) == len(result.candidates)
    assert evaluator.calls == 1 + 4  # the baseline, then one batch per generation


def test_same_seed_same_front(space, tmp_path):
    fronts = [_run(space, tmp_path / str(i), seed=seed).pareto
              for i, seed in enumerate((3, 3, 4))]
    pd.testing.assert_frame_equal(fronts[0], fronts[1])
    assert (tmp_path / "0" / "pareto.csv").read_bytes() == (tmp_path / "1" / "pareto.csv").read_bytes()
    a = pd.read_csv(tmp_path / "0" / "candidates.csv")["arch"]
    b = pd.read_csv(tmp_path / "2" / "candidates.csv")["arch"]
    assert set(a) != set(b)  # another seed explores other archs


def test_ap_metric_selects_the_evaluator_key(space, tmp_path):
    result = _run(space, tmp_path / "hard", ap_metric="hard", generations=2)
    assert result.ap_key == "ap_hard"
    assert np.allclose(-result.candidates["f0"], result.candidates["ap_hard"])
    with pytest.raises(KeyError, match="ap_median"):
        _run(space, tmp_path / "bad", ap_metric="median", generations=1)


def test_three_objectives(space, tmp_path):
    result = _run(space, tmp_path, objectives="ap_latency_params")
    assert np.array_equal(result.candidates["f2"], result.candidates["params"])
    pareto = result.pareto
    assert nondominated(np.c_[-pareto["ap"], pareto["latency_ms"], pareto["params"]]).all()


def test_mnas_reward_matches_the_formula(space, tmp_path):
    assert mnas_reward(0.8, 10.0, 10.0) == pytest.approx(0.8)
    assert mnas_reward(0.8, 5.0, 10.0) == pytest.approx(0.8 * 0.5 ** -0.07)
    assert mnas_reward(0.8, 20.0, 10.0, alpha=0.0, beta=-1.0) == pytest.approx(0.4)
    assert mnas_reward(0.8, 5.0, 10.0, alpha=0.0, beta=-1.0) == pytest.approx(0.8)
    result = _run(space, tmp_path, algorithm="mnas")
    cand = result.candidates
    by_hand = cand["ap"] * (cand["latency_ms"] / 4.0) ** -0.07
    assert np.allclose(cand["mnas_reward"], by_hand) and np.allclose(-cand["f0"], by_hand)
    assert "g0" not in cand  # a soft constraint: no pymoo constraint
    assert result.n_evaluated == 8 * 3


def test_random_matches_nsga2_evaluations_on_a_space(space, tmp_path):
    counts = []
    for algorithm in ("nsga2", "random", "mnas"):
        evaluator = Counting(space)
        result = _run(space, tmp_path / algorithm, evaluator, algorithm=algorithm)
        counts.append((len(evaluator.archs) - 1, result.n_evaluated))
    assert counts == [(24, 24)] * 3


# -- resume -----------------------------------------------------------------------------------
def test_resume_equals_an_uninterrupted_run(space, tmp_path):
    straight = Counting(space)
    _run(space, tmp_path / "straight", straight, generations=4)
    # stopped after 2 generations, then resumed to 4
    first, second = Counting(space), Counting(space)
    _run(space, tmp_path / "extended", first, generations=2)
    _run(space, tmp_path / "extended", second, resume=True, generations=4)
    # crashed inside generation 3 (calls: baseline, gen 0, 1, 2 -> the 4th call is gen 2), resumed
    crashing, after = Counting(space, crash_on_call=4), Counting(space)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(space, tmp_path / "crashed", crashing, generations=4)
    _run(space, tmp_path / "crashed", after, resume=True, generations=4)
    for run in ("extended", "crashed"):
        for name in ("pareto.csv", "candidates.csv"):
            assert (tmp_path / run / name).read_bytes() == (tmp_path / "straight" / name).read_bytes()
    # nothing evaluated twice across the interruption (the baseline included)
    assert sorted(first.archs + second.archs) == sorted(straight.archs)
    assert sorted(crashing.archs + after.archs) == sorted(straight.archs)
    # resuming a finished run evaluates nothing
    idle = Counting(space)
    _run(space, tmp_path / "straight", idle, resume=True, generations=4)
    assert idle.calls == 0


def test_resume_rejects_another_config(space, tmp_path):
    _run(space, tmp_path, generations=1)
    with pytest.raises(FileExistsError, match="resume"):
        _run(space, tmp_path, generations=1)
    with pytest.raises(ValueError, match="seed"):
        _run(space, tmp_path, resume=True, seed=1)
    with pytest.raises(ValueError, match="population"):
        _run(space, tmp_path, resume=True, population=10)
    other = Experiment.from_dict({"space": {**Experiment.from_yaml(TINY).raw["space"],
                                            "kernels": [3, 5]}}, base_dir=TINY.parent).space
    with pytest.raises(ValueError, match="space"):
        run_search(other, *fake_arch_evaluator(other, INPUT), _config(), tmp_path, input_size=INPUT,
                   resume=True)


def test_search_vs_random_script():
    path = TINY.parent / "search_vs_random.py"
    spec = importlib.util.spec_from_file_location("search_vs_random", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    report = module.main(["--evaluator", "analytic", "--seeds", "0", "1", "--population", "8",
                          "--generations", "3"])
    assert report["evaluations"] == {"nsga2": [24, 24], "random": [24, 24]}
    assert 0 < report["median"]["random"] <= report["true_hv"] + 1e-9
