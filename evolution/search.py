"""Run a search into a run directory: `search` (any categorical problem) and `run_search` (archs).

Run directory (every file written atomically):

    candidates.csv   every evaluated candidate (the archive; rewritten after every generation)
    pareto.csv       the non-dominated feasible candidates, by latency
    pareto.png       (run_search) AP vs latency: candidates by generation, front, budget, baseline
    search.yaml      the resolved SearchConfig + derived values (budget_ms, hv_reference, ...)
    checkpoint.json  the algorithm's state after the last completed generation (for resume=True)
    surrogate.csv    (surrogate: true) per generation: Kendall tau of the surrogate's predicted AP
                     against the real AP of the candidates it chose

    >>> result = run_search(space, evaluate, latency, config, "runs/search", input_size=(320, 320),
    ...                     baseline=space.baseline)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from evolution.archive import Archive
from evolution.budget import check_budget, parse_budget
from evolution.config import ArchSearchConfig, SearchConfig
from evolution.optimizer import (CANDIDATES, CHECKPOINT, LEGACY_CHECKPOINT, SURROGATE_LOG, EncodedProblem,
                              ObjectiveFn, optimize, vector_key)
from evolution.operators import identity
from evolution.pareto import feasible_front, hypervolume, nondominated
from evolution.plots import plot_pareto
from evolution.problem import ArchObjectives, Evaluate, Latency, resolve_ap_key
from core.config import to_dict
from core.io import atomic_write_csv, atomic_write_text
from core.space import Arch, SearchSpace


@dataclass
class SearchResult:
    out_dir: Path | None
    candidates: pd.DataFrame  # every evaluated candidate (+ the baseline row, generation -1)
    pareto: pd.DataFrame  # non-dominated feasible searched candidates, by latency
    hypervolume: float  # of the front w.r.t. hv_reference (nan without a reference)
    hv_reference: tuple[float, ...] | None
    baseline: dict | None = None  # the baseline's row, evaluated under the same protocol
    budget_ms: float | None = None
    ap_key: str | None = None  # the evaluator key searched as AP (run_search only)

    @property
    def n_evaluated(self) -> int:
        """Distinct candidates the search evaluated (the baseline-only row excluded)."""
        return int((self.candidates["generation"] >= 0).sum())

    def report(self) -> str:
        """The front beside the baseline, as text for logs."""
        cols = [c for c in ("arch", self.ap_key, "latency_ms", "params", "macs") if c]
        lines = [f"{len(self.pareto)} Pareto-optimal of {self.n_evaluated} evaluated; "
                 f"hypervolume {self.hypervolume:.4f} (reference {self.hv_reference})"]
        lines.append(self.pareto[[c for c in cols if c in self.pareto]].to_string(index=False))
        if self.baseline is not None:
            lines.append("baseline: " + ", ".join(f"{c}={self.baseline[c]}" for c in cols))
        return "\n".join(lines)


SEARCH_FILES = (CANDIDATES, "pareto.csv", "pareto.png", "search.yaml", CHECKPOINT, LEGACY_CHECKPOINT,
                SURROGATE_LOG)


def _open_run(out_dir: str | Path, resume: bool, key_name: str,
              overwrite: bool = False) -> tuple[Path, Archive]:
    out = Path(out_dir)
    held = [n for n in (CHECKPOINT, LEGACY_CHECKPOINT, CANDIDATES) if (out / n).exists()]
    if overwrite:
        for name in SEARCH_FILES:
            (out / name).unlink(missing_ok=True)
    elif held and not resume:
        raise FileExistsError(f"{out} already holds a search ({held[0]}): pass resume=True "
                              "(--resume) to continue it or overwrite=True (--overwrite) to replace "
                              "it, or choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / CANDIDATES).exists():
        return out, Archive.load(out / CANDIDATES, key_name)
    return out, Archive(key_name)


def _write_yaml(path: Path, config: SearchConfig, **resolved) -> None:
    data = {"search": to_dict(config), "resolved": to_dict(resolved)}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def search(choices, objective_fn: ObjectiveFn, config: SearchConfig, out_dir: str | Path | None = None,
           *, n_obj: int, n_constr: int = 0, canonical: Callable = identity, key: Callable = vector_key,
           hv_reference=None, resume: bool = False, overwrite: bool = False) -> SearchResult:
    """NSGA-II / GA / random search (``config.algorithm``) of any categorical problem.

    `choices`: the number of choices of each variable. `objective_fn(X)` gets an (n, n_var) int
    array of choice indices (each row evaluated once per search) and returns ``(F, G)`` or
    ``(F, G, records)``: F (n, `n_obj`) objectives, all minimised; G (n, `n_constr`) constraints,
    feasible when <= 0, or None without constraints; records, n dicts whose keys become extra
    columns of the candidates table. `canonical` maps a row to its canonical form (rows that
    encode the same solution), `key` a row to its archive key. `hv_reference`: one value per
    objective (else ``config.hv_reference``; None: no hypervolume). With `out_dir` the run is
    resumable (candidates.csv, pareto.csv, search.yaml, checkpoint.json); None keeps it in memory.
    """
    ref = hv_reference if hv_reference is not None else config.hv_reference
    if ref is not None and len(ref) != n_obj:  # silently dropping it gave a NaN hypervolume
        raise ValueError(f"hv_reference {tuple(ref)} has {len(ref)} values; the problem has {n_obj} "
                         "objectives (one reference value per objective)")
    if out_dir is None:  # in memory: the loop's files live in a folder removed afterwards
        if resume:
            raise ValueError("resume=True needs the out_dir of the search to continue")
        with tempfile.TemporaryDirectory(prefix="facenas-search-") as tmp:
            result = search(choices, objective_fn, config, tmp, n_obj=n_obj, n_constr=n_constr,
                            canonical=canonical, key=key, hv_reference=ref)
        return replace(result, out_dir=None)
    out, archive = _open_run(out_dir, resume, "x", overwrite)
    choices = np.asarray(choices, dtype=np.int64)
    problem = EncodedProblem(choices, n_obj, n_constr, canonical, key)
    fingerprint = {"choices": choices.tolist(), "n_obj": n_obj, "n_constr": n_constr,
                   **_search_fingerprint(config)}
    ref = tuple(map(float, ref)) if ref is not None else None
    _write_yaml(out / "search.yaml", config, n_var=len(choices), hv_reference=ref)
    summary = functools.partial(_vector_summary, ref=ref)
    optimize(problem, objective_fn, config, archive, run_dir=out, fingerprint=fingerprint,
             resume=resume, summary=summary)
    frame = archive.frame()
    F, G = archive.objectives(archive.keys())
    pareto = frame.iloc[feasible_front(F, G)].sort_values("f0", kind="stable")
    atomic_write_csv(frame, out / CANDIDATES)
    atomic_write_csv(pareto, out / "pareto.csv")
    hv = hypervolume(F[feasible_front(F, G)], ref) if ref is not None else float("nan")
    return SearchResult(out, frame, pareto, hv, ref)


def _search_fingerprint(config: SearchConfig) -> dict:
    """What a resumed run must share with the checkpoint (generations may grow; progress may change;
    the budget is compared in ms by `run_search`)."""
    skip = ("generations", "progress", "hv_reference", "latency_budget")
    return {k: v for k, v in to_dict(config).items() if k not in skip}


def _vector_summary(archive: Archive, ref) -> dict:
    F, G = archive.objectives(archive.keys())
    front = feasible_front(F, G)
    out = {"evals": len(archive), "best_f0": float(F[front, 0].min()) if len(front) else float("nan")}
    if ref is not None:
        out["hv"] = round(hypervolume(F[front], ref), 4)
    return out


def run_search(space: SearchSpace, evaluate: Evaluate, latency: Latency, config: SearchConfig,
               out_dir: str | Path, *, input_size: tuple[int, int], baseline: Arch | str | None = None,
               resume: bool = False, overwrite: bool = False,
               record: dict | None = None) -> SearchResult:
    """Search `space` for archs maximising AP (`evaluate`) and minimising latency (`latency`).

    An `out_dir` already holding a search needs `resume` (same config) or `overwrite`. A plain
    `SearchConfig` gets the `ArchSearchConfig` defaults for the architecture settings."""
    if not isinstance(config, ArchSearchConfig):
        config = ArchSearchConfig(**to_dict(config))
    out, archive = _open_run(out_dir, resume, "arch", overwrite)
    budget_ms, ref = _resolve_budget(space, latency, config)
    objectives = ArchObjectives(space, evaluate, latency, config, budget_ms, input_size)
    if len(archive):
        objectives.ap_key = resolve_ap_key(config.ap_metric, archive[archive.keys()[0]])
    problem = EncodedProblem(space.choices, objectives.n_obj, objectives.n_constr, space.canonical,
                             functools.partial(_arch_key, space))
    fingerprint = {"space": space.fingerprint(), "budget_ms": budget_ms,
                   "input_size": list(input_size), **_search_fingerprint(config)}
    _write_yaml(out / "search.yaml", config, **(record or {}), budget_ms=budget_ms,
                hv_reference=ref, space=space.source, space_fingerprint=space.fingerprint(), n_var=space.n_var,
                input_size=list(input_size))
    base = _evaluate_baseline(space, baseline, objectives, archive, out)
    summary = functools.partial(_arch_summary, objectives=objectives, ref=ref)
    optimize(problem, objectives, config, archive, run_dir=out, fingerprint=fingerprint,
             resume=resume, summary=summary)
    ap_key = objectives.ap_key
    frame = archive.frame()
    frame["baseline"] = frame["arch"] == str(base) if base is not None else False
    pareto = _arch_front(frame, ap_key, config.objectives)
    atomic_write_csv(frame, out / CANDIDATES)
    atomic_write_csv(pareto, out / "pareto.csv")
    base_row = frame[frame["baseline"]].iloc[0].to_dict() if base is not None else None
    plot_pareto(frame, pareto, out / "pareto.png", ap_key=ap_key, budget_ms=budget_ms,
                baseline=base_row, title=f"{config.algorithm}: {space.source}")
    hv = hypervolume(np.c_[-pareto[ap_key], pareto["latency_ms"]], ref)
    return SearchResult(out, frame, pareto, hv, ref, base_row, budget_ms, ap_key)


def _arch_key(space: SearchSpace, x) -> str:
    return str(space.decode(x))


def _resolve_budget(space: SearchSpace, latency: Latency, config: SearchConfig):
    """Budget in ms (checked against the smallest/largest subnet) and the HV reference point."""
    fastest, slowest = (float(v) for v in np.ravel(latency([space.smallest(), space.largest()])))
    budget = None if config.latency_budget is None else parse_budget(config.latency_budget)
    if budget is not None:
        check_budget(budget, fastest, slowest)
    ref = config.hv_reference or (0.0, budget if budget is not None else slowest)
    if len(ref) != 2:
        raise ValueError(f"search.hv_reference must be (-AP, latency ms), got {list(ref)}")
    return budget, tuple(float(v) for v in ref)


def _evaluate_baseline(space, baseline, objectives: ArchObjectives, archive: Archive, out: Path):
    """Evaluate the baseline once under the search's protocol (row generation -1 unless searched)."""
    if baseline is None:
        return None
    arch = space.parse(baseline) if isinstance(baseline, str) else baseline
    space.split(arch)  # ValueError if outside the space
    if str(arch) not in archive:
        records = objectives.records([arch])
        F, G = objectives.objectives(records)
        archive.add(str(arch), records[0], F[0], () if G is None else G[0], generation=-1)
        archive.save(out / CANDIDATES)
    return arch


