"""Search settings (defaults live here): generic ones, and those of an architecture search.

`SearchConfig` is what the generic engine (`evolution.search`, `evolution.optimizer`) reads, for any
categorical problem. `ArchSearchConfig` adds what searching a `SearchSpace` for a face detector
needs (objectives, the AP key, the latency budget, how the supernet scores a candidate); it is the
``search:`` section of an experiment YAML:

    search:
      algorithm: nsga2          # nsga2 | mnas (single-objective GA on the MnasNet reward) | random
                                # | aging (regularized evolution) | rl (MnasNet's controller)
      surrogate: true           # nsga2 / aging: a GP pre-screens surrogate_pool x more offspring
                                # (ignored by mnas, random, rl)
      population: 16            # evaluations per generation; smaller beats larger at equal
      generations: 40           # evaluations (experiments/search_benchmark.py): 16 x 40 = 640
      seed: 0
      objectives: ap_latency    # ap_latency | ap_latency_params | ap_latency_macs
      ap_metric: mean           # evaluator key used as "ap": "hard" -> "ap_hard" (or the key itself);
                                # the supernet evaluator gives easy, medium, hard, mean, min50
      latency_budget: 12ms      # see evolution.budget.parse_budget; null = unconstrained

    >>> cfg = exp.section("search", ArchSearchConfig)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("nsga2", "mnas", "random", "aging", "rl")
OBJECTIVES = ("ap_latency", "ap_latency_params", "ap_latency_macs")


@dataclass(frozen=True)
class SearchConfig:
    algorithm: str = "nsga2"
    population: int = 16  # at equal evaluations, NSGA-II on categorical problems did better with
    generations: int = 40  # populations of 10-20 than 50 (experiments/search_benchmark.py)
    seed: int = 0
    # algorithm mnas (MnasNet's reward, objective 0 x (objective 1 / budget)^w): the exponent w
    mnas_alpha: float = -0.07  # when objective 1 (latency) <= budget
    mnas_beta: float = -0.07  # ... and when above it (both -0.07: a soft constraint)
    # hypervolume reference point, one value per objective (None: no hypervolume; an arch
    # search defaults to (0, budget) in (-AP, latency ms), or the slowest subnet)
    hv_reference: tuple[float, ...] | None = None
    mutation_rate: float | None = None  # per-variable resample probability; None = 1 / n_var
    crossover_rate: float = 0.9  # probability a mating pair is crossed (else copied, then mutated)
    # surrogate-assisted search (nsga2, aging; evolution.surrogate): a GP fitted on every evaluated
    # candidate ranks surrogate_pool x population offspring, the best population are evaluated.
    # On by default: experiments/search_benchmark.py measures it ahead of plain NSGA-II, aging, rl,
    # random and Optuna's NSGA-II / TPE at 100-500 evaluations. mnas, random and rl ignore it.
    surrogate: bool = True
    surrogate_pool: int = 10
    # aging evolution (AmoebaNet): archs alive, archs drawn per tournament, fitness (evolution.
    # strategies.scalar_fitness): "reward" (MnasNet) or "constraint" (feasible first, then AP)
    aging_population: int = 24
    aging_sample: int = 6
    aging_fitness: str = "reward"
    # rl (MnasNet's controller, REINFORCE): Adam step size on the logits, baseline moving average
    rl_learning_rate: float = 0.1
    rl_baseline_decay: float = 0.9
    progress: bool = True  # tqdm bar per generation

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"search.algorithm: {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.population < 2 or self.generations < 1:
            raise ValueError(f"search: population must be >= 2 and generations >= 1, got "
                             f"{self.population} and {self.generations}")
        if self.mutation_rate is not None and not 0 < self.mutation_rate <= 1:
            raise ValueError(f"search.mutation_rate must be in (0, 1], got {self.mutation_rate}")
        if not 0 <= self.crossover_rate <= 1:
            raise ValueError(f"search.crossover_rate must be in [0, 1], got {self.crossover_rate}")
        if self.surrogate_pool < 1:
            raise ValueError(f"search.surrogate_pool must be >= 1, got {self.surrogate_pool}")
        if not 2 <= self.aging_sample < self.aging_population:
            raise ValueError(f"search: aging_sample must be >= 2 and < aging_population, got "
                             f"{self.aging_sample} and {self.aging_population}")
        if self.aging_fitness not in ("reward", "constraint"):
            raise ValueError(f"search.aging_fitness: {self.aging_fitness!r} is not 'reward' or "
                             "'constraint'")
        if not (self.rl_learning_rate > 0 and 0 <= self.rl_baseline_decay < 1):
            raise ValueError("search: rl_learning_rate must be > 0 and rl_baseline_decay in [0, 1)")

    @property
    def n_evaluations(self) -> int:
        return self.population * self.generations


@dataclass(frozen=True)
class ArchSearchConfig(SearchConfig):
    """The ``search:`` section: the generic settings plus the architecture search's own."""

    objectives: str = "ap_latency"
    ap_metric: str = "ap"
    latency_budget: str | float | None = None  # "12ms", "0.012s" or a number of ms; None = no budget
    # AP estimate of a candidate (evolution.evaluator): inherited supernet weights, BN recalibrated
    eval_images: int = 100  # fixed val subset: the first N val images
    # BN recalibration per candidate: batches of 16 training images at the evaluation resolution.
    # experiments/bench_bn_recal.py: AP std over disjoint image sets 0.025 / 0.013 / 0.007 with
    # 16 / 64 / 128 images, against a median AP gap of 0.049 between neighbouring subnets
    bn_batches: int = 8
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objectives not in OBJECTIVES:
            raise ValueError(f"search.objectives: {self.objectives!r} is not one of {OBJECTIVES}")
        if self.eval_images < 1 or self.bn_batches < 1 or self.eval_batch_size < 1:
            raise ValueError("search: eval_images, bn_batches and eval_batch_size must be >= 1")
