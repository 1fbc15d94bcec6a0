"""The latency lookup table: load, check against the space, predict an arch's detector latency.

A table is a CSV (one row per entry, see `latency.keys`) plus a sidecar ``<table>.csv.json`` with
the device, the input size, the space fingerprint and the calibration::

    >>> table = LatencyTable.load("runs/lut.csv", exp.space, exp.section("detector", DetectorConfig))
    >>> table.raw(arch)             # blocks + laterals + head - layout reorders, ms  # doctest: +SKIP
    >>> table.predict(arch)         # a * raw + b (affine fitted on whole subnets)  # doctest: +SKIP
    >>> table.predict_many(archs)   # np.ndarray, ~1 us per cached arch             # doctest: +SKIP

An arch needing an entry the table lacks (a widened space, `allow_other_space=True`, or an
incomplete table) gets it from `latency.model.LatencyModel` fitted on the table's rows, with a
warning naming the entries; `strict=True` raises KeyError instead. A table measured on another
CPU, onnxruntime version, provider or thread count than this run's is a warning naming both.
"""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from detection.config import DetectorConfig
from latency.keys import COLUMNS, arch_term_entries, arch_terms
from core.experiment import Experiment
from core.io import atomic_write_csv, atomic_write_text
from core.space import Arch, SearchSpace

TIMING_COLUMNS = ("median_ms", "p90_ms", "cv", "pass_cv", "measured_at")
TABLE_COLUMNS = COLUMNS + TIMING_COLUMNS


def meta_path(table_path: str | Path) -> Path:
    """The sidecar of ``table.csv`` is ``table.csv.json``."""
    return Path(f"{table_path}.json")


def read_meta(table_path: str | Path) -> dict:
    path = meta_path(table_path)
    if not path.is_file():
        raise FileNotFoundError(f"latency table sidecar not found: {path} (written beside the CSV "
                                "by latency.measure)")
    try:
        meta = json.loads(path.read_text())
    except ValueError as err:  # UnicodeDecodeError included
        raise ValueError(f"{path}: not a latency table sidecar (not JSON: {err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a latency table sidecar (a JSON {type(meta).__name__}, "
                         "expected an object)")
    return meta


def write_meta(table_path: str | Path, meta: dict) -> None:
    atomic_write_text(meta_path(table_path), json.dumps(meta, indent=1) + "\n")


def write_table(frame: pd.DataFrame, meta: dict, table_path: str | Path) -> None:
    """CSV then sidecar, each atomically (the sidecar is what a reader checks first)."""
    atomic_write_csv(frame.loc[:, list(TABLE_COLUMNS)], table_path)
    write_meta(table_path, meta)


