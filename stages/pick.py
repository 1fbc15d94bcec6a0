"""Choosing what to retrain: the search's front read back, the front confirmed, the pick.

    >>> confirm(run)                                        # -> run.confirmed (search/confirmed.csv)
    >>> choose_pick(run, "fastest-not-worse", "12ms")       # doctest: +SKIP
    {'arch': 'K3C16S2-...', 'rule': 'fastest-not-worse', 'ap_key': 'ap_mean', ...}

``fastest-not-worse`` (the default) is the fastest front member whose one-shot AP is at least the
baseline's: the user's question, "faster at AP not lower". The search estimates AP on a small val
subset, so before the pick the front members that could be it and the baseline are re-scored on
more images, paired (`stages.confirm`), and the pick compares those re-scored APs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.checkpoint import load_checkpoint
from core.config import load_yaml
from core.io import atomic_write_csv, true_rows
from detection.loop import TrainConfig
from evolution.budget import parse_budget
from stages.confirm import ConfirmConfig, confirm_front
from stages.run import Run


def read_pareto(path: str | Path) -> pd.DataFrame:
    """A search's pareto.csv; errors name the file: unreadable, no ``arch``/``latency_ms`` column,
    or a latency / AP value that is not a finite number (latency also >= 0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pareto file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as err:  # empty, ragged, not UTF-8
        raise ValueError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in ("arch", "latency_ms") if c not in frame]
    if missing:
        raise ValueError(f"{path}: no {missing[0]!r} column (a search's pareto.csv has arch, "
                         f"latency_ms and ap_* columns; this one has {', '.join(frame.columns)})")
    blank = np.flatnonzero(~frame["arch"].map(lambda v: isinstance(v, str)).to_numpy(bool))
    if len(blank):
        raise ValueError(f"{path}:{blank[0] + 2}: no arch string in the arch column")
    for col in ["latency_ms", *(c for c in frame if c.startswith("ap_"))]:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = ~np.isfinite(values) | ((values < 0) if col == "latency_ms" else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}:{i + 2}: {col} must be a finite number"
                             f"{' >= 0' if col == 'latency_ms' else ''}, got '{frame[col].iloc[i]}'")
    return frame


_PICK_RE = re.compile(r"(?P<row>\d+)|best-under:(?P<budget>.+)|best|(?P<fastest>fastest-not-worse)")


def pick_from_pareto(pareto: pd.DataFrame, pick: str, ap_key: str,
                     baseline_ap: float | None = None) -> pd.Series:
    """The row of `pareto` named by `pick`: ``<row>`` (0-based, file order), ``best`` (highest
    `ap_key`), ``best-under:<budget>`` (highest `ap_key` with latency_ms <= budget, e.g. 12ms) or
    ``fastest-not-worse`` (the fastest row whose `ap_key` is at least `baseline_ap`, the
    baseline's one-shot AP under the same protocol: the user's question, "faster at AP not
    lower")."""
    m = _PICK_RE.fullmatch(pick.strip())
    if m is None:
        raise ValueError(f"--pick {pick!r}: expected a row number, 'best', 'best-under:<budget>' "
                         "(e.g. best-under:12ms) or 'fastest-not-worse'")
    if pareto.empty:
        raise ValueError("the Pareto front is empty: nothing to pick")
    if m["fastest"] is not None:
        if baseline_ap is None:
            raise ValueError("--pick fastest-not-worse needs the baseline's one-shot AP (the "
                             "search's candidates.csv has no baseline row)")
        if ap_key not in pareto:
            raise ValueError(f"pareto.csv has no column {ap_key!r} (columns: {', '.join(pareto.columns)})")
        rows = pareto[pareto[ap_key].astype(float) >= baseline_ap]
        if rows.empty:
            raise ValueError(f"--pick fastest-not-worse: no Pareto row reaches the baseline's "
                             f"one-shot {ap_key} {baseline_ap:.4f} (best {pareto[ap_key].max():.4f})")
        return rows.loc[rows["latency_ms"].astype(float).idxmin()]
    if m["row"] is not None:
        row = int(m["row"])
        if row >= len(pareto):
            raise ValueError(f"--pick {row}: the front has only {len(pareto)} rows (0..{len(pareto) - 1})")
        return pareto.iloc[row]
    if ap_key not in pareto:
        raise ValueError(f"pareto.csv has no column {ap_key!r} (columns: {', '.join(pareto.columns)})")
    rows = pareto
    if m["budget"] is not None:
        budget = parse_budget(m["budget"])
        rows = pareto[pareto["latency_ms"] <= budget]
        if rows.empty:
            raise ValueError(f"--pick {pick}: no Pareto row is under {budget:g} ms (fastest: "
                             f"{pareto['latency_ms'].min():.4g} ms)")
    return rows.loc[rows[ap_key].astype(float).idxmax()]


