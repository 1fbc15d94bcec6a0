"""Sample efficiency of the search strategies on problems whose Pareto front is known exactly.

    python experiments/search_benchmark.py --out runs/search_benchmark          # 20 seeds, <= 500 evals
    python experiments/search_benchmark.py --out runs/sb_quick --quick           # 3 seeds, <= 100 evals
    python experiments/search_benchmark.py --out runs/sb --strategies nsga2 random --seeds 5

Problems (built here from a fixed seed; no data files). Each has F = [-accuracy, cost], a budget
G = cost - budget <= 0, and is enumerated once for its true feasible front:

* ``nk5x6``: 6 variables x 5 choices (15,625 archs). Accuracy = a saturating function of an
  additive "capacity" plus an NK landscape (each variable's contribution depends on its own choice
  and on 2 other variables' choices: epistasis); cost additive, with 3 expensive choices.
* ``net3x9``: 9 variables x 3 choices (19,683 archs). Accuracy = capacity plus a small random tanh
  network of the one-hot encoding (interactions of every order); cost additive, 3 expensive choices.
* ``tiny``: the facenas tiny space (experiments/tiny.yaml) with the analytic AP proxy and latency of
  `evolution.fake_arch_evaluator`. The whole space (3e15 archs) cannot be enumerated, so it is
  restricted: stage widths and depths, the op of stage 2's first layer, the kernel of stage 3's,
  and SE of stages 2 and 4 (31,104 archs) are searched, every other variable stays at its first choice.

Strategies: the engine's nsga2, nsga2+surrogate, aging, rl and random (`evolution.optimize`), and
Optuna's NSGAIISampler and multivariate TPESampler (optional: ``pip install -e .[bench]``). Every
strategy is charged for distinct evaluations only: Optuna trials that repeat an evaluated arch are
answered from a cache for free, up to `OPTUNA_MAX_TRIALS` x the budget. Each run goes to the largest
budget; the metrics at a smaller budget n are those of its first n distinct evaluations (all
strategies are anytime: none looks at the total budget).

Metrics per run and budget (the true front has cost levels c_1 < ... < c_m, accuracies a_k):

* regret = mean_k (a_k - best accuracy evaluated at cost <= c_k), where "nothing evaluated at that
  cost" counts as the worst accuracy of the space;
* front = share of the true front's archs evaluated;
* hv = hypervolume of the evaluated feasible front / the true front's, reference point (worst
  accuracy of the space, budget);
* gap = best accuracy under the budget minus the best evaluated under it (the regret at the
  budget alone: what the scalarised aging and rl aim at).

Writes ``results.jsonl`` (one line per run; a rerun skips finished runs), ``table.md`` (median
[quartiles] over seeds) and ``regret.png`` to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the surrogate's small matrices: 1 thread is fastest
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evolution import SearchConfig, optimize  # noqa: E402
from evolution.optimizer import EncodedProblem  # noqa: E402
from evolution.pareto import hypervolume  # noqa: E402

STRATEGIES = ("nsga2", "nsga2+surrogate", "aging", "rl", "random", "optuna-nsga2", "optuna-tpe")
BUDGETS = (100, 200, 500)
CURVE = (25, 50, 75, 100, 150, 200, 300, 400, 500)  # plot points (<= the largest budget)
OPTUNA_MAX_TRIALS = 10  # x budget: Optuna's trials (repeats included) before it is stopped
POPULATION = SearchConfig().population  # the engine strategies' evaluations per generation


@dataclass
class Problem:
    """A categorical problem given as a full table: accuracy and cost of every vector."""

    name: str
    choices: np.ndarray
    accuracy: np.ndarray  # (prod(choices),) by mixed-radix index of the vector
    cost: np.ndarray
    budget: float
    note: str = ""

    def index(self, X: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(np.asarray(X, dtype=np.int64).T, tuple(self.choices))

    def __call__(self, X: np.ndarray):
        i = self.index(np.atleast_2d(X))
        acc, cost = self.accuracy[i], self.cost[i]
        return np.c_[-acc, cost], (cost - self.budget)[:, None]

    def true_front(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the true feasible front sorted by cost, and their (cost, accuracy).

        Two objectives: by increasing cost, an arch is on the front when it is the most accurate
        of its cost and more accurate than every cheaper arch (O(n log n), unlike a pairwise test)."""
        ok = np.flatnonzero(self.cost <= self.budget)
        ok = ok[np.lexsort((-self.accuracy[ok], self.cost[ok]))]
        cost, acc = self.cost[ok], self.accuracy[ok]
        first = np.r_[True, cost[1:] != cost[:-1]]  # first (most accurate) row of each cost
        best_of_cost = np.maximum.reduceat(acc, np.flatnonzero(first))[np.cumsum(first) - 1]
        cheaper = np.r_[-np.inf, np.maximum.accumulate(acc)[:-1]]
        cheaper = np.maximum.accumulate(np.where(first, cheaper, -np.inf))  # best at lower cost
        front = ok[(acc == best_of_cost) & (acc > cheaper)]
        return front, np.c_[self.cost[front], self.accuracy[front]]

    @property
    def worst(self) -> float:
        return float(self.accuracy.min())