def _arch_front(frame: pd.DataFrame, ap_key: str, objectives: str) -> pd.DataFrame:
    """Non-dominated feasible searched rows in (-AP, latency[, params|macs]), by latency."""
    rows = frame[(frame["generation"] >= 0) & frame["feasible"].astype(bool)]
    third = {"ap_latency": [], "ap_latency_params": ["params"], "ap_latency_macs": ["macs"]}
    F = np.c_[-rows[ap_key].to_numpy(float), rows[["latency_ms", *third[objectives]]].to_numpy(float)]
    return rows[nondominated(F)].sort_values(["latency_ms", "arch"], kind="stable")


def _arch_summary(archive: Archive, objectives: ArchObjectives, ref) -> dict:
    """Progress-bar fields: best AP under the budget and the hypervolume in (-AP, latency)."""
    frame, key = archive.frame(), objectives.ap_key
    rows = frame[(frame["generation"] >= 0) & frame["feasible"].astype(bool)]
    if key is None or rows.empty:
        return {"best_ap": float("nan"), "hv": 0.0}
    hv = hypervolume(np.c_[-rows[key].to_numpy(float), rows["latency_ms"].to_numpy(float)], ref)
    return {"best_ap": round(float(rows[key].max()), 4), "hv": round(hv, 4)}
