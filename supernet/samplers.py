"""Path samplers for supernet training: strict fairness (FairNAS-style) and uniform (SPOS).

    >>> space = SearchSpace.from_yaml("experiments/space.yaml")
    >>> sampler = StrictFairSampler(space, seed=0)
    >>> paths = sampler.step()  # m archs: accumulate their gradients, then one optimizer step
    >>> len(paths), sampler.window
    (6, 6)
    >>> state = sampler.state_dict()  # save it with the checkpoint; load_state_dict(state) resumes

Both samplers count, per variable of the space (``space.variables`` names: ``s2.width``,
``s2.depth``, ``s2.l0.op``, ``s2.l0.kernel``, ``s2.l0.se``, ...), how often each choice was *active*
(a layer's op/kernel/SE count only in paths whose depth includes the layer): `counts`. Their
`state_dict()` is plain Python data (RNG state, decks, counts) so a resumed run continues the same
sequence exactly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from core.space import Arch, SearchSpace

_LAYER_FACTORS = ("op", "kernel", "se")


@dataclass(frozen=True)
class _StageVars:
    """Positions in the encoding of one searchable stage's variables (None = single choice)."""

    width: int | None
    depth: int | None
    depths: tuple[int, ...]
    layers: tuple[tuple[int, ...], ...]  # per layer: indices of its op/kernel/SE variables


class _Sampler:
    """Shared bookkeeping: variable layout, activation counts, RNG and state round trip."""

    def __init__(self, space: SearchSpace, seed: int):
        self.space, self.seed = space, seed
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        index = {v.name: i for i, v in enumerate(space.variables)}
        self._stages = []
        for st in space.searchable_stages:
            layers = tuple(tuple(index[f"s{st.index}.l{j}.{f}"] for f in _LAYER_FACTORS
                                 if f"s{st.index}.l{j}.{f}" in index) for j in range(st.max_depth))
            self._stages.append(_StageVars(index.get(f"s{st.index}.width"),
                                           index.get(f"s{st.index}.depth"), st.depths, layers))
        self.counts: dict[str, np.ndarray] = {v.name: np.zeros(v.n_choices, dtype=np.int64)
                                              for v in space.variables}
        self._largest = space.encode(space.largest())
        self.forced: dict[int, int] = {}  # variable index -> choice (factors not yet elastic)
        self.pending: list[str] = []  # paths of the last step not yet handed out by next_path

    def restrict(self, elastic: frozenset[str] | None) -> None:
        """Sample only the factors in `elastic` (``op``, ``kernel``, ``se``, ``width``, ``depth``);
        every other variable takes its largest choice (progressive shrinking, OFA). None = all.

        Forced variables draw nothing from the RNG or decks, so strict fairness still holds
        exactly among the choices of the elastic factors.
        """
        self.forced = {} if elastic is None else {
            i: int(self._largest[i]) for i, v in enumerate(self.space.variables)
            if v.name.rsplit(".", 1)[-1] not in elastic}

    def next_path(self) -> Arch:
        """One path at a time: the paths of `step()` handed out in order (each on its own batch)."""
        if not self.pending:
            self.pending = [str(a) for a in self.step()]
        return self.space.parse(self.pending.pop(0))

    def _record(self, x: np.ndarray) -> None:
        """Count the active choices of encoding `x`."""
        names = self.space.variables
        for sv in self._stages:
            depth = sv.depths[x[sv.depth]] if sv.depth is not None else sv.depths[0]
            active = [i for i in (sv.width, sv.depth) if i is not None]
            active += [i for layer in sv.layers[:depth] for i in layer]
            for i in active:
                self.counts[names[i].name][x[i]] += 1

    def step(self) -> list[Arch]:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """Plain Python data (JSON-serializable): RNG state, steps, counts (+ decks)."""
        return {"kind": type(self).__name__, "space": self.space.fingerprint(), "seed": self.seed,
                "steps": self.steps, "rng": copy.deepcopy(self.rng.bit_generator.state),
                "counts": {k: v.tolist() for k, v in self.counts.items()},
                "pending": list(self.pending), **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is from a "
                             f"{state.get('kind')!r} sampler")
        if state.get("space") != self.space.fingerprint():
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is from another search "
                             f"space (fingerprint {state.get('space')}, this one "
                             f"{self.space.fingerprint()})")
        self.seed, self.steps = state["seed"], state["steps"]
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.counts = {k: np.array(v, dtype=np.int64) for k, v in state["counts"].items()}
        self.pending = list(state.get("pending", []))
        self._load_extra_state(state)


