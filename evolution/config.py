"""`SearchConfig`: the ``search:`` section of an experiment YAML (defaults live here).

    search:
      algorithm: nsga2          # nsga2 | mnas (single-objective GA on the MnasNet reward) | random
      population: 32
      generations: 20           # evaluations = population x generations
      seed: 0
      objectives: ap_latency    # ap_latency | ap_latency_params | ap_latency_flops
      ap_metric: mean           # evaluator key used as "ap": "hard" -> "ap_hard" (or the key itself);
                                # the supernet evaluator gives easy, medium, hard, mean, min50
      latency_budget: 12ms      # see evolution.budget.parse_budget; null = unconstrained

    >>> cfg = exp.section("search", SearchConfig)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("nsga2", "mnas", "random")
OBJECTIVES = ("ap_latency", "ap_latency_params", "ap_latency_flops")


@dataclass(frozen=True)
class SearchConfig:
    algorithm: str = "nsga2"
    population: int = 32
    generations: int = 20
    seed: int = 0
    objectives: str = "ap_latency"
    ap_metric: str = "ap"
    latency_budget: str | float | None = None  # "12ms", "0.012s" or a number of ms; None = no budget
    mnas_alpha: float = -0.07  # MnasNet reward exponent when latency <= budget
    mnas_beta: float = -0.07  # ... and when latency > budget (both -0.07: soft constraint)
    # hypervolume reference point in (-AP, latency ms); None = (0, budget) (or the slowest subnet).
    # (`search` on a generic problem: one value per objective.)
    hv_reference: tuple[float, ...] | None = None
    mutation_rate: float | None = None  # per-variable resample probability; None = 1 / n_var
    crossover_rate: float = 0.9  # probability a mating pair is crossed (else copied, then mutated)
    progress: bool = True  # tqdm bar per generation
    # AP estimate of a candidate (evolution.evaluator): inherited supernet weights, BN recalibrated
    eval_images: int = 100  # fixed val subset: the first N val images
    bn_batches: int = 4  # training batches for BatchNorm recalibration, per candidate
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"search.algorithm: {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.objectives not in OBJECTIVES:
            raise ValueError(f"search.objectives: {self.objectives!r} is not one of {OBJECTIVES}")
        if self.population < 2 or self.generations < 1:
            raise ValueError(f"search: population must be >= 2 and generations >= 1, got "
                             f"{self.population} and {self.generations}")
        if self.mutation_rate is not None and not 0 < self.mutation_rate <= 1:
            raise ValueError(f"search.mutation_rate must be in (0, 1], got {self.mutation_rate}")
        if not 0 <= self.crossover_rate <= 1:
            raise ValueError(f"search.crossover_rate must be in [0, 1], got {self.crossover_rate}")

    @property
    def n_evaluations(self) -> int:
        return self.population * self.generations