def detector_meta(cfg: DetectorConfig) -> dict:
    """The detector fields a table depends on (the keys encode them, the sidecar records them)."""
    return {"feature_strides": list(cfg.feature_strides), "neck_channels": cfg.neck_channels,
            "n_anchors": cfg.n_anchors}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fit_affine(raw: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(a, b) with measured ~ a * raw + b, least squares on the *relative* residuals
    (a * raw + b - measured) / measured: what MAPE scores, so 2 ms archs count as much as 20 ms."""
    raw, measured = np.asarray(raw, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if raw.shape != measured.shape or raw.size < 2:
        raise ValueError(f"need >= 2 (raw, measured) pairs of equal length, got {raw.size} and "
                         f"{measured.size}")
    if np.any(measured <= 0):
        raise ValueError("measured latencies must be positive")
    design = np.stack([raw, np.ones_like(raw)], axis=1) / measured[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(raw), rcond=None)
    return float(a), float(b)


def experiment_of(table_path: str | Path, config: str | None, overrides: list[str]) -> Experiment:
    """The experiment a table was built from (sidecar `config` + `overrides`) unless --config."""
    meta = read_meta(table_path)
    if config is None:
        config = meta.get("config")
        overrides = list(meta.get("overrides", [])) + list(overrides)
        if not config or not Path(config).is_file():
            raise SystemExit(f"{table_path}: sidecar config {config!r} not found; pass --config")
    return Experiment.from_yaml(config, overrides)


def check_meta(meta: dict, space: SearchSpace, cfg: DetectorConfig, source: str,
               allow_other_space: bool = False) -> None:
    """ValueError naming both values when the table was built for another space or detector;
    `allow_other_space`: another space (e.g. a widened one) is a warning, its blocks missing from
    the table come from the latency model."""
    checks = (("space fingerprint", meta.get("fingerprint"), space.fingerprint()),
              ("input size", list(meta.get("input_size") or []), list(cfg.input_size)),
              ("detector", meta.get("detector"), detector_meta(cfg)))
    for what, theirs, ours in checks:
        if theirs != ours and what == "space fingerprint" and allow_other_space:
            warnings.warn(f"latency table {source} was built for {what} {theirs}, this run uses "
                          f"{ours} (space {space.source}): entries it lacks are predicted by the "
                          "latency model", stacklevel=3)
        elif theirs != ours:
            raise ValueError(f"latency table {source} was built for {what} {theirs}, but this run "
                             f"uses {what} {ours} (space {space.source}); rebuild it with "
                             "facenas latency measure")


DEVICE_FIELDS = ("cpu", "onnxruntime", "provider", "threads")


def check_device(meta: dict, source: str, threads: int | None = None,
                 provider: str | None = None) -> str | None:
    """A warning (returned and issued) when the table was measured on another CPU, onnxruntime
    version, provider or thread count than this machine and run (`threads`/`provider`: this run's
    latency settings, if known); None when they match."""
    from latency.device_bench import device_info  # onnxruntime, only when a table is checked

    theirs = meta.get("device") or {}
    here = device_info(theirs.get("threads", 1) if threads is None else threads,
                       provider or theirs.get("provider", "CPUExecutionProvider"))
    diffs = [f"{k} {theirs.get(k)!r} (table) vs {here[k]!r} (here)" for k in DEVICE_FIELDS
             if theirs.get(k) != here[k]]
    if not diffs:
        return None
    message = (f"latency table {source} was measured on another setup: {'; '.join(diffs)}; its "
               "latencies are those of that setup (right when searching for that device, wrong "
               "for this one: rebuild with facenas latency measure)")
    warnings.warn(message, stacklevel=3)
    return message


def check_timings(frame: pd.DataFrame, meta: dict, source: str) -> None:
    """ValueError naming the rows whose median_ms is not a finite number >= 0 (a NaN would make
    every latency NaN, a negative one would put archs below 0 ms), or a non-finite calibration."""
    median = pd.to_numeric(frame["median_ms"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(median) & (median >= 0)))
    if len(bad):
        rows = ", ".join(f"line {i + 2} ({frame['key'].iloc[i]}: '{frame['median_ms'].iloc[i]}')"
                         for i in bad[:3])
        raise ValueError(f"latency table {source}: median_ms must be a finite number >= 0; "
                         f"{len(bad)} bad row(s): {rows}; re-run facenas latency measure on it "
                         "to measure them again")
    cal = meta.get("calibration") or {}
    for name in ("a", "b"):
        value = cal.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{meta_path(source)}: calibration.{name} must be a finite number, "
                             f"got {value!r}; re-run facenas latency calibrate")


class LatencyTable:
    """Median latencies of every entry; `predict(arch)` adds up an arch's entries."""

    def __init__(self, frame: pd.DataFrame, meta: dict, space: SearchSpace, cfg: DetectorConfig,
                 source: str = "<table>", strict: bool = False):
        self.frame, self.meta, self.space, self.cfg, self.source = frame, meta, space, cfg, source
        self.strict = strict
        self._ids = {k: i for i, k in enumerate(frame["key"])}
        if len(self._ids) != len(frame):
            raise ValueError(f"latency table {source} lists a key twice")
        self._median = frame["median_ms"].to_numpy(dtype=np.float64)
        # onnxruntime's fixed cost per call: paid by every entry timed alone, once by a network
        self.overhead_ms = float(meta.get("overhead_ms", 0.0) or 0.0)
        # entries timed after their context (latency.keys); absent in tables built before
        self.context = bool((meta.get("settings") or {}).get("context", False))
        self._work = self._without_overhead(self._median)
        self._arch_ids: dict[Arch, tuple[np.ndarray, np.ndarray]] = {}
        self._model = None
        self.modelled: dict[str, float] = {}  # key -> ms predicted by the latency model

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, cfg: DetectorConfig, strict: bool = False,
             allow_other_space: bool = False, threads: int | None = None,
             provider: str | None = None) -> "LatencyTable":
        """Read and check a table; `strict`: missing entries raise KeyError instead of coming
        from the latency model; `threads`/`provider`: this run's settings, for the device check."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table not found: {path} (build it with "
                                    "facenas latency measure --config ... --out ...)")
        meta = read_meta(path)
        check_meta(meta, space, cfg, str(path), allow_other_space)
        try:
            frame = pd.read_csv(path)
        except ValueError as err:  # empty, ragged rows, not UTF-8
            detail = str(err).strip().splitlines()[0]
            raise ValueError(f"latency table {path}: not a readable CSV ({detail})") from None
        missing = [c for c in ("key", "median_ms") if c not in frame.columns]
        if missing:
            raise ValueError(f"latency table {path}: missing column {missing[0]!r}")
        check_timings(frame, meta, str(path))
        check_device(meta, str(path), threads, provider)
        return cls(frame, meta, space, cfg, str(path), strict)

    # -- lookup ---------------------------------------------------------------------------------
    def terms(self, arch: Arch) -> list[tuple[str, float]]:
        """(key, weight) pairs `arch` adds up: its blocks, a lateral per tap and the head (weight
        1), minus each one's context, or half a layout reorder at each of their boundaries in a
        table timed in isolation (`latency.keys.arch_terms`)."""
        return arch_terms(self.space, arch, self.cfg, self.context)

    def ids(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, weights) of `arch`'s terms (cached); KeyError naming a missing key."""
        cached = self._arch_ids.get(arch)
        if cached is None:
            terms = self.terms(arch)
            missing = [k for k, _ in terms if k not in self._ids]
            if missing:
                self._predict_missing(arch, list(dict.fromkeys(missing)))
            ids = np.fromiter((self._ids[k] for k, _ in terms), dtype=np.int64, count=len(terms))
            cached = ids, np.fromiter((w for _, w in terms), dtype=np.float64, count=len(terms))
            self._arch_ids[arch] = cached
        return cached

    def _without_overhead(self, ms: np.ndarray) -> np.ndarray:
        """Entry latencies minus the per-call overhead (an entry timed as 0, a reorder this build
        cannot run, stays 0)."""
        return np.where(ms > 0, np.maximum(ms - self.overhead_ms, 0.0), 0.0)

    def _predict_missing(self, arch: Arch, keys: list[str]) -> None:
        """Add model predictions for `keys` (warning naming them), or KeyError when strict."""
        if self.strict:
            raise KeyError(f"latency table {self.source} has no entry {keys[0]!r} (needed by "
                           f"{arch}{f', and {len(keys) - 1} more' if len(keys) > 1 else ''}); "
                           "re-run facenas latency measure to complete it (strict: no model)")
        from latency.model import LatencyModel

        entries = {e.key: e for e, _ in arch_term_entries(self.space, arch, self.cfg, self.context)}
        if any(entries[k].kind == "head" for k in keys):
            raise KeyError(f"latency table {self.source} has no entry "
                           f"{next(k for k in keys if entries[k].kind == 'head')!r} (needed by "
                           f"{arch}); the latency model does not predict heads: re-run "
                           "facenas latency measure")
        if self._model is None:
            self._model = LatencyModel.fit(self.frame)
        values = self._model.predict([entries[k] for k in keys])
        self._ids.update({k: len(self._median) + i for i, k in enumerate(keys)})
        self._median = np.concatenate([self._median, values])
        self._work = np.concatenate([self._work, self._without_overhead(values)])
        self.modelled.update(zip(keys, map(float, values)))
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        warnings.warn(f"latency table {self.source} has no entry for {len(keys)} part(s) of {arch}: "
                      f"{shown}; predicted by the latency model fitted on its {self._model.n_rows} "
                      "rows (facenas latency model reports its cross-validated error; "
                      "strict=True refuses instead)", stacklevel=4)

    def __getitem__(self, key: str) -> float:
        """Median latency (ms) of one entry."""
        if key not in self._ids:
            raise KeyError(f"latency table {self.source} has no entry {key!r}")
        return float(self._median[self._ids[key]])

    def __len__(self) -> int:
        return len(self.frame)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self._ids]

    # -- prediction -----------------------------------------------------------------------------
    @property
    def calibration(self) -> tuple[float, float]:
        """(a, b) of predict = a * raw + b; (1, 0) until `latency.calibrate` has run."""
        cal = self.meta.get("calibration") or {}
        return float(cal.get("a", 1.0)), float(cal.get("b", 0.0))

    def raw(self, arch: Arch) -> float:
        """Weighted sum of the medians of `arch`'s terms (ms), no calibration; with a measured
        per-call overhead (sidecar `overhead_ms`), each term without it and the sum with it once."""
        ids, weights = self.ids(arch)
        return float(self._work[ids] @ weights) + self.overhead_ms

    def predict(self, arch: Arch) -> float:
        a, b = self.calibration
        return a * self.raw(arch) + b

    def raw_many(self, archs: Sequence[Arch]) -> np.ndarray:
        """`raw` of each arch, vectorised: one gather and one segmented sum over all archs."""
        if len(archs) == 0:
            return np.zeros(0)
        parts = [self.ids(a) for a in archs]
        lengths = np.fromiter((len(p[0]) for p in parts), dtype=np.int64, count=len(parts))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        ids = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        return np.add.reduceat(self._work[ids] * weights, starts) + self.overhead_ms

    def predict_many(self, archs: Sequence[Arch]) -> np.ndarray:
        a, b = self.calibration
        return a * self.raw_many(archs) + b


def calibration_record(archs: list[str], raw: list[float], measured: list[float]) -> dict:
    """Sidecar `calibration`: the affine fit and the data it was fitted on."""
    a, b = fit_affine(raw, measured)
    raw_a, meas_a = np.asarray(raw), np.asarray(measured)
    err = np.abs(a * raw_a + b - meas_a) / meas_a
    return {"a": a, "b": b, "fitted": True, "n": len(archs), "fitted_at": now(),
            "fit_mape": float(err.mean() * 100), "archs": list(archs),
            "raw_ms": [float(x) for x in raw], "measured_ms": [float(x) for x in measured]}
