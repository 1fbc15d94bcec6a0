"""What the search report reads: every input found and read, none re-run (`collect`).

Where the inputs are: explicit arguments first, then the paths recorded in search.yaml's
``resolved`` (``supernet``, ``latency_table``), then the run folder's layout
(`stages.run.RunFolder`: the search folder's parent is the run). A missing optional piece is
skipped with a note in the report; a required column that is missing is a note too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.config import load_yaml
from stages.run import RunFolder


SETTINGS = ("easy", "medium", "hard")


@dataclass
class Inputs:
    """Everything the report shows, found on disk; `notes` says what is missing and why."""

    search_dir: Path
    search: dict = field(default_factory=dict)  # search.yaml
    candidates: pd.DataFrame | None = None
    pareto: pd.DataFrame | None = None
    ap_key: str = "ap_mean"
    run_dir: Path | None = None  # the supernet run
    log: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    table: Path | None = None
    validation: dict | None = None
    validation_png: Path | None = None
    retrained: list[dict] = field(default_factory=list)  # metrics.json + "dir"
    comparison: dict | None = None  # retrain/comparison.json (stages.trust.compare_retrained)
    trust: dict | None = None  # retrain/trust.json (stages.trust.ranking_trust)
    confirmed: pd.DataFrame | None = None  # search/confirmed.csv (stages.confirm.confirm_front)
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> dict | None:
        if self.candidates is None or "baseline" not in self.candidates:
            return None
        rows = self.candidates[self.candidates["baseline"].astype(bool)]
        return rows.iloc[0].to_dict() if len(rows) else None


def _read_csv(path: Path, what: str, notes: list[str], required: tuple[str, ...] = ()
              ) -> pd.DataFrame | None:
    if not path.is_file():
        notes.append(f"{what}: {path} not found, skipped.")
        return None
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as err:  # empty or unreadable
        notes.append(f"{what}: {path} unreadable ({err}), skipped.")
        return None
    missing = [c for c in required if c not in frame]
    if missing:
        notes.append(f"{what}: {path} has no {missing[0]!r} column, skipped.")
        return None
    return frame


def _ap_key(search: dict, frame: pd.DataFrame | None) -> str:
    metric = str((search.get("search") or {}).get("ap_metric", "mean"))
    for key in (metric, f"ap_{metric}", "ap_mean", "ap"):
        if frame is not None and key in frame:
            return key
    return f"ap_{metric}"


def _retrained(paths: list[Path], notes: list[str]) -> list[dict]:
    out, seen = [], set()
    for path in paths:
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            notes.append(f"retrained model {path}: no metrics.json (unfinished?), skipped.")
            continue
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        try:
            metrics = json.loads(file.read_text())
            metrics["dir"] = str(file.parent)
            metrics["ap"], metrics["latency"]  # required keys
        except (ValueError, KeyError) as err:
            notes.append(f"retrained model {file}: unreadable ({err!r}), skipped.")
            continue
        out.append(metrics)
    return out


def collect(search_dir: str | Path, supernet_run: str | Path | None = None,
            latency_table: str | Path | None = None, retrained: list[str | Path] = ()) -> Inputs:
    """Find and read every input (see the module docstring); never raises for optional pieces."""
    search_dir = Path(search_dir)
    if not search_dir.is_dir():
        raise FileNotFoundError(f"search folder not found: {search_dir}")
    inp = Inputs(search_dir)
    notes = inp.notes
    if (search_dir / "search.yaml").is_file():
        inp.search = load_yaml(search_dir / "search.yaml")  # errors name the file and line
    else:
        notes.append(f"search settings: {search_dir / 'search.yaml'} not found.")
    resolved = inp.search.get("resolved") or {}
    columns = ("arch", "latency_ms")
    inp.candidates = _read_csv(search_dir / "candidates.csv", "candidates", notes, columns)
    inp.pareto = _read_csv(search_dir / "pareto.csv", "Pareto front", notes, columns)
    inp.ap_key = _ap_key(inp.search, inp.pareto if inp.pareto is not None else inp.candidates)
    if (search_dir / "confirmed.csv").is_file():
        inp.confirmed = _read_csv(search_dir / "confirmed.csv", "confirmed front", notes,
                                  ("arch", "latency_ms", "diff", "diff_lo", "diff_hi", "baseline"))

    run_dir = supernet_run or (Path(resolved["supernet"]).parent if resolved.get("supernet") else None)
    run_dir = Path(run_dir) if run_dir else search_dir.parent  # the layout: runs/<name>/search
    if any((run_dir / f).is_file() for f in ("log.csv", "evals.csv", "supernet.pt", "config.yaml")):
        inp.run_dir = run_dir
        inp.log = _read_csv(run_dir / "log.csv", "supernet training log", notes)
        inp.evals = _read_csv(run_dir / "evals.csv", "supernet subnet evaluations", notes)
    else:
        notes.append(f"supernet run: none found at {run_dir} (pass --supernet-run): training "
                     "curves skipped.")

    table = latency_table or resolved.get("latency_table") or (
        RunFolder(inp.run_dir).table if inp.run_dir else None)
    if table is not None:
        inp.table = Path(table)
        js, png = Path(f"{table}.validation.json"), Path(f"{table}.validation.png")
        if js.is_file():
            inp.validation = json.loads(js.read_text())
        if png.is_file():
            inp.validation_png = png
        if inp.validation is None and inp.validation_png is None:
            notes.append(f"latency table validation: none beside {table} (run python -m "
                         f"latency.validate --table {table}).")
    else:
        notes.append("latency table: not found (pass --latency-table): validation skipped.")

    folders = sorted(RunFolder(inp.run_dir).retrain_root.glob("*/")) if inp.run_dir else []
    inp.retrained = _retrained([p for p in folders if (p / "metrics.json").is_file()]
                               + [Path(p) for p in retrained], notes)
    for name in ("comparison", "trust"):
        path = getattr(RunFolder(inp.run_dir), name) if inp.run_dir else None
        if path is not None and path.is_file():
            try:
                setattr(inp, name, json.loads(path.read_text()))
            except ValueError as err:
                notes.append(f"{path}: unreadable ({err}), skipped.")
    if not inp.retrained:
        notes.append("retrained models: none found (python retrain.py --pareto "
                     f"{search_dir / 'pareto.csv'} --pick best-under:<budget>); one-shot estimates "
                     "only.")
    return inp