def baseline_one_shot(search_dir: Path, ap_key: str) -> float | None:
    """The baseline's one-shot `ap_key` from the search's candidates.csv (None if not there)."""
    path = Path(search_dir) / "candidates.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if "baseline" not in frame or ap_key not in frame:
        return None
    rows = frame[true_rows(frame, "baseline")]
    return float(rows[ap_key].iloc[0]) if len(rows) else None


def search_ap_key(search_dir: Path, pareto: pd.DataFrame) -> str:
    """The AP column the search optimised (search.yaml's ap_metric), else ap_mean."""
    metric = "mean"
    path = search_dir / "search.yaml"
    if path.is_file():
        metric = (load_yaml(path).get("search") or {}).get("ap_metric", metric)
    for key in (metric, f"ap_{metric}", "ap_mean"):
        if key in pareto:
            return key
    raise ValueError(f"{search_dir}: pareto.csv has no AP column for ap_metric {metric!r}")


CONFIRMED = "confirmed.csv"  # the front re-scored before the pick, in the search folder


def confirm(run: Run) -> None:
    """Re-score the front members that could be the pick and the baseline on more images
    (`stages.confirm`) -> search/confirmed.csv; skipped when it exists or confirm.archs = 0."""
    exp, search = run.exp, run.search_dir
    cfg = exp.section("confirm", ConfirmConfig)
    out = run.confirmed
    if cfg.archs == 0:
        return
    pareto = read_pareto(search / "pareto.csv")
    if out.is_file():  # done, unless the search has moved on since (a resumed, longer search)
        done = pd.read_csv(out)
        if set(done.loc[~true_rows(done, "baseline"), "arch"]) <= set(pareto["arch"]):
            return
    key = search_ap_key(search, pareto)
    candidates = pd.read_csv(search / "candidates.csv")
    base = candidates[true_rows(candidates, "baseline")]
    if base.empty:
        print("note: the search has no baseline row: nothing to confirm the front against", flush=True)
        return
    checkpoint = load_checkpoint(run.supernet)
    table = confirm_front(checkpoint, exp, pareto, key, base.iloc[0].to_dict(), cfg,
                          device=exp.section("train", TrainConfig).device,
                          source=str(run.supernet))
    atomic_write_csv(table, out)
    shown = table[["latency_ms", f"search_{key}", key, "diff", "diff_lo", "diff_hi"]]
    print(f"front confirmed on {int(table['images'].iloc[0])} images (last row: the baseline):\n"
          + shown.to_string(float_format=lambda v: f"{v:.3f}"), flush=True)


def choose_pick(run: Run | Path, rule: str, budget: str) -> dict:
    """The arch to retrain from the search's front, by `rule`; records why in the result.

    ``fastest-not-worse`` compares the re-scored APs of search/confirmed.csv when the pipeline
    confirmed the front (`confirm_stage`), else the search's own estimates."""
    search = run.search_dir if isinstance(run, Run) else Path(run)
    pareto = read_pareto(search / "pareto.csv")
    key = search_ap_key(search, pareto)
    base = baseline_one_shot(search, key)
    if rule == "best-under":
        rule = f"best-under:{budget}"
    confirmed = search / CONFIRMED
    if rule == "fastest-not-worse" and confirmed.is_file():
        table = pd.read_csv(confirmed)
        is_base = true_rows(table, "baseline")
        base_row = table[is_base].iloc[0]
        try:
            row = pick_from_pareto(table[~is_base], rule, key, float(base_row[key]))
        except ValueError as err:
            print(f"note: re-scored on {int(base_row['images'])} images, {err}; picking "
                  f"best-under:{budget} instead", flush=True)
        else:
            return {"arch": row["arch"], "rule": rule, "ap_key": key, "one_shot": float(row[key]),
                    "baseline_one_shot": float(base_row[key]), "predicted_ms": float(row["latency_ms"]),
                    "search_one_shot": float(row[f"search_{key}"]),
                    "confirmed": {"images": int(row["images"]), "diff": float(row["diff"]),
                                  "diff_lo": float(row["diff_lo"]), "diff_hi": float(row["diff_hi"])}}
        rule = f"best-under:{budget}"
    try:
        row = pick_from_pareto(pareto, rule, key, base)
    except ValueError as err:
        if rule != "fastest-not-worse":
            raise
        print(f"note: {err}; picking best-under:{budget} instead", flush=True)
        rule = f"best-under:{budget}"
        row = pick_from_pareto(pareto, rule, key, base)
    return {"arch": row["arch"], "rule": rule, "ap_key": key, "one_shot": float(row[key]),
            "baseline_one_shot": base, "predicted_ms": float(row["latency_ms"])}