def _grid(choices) -> np.ndarray:
    return np.array(list(itertools.product(*[range(c) for c in choices])), dtype=np.int64)


def _capacity_and_cost(rng, choices, n_expensive: int = 3):
    """Per-choice capacity (accuracy drive) and cost, choices in random order (categories, not
    ordinals); `n_expensive` choices cost about a third of the largest arch each (like SE on a
    device that runs it slowly) for a small capacity gain."""
    capacity, cost = [], []
    for c in choices:
        level = rng.permutation(c) / (c - 1)
        weight, price = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
        capacity.append(weight * level + rng.normal(0, 0.05, c))
        cost.append(price * level ** 1.3)
    total = sum(float(c.max()) for c in cost)
    for _ in range(n_expensive):
        i = rng.integers(len(choices))
        v = rng.integers(choices[i])
        cost[i][v] += total / 3
        capacity[i][v] += 0.1
    return capacity, cost


def _additive(tables, X) -> np.ndarray:
    return sum(t[X[:, i]] for i, t in enumerate(tables))


def _accuracy(cap: np.ndarray, interaction: np.ndarray) -> np.ndarray:
    """Accuracy-like: saturating in capacity (diminishing returns) plus an interaction term."""
    cap = (cap - cap.min()) / np.ptp(cap)
    return 0.5 + 0.3 * (1 - np.exp(-2.5 * cap)) + interaction


def _budget(cost: np.ndarray, fraction: float = 0.55) -> float:
    return float(cost.min() + fraction * np.ptp(cost))


def make_nk(seed: int = 1, n: int = 6, c: int = 5, k: int = 2) -> Problem:
    rng = np.random.default_rng(seed)
    choices = np.full(n, c)
    X = _grid(choices)
    capacity, cost = _capacity_and_cost(rng, choices)
    nk = np.zeros(len(X))
    for i in range(n):  # variable i's contribution depends on itself and k other variables
        links = [i] + sorted(rng.choice([j for j in range(n) if j != i], k, replace=False).tolist())
        table = rng.random((c,) * (k + 1))
        nk += table[tuple(X[:, links].T)] / n
    cost_all = _additive(cost, X)
    acc = _accuracy(_additive(capacity, X), 0.25 * (nk - nk.mean()))
    return Problem("nk5x6", choices, acc, cost_all, _budget(cost_all),
                   f"5^6 = 15,625 archs, NK landscape K={k}, 3 expensive choices")


def make_net(seed: int = 2, n: int = 9, c: int = 3, hidden: int = 16) -> Problem:
    rng = np.random.default_rng(seed)
    choices = np.full(n, c)
    X = _grid(choices)
    capacity, cost = _capacity_and_cost(rng, choices)
    onehot = np.eye(c)[X].reshape(len(X), n * c)
    W1, b1, w2 = rng.normal(0, 1, (n * c, hidden)), rng.normal(0, 1, hidden), rng.normal(0, 1, hidden)
    net = np.tanh(onehot @ W1 + b1) @ w2
    cost_all = _additive(cost, X)
    acc = _accuracy(_additive(capacity, X), 0.05 * (net - net.mean()) / net.std())
    return Problem("net3x9", choices, acc, cost_all, _budget(cost_all),
                   "3^9 = 19,683 archs, random tanh network of the one-hot encoding, 3 expensive choices")


TINY_VARIABLES = ("s1.width", "s2.width", "s3.width", "s4.width", "s1.depth", "s2.depth",
                  "s3.depth", "s4.depth", "s2.l0.op", "s3.l0.kernel", "s2.l0.se", "s4.l0.se")