class UniformSampler(_Sampler):
    """SPOS: one path per step, every variable uniform (the same draw as `space.sample`)."""

    m = 1

    def step(self) -> list[Arch]:
        x = self.rng.integers(0, self.space.choices)
        for i, choice in self.forced.items():
            x[i] = choice
        self._record(x)
        self.steps += 1
        return [self.space.decode(x)]


class StrictFairSampler(_Sampler):
    """Strict fairness per factor: every choice of a layer is trained equally often.

    One step returns m paths, m = lcm of the choice counts of all factors (op, kernel, SE per layer;
    width, depth per stage); e.g. 6 for 3 ops x 3 kernels x 2 SE, 3 widths, 3 depths. Training costs
    **m forward/backward passes per optimizer step** (gradients of the m paths are accumulated,
    then one update), i.e. m times a SPOS step.

    Every factor has a *deck*: a shuffled permutation of its choices, drawn from in order and
    refilled with a new shuffle when empty. Width and depth decks are drawn once per path, so each
    width/depth choice is active exactly m/n times in every step. A layer's op/kernel/SE decks are
    drawn only in paths whose depth includes the layer:

    * a layer below the stage's minimum depth (always present) draws m times per step, so each of
      its n choices is active exactly m/n times **in every step**;
    * an optional layer j is present in c_j = m * #{depths > j} / n_depths paths of every step
      (exact, by the depth deck), so a factor with n choices is exactly balanced after each
      multiple of ``n / gcd(n, c_j)`` steps (the deck is then back at a permutation boundary), and
      within every window of that many steps starting at such a multiple. `windows` maps each
      variable to its window in steps, `window` is their lcm: the counts of *all* choices are
      equal after every multiple of `window` steps. For depths {1, 2, 3} (m = 6): layer 1 is in 4
      paths per step -> 3 ops/kernels balance every 3 steps, SE every step; layer 2 (2 paths) ->
      also 3; for depths {1, 2}: layer 1 in 3 paths -> ops/kernels every step, SE every 2 steps. The
      default and tiny spaces have both stage kinds, so `window` = 6 steps there.

    Stages with a single width or depth choice have no deck (nothing to balance).
    """

    def __init__(self, space: SearchSpace, seed: int):
        super().__init__(space, seed)
        n = [v.n_choices for v in space.variables]
        self.m = math.lcm(*n) if n else 1
        self.windows: dict[str, int] = {}
        for sv in self._stages:
            n_d = len(sv.depths)
            for j, layer in enumerate(sv.layers):
                present = self.m * sum(d > j for d in sv.depths) // n_d  # paths per step with layer j
                for i in layer:
                    k = space.variables[i].n_choices
                    self.windows[space.variables[i].name] = k // math.gcd(k, present)
            for i in (sv.width, sv.depth):
                if i is not None:
                    self.windows[space.variables[i].name] = 1
        self.window = math.lcm(*self.windows.values()) if self.windows else 1
        self.decks: dict[str, list[int]] = {v.name: [] for v in space.variables}

    def _draw(self, i: int) -> int:
        if i in self.forced:
            return self.forced[i]
        var = self.space.variables[i]
        deck = self.decks[var.name]
        if not deck:
            deck.extend(self.rng.permutation(var.n_choices).tolist())
        return deck.pop(0)

    def step(self) -> list[Arch]:
        paths = []
        for _ in range(self.m):
            x = np.zeros(self.space.n_var, dtype=np.int64)  # layers past the depth stay 0
            for sv in self._stages:
                for i in (sv.width, sv.depth):
                    if i is not None:
                        x[i] = self._draw(i)
                depth = sv.depths[x[sv.depth]] if sv.depth is not None else sv.depths[0]
                for layer in sv.layers[:depth]:
                    for i in layer:
                        x[i] = self._draw(i)
            self._record(x)
            paths.append(self.space.decode(x))
        self.steps += 1
        return paths

    def _extra_state(self) -> dict:
        return {"decks": {k: list(v) for k, v in self.decks.items()}}

    def _load_extra_state(self, state: dict) -> None:
        self.decks = {k: list(v) for k, v in state["decks"].items()}