def make_tiny() -> Problem:
    from evolution import fake_arch_evaluator
    from core.experiment import Experiment

    space = Experiment.from_yaml(Path(__file__).parent / "tiny.yaml").space
    names = [v.name for v in space.variables]
    free = [names.index(v) for v in TINY_VARIABLES]
    choices = space.choices[free]
    X = _grid(choices)
    full = np.zeros((len(X), space.n_var), dtype=np.int64)
    full[:, free] = X  # first layers and stage settings are never don't-care: no canonicalisation
    archs = [space.decode(x) for x in full]
    evaluate, latency = fake_arch_evaluator(space)
    acc = np.array([r["ap"] for r in evaluate(archs)])
    cost = np.asarray(latency(archs), dtype=float)
    return Problem("tiny", choices, acc, cost, _budget(cost, 0.5),
                   f"facenas tiny space restricted to {len(TINY_VARIABLES)} variables "
                   f"({len(X):,} archs), analytic AP proxy and latency")


PROBLEMS = {"nk5x6": make_nk, "net3x9": make_net, "tiny": make_tiny}


# -- strategies --------------------------------------------------------------------------------
def engine_config(strategy: str, seed: int, budget: int) -> SearchConfig:
    algorithm, _, extra = strategy.partition("+")
    return SearchConfig(algorithm=algorithm, surrogate=extra == "surrogate", population=POPULATION,
                        generations=-(-budget // POPULATION), seed=seed, progress=False)


def run_engine(problem: Problem, strategy: str, seed: int, budget: int) -> np.ndarray:
    """Distinct vectors in evaluation order (and the surrogate's taus, if any)."""
    config = engine_config(strategy, seed, budget)
    encoded = EncodedProblem(problem.choices, n_obj=2, n_constr=1)
    algorithm, archive = optimize(encoded, problem, config)
    X = np.array([[int(v) for v in k.split("-")] for k in archive.keys()], dtype=np.int64)
    surrogate = getattr(algorithm, "surrogate", None)
    taus = [r["kendall_tau"] for r in surrogate.log] if surrogate is not None else []
    return X[:budget], taus


def run_optuna(problem: Problem, strategy: str, seed: int, budget: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if strategy == "optuna-tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    cache: dict[tuple, tuple] = {}
    for _ in range(OPTUNA_MAX_TRIALS * budget):
        if len(cache) >= budget:
            break
        trial = study.ask()
        x = tuple(trial.suggest_categorical(f"x{i}", list(range(int(c))))
                  for i, c in enumerate(problem.choices))
        if x not in cache:
            F, G = problem(np.array([x]))
            cache[x] = (float(-F[0, 0]), float(F[0, 1]), float(G[0, 0]))
        acc, cost, g = cache[x]
        trial.set_constraint("budget", g)  # both samplers treat constraints <= 0 as feasible
        study.tell(trial, [acc, cost])
    return np.array(list(cache), dtype=np.int64).reshape(-1, len(problem.choices)), []


# -- metrics -------------------------------------------------------------------------------------
def metrics(problem: Problem, front: np.ndarray, levels: np.ndarray, true_hv: float,
            X: np.ndarray) -> dict:
    i = problem.index(X) if len(X) else np.zeros(0, dtype=np.int64)
    acc, cost = problem.accuracy[i], problem.cost[i]
    ok = cost <= problem.budget
    found = np.array([acc[cost <= c].max() if np.any(cost <= c) else problem.worst
                      for c in levels[:, 0]])
    hv = hypervolume(np.c_[-acc[ok], cost[ok]], (-problem.worst, problem.budget))
    return {"regret": float(np.mean(levels[:, 1] - found)),
            "front": float(np.isin(front, i).mean()), "hv": hv / true_hv,
            "gap": float(levels[-1, 1] - found[-1])}


def run_one(problem: Problem, strategy: str, seed: int, budget: int, truth) -> dict:
    start = time.perf_counter()
    runner = run_optuna if strategy.startswith("optuna") else run_engine
    X, taus = runner(problem, strategy, seed, budget)
    seconds = time.perf_counter() - start
    points = sorted({n for n in (*CURVE, *BUDGETS) if n <= budget})
    return {"problem": problem.name, "strategy": strategy, "seed": seed, "seconds": seconds,
            "distinct": len(X), "surrogate_tau": float(np.nanmedian(taus)) if taus else None,
            "at": {str(n): metrics(problem, *truth, X[:n]) for n in points}}


# -- report --------------------------------------------------------------------------------------
def _quartiles(values) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return float(med), float(q1), float(q3)


def summarize(rows: list[dict], budgets, strategies) -> dict:
    out: dict = {}
    for r in rows:
        for n, m in r["at"].items():
            for key, value in m.items():
                out.setdefault((r["problem"], int(n), r["strategy"], key), []).append(value)
    return {k: _quartiles(v) for k, v in out.items()}


def write_table(summary: dict, problems, budgets, strategies, path: Path, notes: list[str]) -> str:
    lines = ["| problem | evals | strategy | regret | front evaluated | HV ratio | gap at budget |",
             "|---|---|---|---|---|---|---|"]
    for p in problems:
        for n in budgets:
            for s in strategies:
                if (p.name, n, s, "regret") not in summary:
                    continue
                cells = []
                for key, fmt in (("regret", "{:.4f}"), ("front", "{:.0%}"), ("hv", "{:.3f}"),
                                 ("gap", "{:.4f}")):
                    med, q1, q3 = summary[(p.name, n, s, key)]
                    cells.append(f"{fmt.format(med)} [{fmt.format(q1)}, {fmt.format(q3)}]")
                lines.append(f"| {p.name} | {n} | {s} | " + " | ".join(cells) + " |")
    text = "\n".join(notes + ["", "Median [25%, 75%] over seeds.", ""] + lines) + "\n"
    path.write_text(text)
    return text


def plot(summary: dict, problems, strategies, path: Path, max_budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, p in zip(axes[0], problems):
        for s in strategies:
            pts = [(n, *summary[(p.name, n, s, "regret")]) for n in CURVE
                   if n <= max_budget and (p.name, n, s, "regret") in summary]
            if not pts:
                continue
            n, med, q1, q3 = np.array(pts).T
            ax.plot(n, med, marker="o", ms=3, label=s)
            ax.fill_between(n, q1, q3, alpha=0.15)
        ax.set(title=p.name, xlabel="distinct evaluations", ylabel="regret (median, IQR)", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (results.jsonl, table.md, regret.png)")
    p.add_argument("--quick", action="store_true", help="3 seeds, budgets 50 and 100")
    p.add_argument("--seeds", type=int, help="number of seeds (default 20; 3 with --quick)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    p.add_argument("--population", type=int, default=POPULATION,
                   help="evaluations per generation of the engine strategies")
    return p


def main(argv: list[str] | None = None) -> dict:
    global POPULATION
    args = get_args_parser().parse_args(argv)
    POPULATION = args.population
    budgets = (50, 100) if args.quick else BUDGETS
    seeds = range(args.seeds or (3 if args.quick else 20))
    strategies = [s for s in args.strategies
                  if not s.startswith("optuna") or _has_optuna(args.strategies)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    problems = [PROBLEMS[name]() for name in args.problems]
    results = out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {(r["problem"], r["strategy"], r["seed"]) for r in rows if r["distinct"] >= max(budgets)
            and r.get("population") == POPULATION}
    rows = [r for r in rows if (r["problem"], r["strategy"], r["seed"]) in done]
    notes = []
    for p in problems:
        truth = p.true_front()
        true_hv = hypervolume(np.c_[-truth[1][:, 1], truth[1][:, 0]], (-p.worst, p.budget))
        notes.append(f"- **{p.name}**: {p.note}; budget {p.budget:.3g}, true front "
                     f"{len(truth[0])} archs")
        for s in strategies:
            for seed in seeds:
                if (p.name, s, seed) in done:
                    continue
                row = run_one(p, s, seed, max(budgets), (truth[0], truth[1], true_hv))
                row["population"] = POPULATION
                rows.append(row)
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    rows = [r for r in rows if r["problem"] in args.problems and r["strategy"] in strategies]
    summary = summarize(rows, budgets, strategies)
    table = write_table(summary, problems, budgets, strategies, out / "table.md", notes)
    plot(summary, problems, strategies, out / "regret.png", max(budgets))
    seconds = time.perf_counter() - start
    print(table)
    print(f"{len(rows)} runs; wall time {seconds:.0f} s (this invocation); written to {out}")
    return {"summary": summary, "rows": rows, "seconds": seconds}


def _has_optuna(requested) -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        if any(s.startswith("optuna") for s in requested):
            print("optuna is not installed (pip install -e .[bench]): skipping the Optuna samplers")
        return False
    return True


if __name__ == "__main__":
    main()