SHRINK_ORDER = (("kernel",), ("depth",), ("width",), ("op", "se"))  # OFA's order, then op and SE


class PathSchedule:
    """Which paths each optimizer step trains: warm start, progressive shrinking, sandwich.

    Over a run of `total` steps (fractions of it):

    * ``[0, warm)``: the largest path only (OFA's full network first). With `ElasticBlock`
      nesting every smaller path is a slice of it, so all of them start from trained weights
      instead of each op learning from scratch on 1/n of the steps;
    * ``[warm, warm + shrink)``: progressive shrinking: the factors of `SHRINK_ORDER` become
      elastic one group at a time (kernel, then + depth, + width, + op and SE), in equal parts;
      the others stay at their largest choice;
    * then every factor is sampled by `sampler`.

    Each step trains ``sampler.step()`` (all m strict-fair paths on one batch, one update), or
    with `own_batches` one path of it (the m paths on m batches with m updates, so strict fairness
    gets as many updates as uniform sampling at equal compute). `sandwich` (BigNAS) trains the
    largest and the smallest path of the current phase plus two sampled ones on each batch; the
    largest comes first so it can be the teacher of in-place distillation (`train.distill`).
    Stateless apart from `sampler`, whose state (RNG, decks, pending paths) resumes a run exactly.
    """

    def __init__(self, sampler: _Sampler, total: int, warm: float = 0.0, shrink: float = 0.0,
                 sandwich: bool = False, own_batches: bool = False):
        if not (0 <= warm and 0 <= shrink and warm + shrink <= 1):
            raise ValueError(f"need 0 <= warm, shrink and warm + shrink <= 1, got {warm}, {shrink}")
        self.sampler, self.total = sampler, max(1, total)
        self.warm, self.shrink = warm, shrink
        self.sandwich, self.own_batches = sandwich, own_batches
        space = sampler.space
        self._largest, self._smallest = space.largest(), space.encode(space.smallest())

    def elastic(self, step: int) -> frozenset[str] | None:
        """The factors sampled at `step` (empty: the largest path; None: every factor)."""
        p = step / self.total
        if p < self.warm:
            return frozenset()
        if p < self.warm + self.shrink:
            k = int((p - self.warm) / self.shrink * len(SHRINK_ORDER))
            return frozenset(f for group in SHRINK_ORDER[:k + 1] for f in group)
        return None

    def _smallest_now(self) -> Arch:
        x = self._smallest.copy()
        for i, choice in self.sampler.forced.items():
            x[i] = choice
        return self.sampler.space.decode(x)

    def paths(self, step: int) -> list[Arch]:
        elastic = self.elastic(step)
        if elastic is not None and not elastic:
            return [self._largest]
        self.sampler.restrict(elastic)
        if self.sandwich:
            return [self._largest, self._smallest_now(), self.sampler.next_path(),
                    self.sampler.next_path()]
        if self.own_batches:
            return [self.sampler.next_path()]
        return self.sampler.step()
