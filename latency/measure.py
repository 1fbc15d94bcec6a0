"""Build the latency table on this machine (or import one measured on a device).

    facenas latency measure --config experiments/default.yaml --out runs/lut_t1.csv
    facenas latency measure --config experiments/tiny.yaml --set detector.input_size=[64,64] \\
        --out /tmp/tiny.csv --calibrate
    facenas latency measure --import bundle/results_t2.json --out runs/lut_device.csv

Each entry of `latency.keys.build_entries` (every `space.blocks(input_size)`, a lateral per tap
width, the head) is exported to ONNX (TorchScript exporter, eval mode) and timed. By default
(`latency.method: interleaved`) the entries are timed in groups of `latency.flush_every`, in
interleaved rounds with a reference workload, preempted time removed and a low quantile kept
(`latency.robust` says why, with figures); the build prints its noise estimate and warns when the
machine was too busy. `method: sequential` is the old way: one entry at a time with
`latency.device_bench.time_session` (the code the device bundle runs), median. The CSV is rewritten
atomically after every group (`latency.flush_every` entries), so a killed run resumes where it
stopped; `--force` re-measures everything. The sidecar ``<out>.json`` records device, settings, input
size, space fingerprint and (after `--calibrate` or `latency.calibrate`) the affine calibration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.device_bench import RESULTS_FORMAT, device_info, measure_optional
from latency.keys import Entry, build_entries
from latency.parts import empty_onnx, export_entry, reference_onnx
from latency.robust import InterleavedBuild, Runner, noise_warning
from latency.timing import open_session
from latency.table import (TABLE_COLUMNS, calibration_record, detector_meta, meta_path, now,
                           read_meta, write_meta, write_table)
from core.experiment import Experiment
from core.lock import LockError, hold_file_lock

TABLE_FORMAT = "facenas-latency-table/1"


def settings(cfg: LatencyConfig) -> dict:
    """The timing settings a table depends on (resuming requires the same ones)."""
    out = {"threads": cfg.threads, "warmup": cfg.warmup, "repeats": cfg.repeats,
           "passes": cfg.passes, "opset": cfg.opset, "provider": cfg.provider, "clock": cfg.clock}
    if cfg.method != "sequential":  # a sequential table has the settings tables always had
        out.update(method=cfg.method, quantile=cfg.quantile, rounds=cfg.rounds)
        if cfg.pin:
            out["pin"] = True
    if cfg.context:  # absent: entries timed alone (every table before the setting)
        out["context"] = True
    return out


def table_meta(exp: Experiment, overrides: list[str], lat: LatencyConfig,
               det: DetectorConfig) -> dict:
    """Sidecar contents before measuring (`measure_table` adds progress and CV figures)."""
    return {"format": TABLE_FORMAT, "config": exp.source, "overrides": list(overrides),
            "space_source": exp.space.source, "fingerprint": exp.space.fingerprint(),
            "input_size": list(det.input_size), "detector": detector_meta(det),
            "device": device_info(lat.threads, lat.provider), "settings": settings(lat),
            "calibration": {"a": 1.0, "b": 0.0, "fitted": False}}


def measure_entry(entry: Entry, det: DetectorConfig, lat: LatencyConfig) -> dict:
    """Export one entry and time it: {median_ms, p90_ms, cv, pass_cv, ...}."""
    return measure_optional(entry.kind, export_entry(entry, det, lat.opset, lat.context), lat.threads,
                            lat.warmup, lat.repeats, lat.passes, lat.provider, lat.clock)


def open_entry(entry: Entry, det: DetectorConfig, lat: LatencyConfig) -> Runner | None:
    """Export one entry and open its timing session; None for a layout reorder this build cannot
    run (no NCHWc ops, e.g. ARM: it times as 0, see `measure_optional`)."""
    model = export_entry(entry, det, lat.opset, lat.context)
    try:
        return open_session(model, lat)
    except Exception:  # onnxruntime raises its own Fail/NotImplemented types
        if entry.kind != "reorder":
            raise
        return None


def _same_setup(old: dict, new: dict) -> str | None:
    """Why an existing table cannot be resumed into `new`, or None."""
    for key in ("fingerprint", "input_size", "detector", "settings"):
        if old.get(key) != new.get(key):
            return f"{key} {old.get(key)} != {new.get(key)}"
    for key in ("cpu", "onnxruntime", "provider", "threads"):
        if old.get("device", {}).get(key) != new["device"].get(key):
            return f"device {key} {old.get('device', {}).get(key)!r} != {new['device'].get(key)!r}"
    return None


def _valid_ms(value) -> bool:
    value = pd.to_numeric(value, errors="coerce")
    return bool(np.isfinite(value) and value >= 0)


def summarize_cv(frame: pd.DataFrame) -> dict:
    cv = frame["cv"].to_numpy(dtype=float)
    out = {"median": float(np.median(cv)), "p90": float(np.percentile(cv, 90)),
           "max": float(cv.max())} if len(cv) else {}
    pcv = frame["pass_cv"].to_numpy(dtype=float)
    if len(pcv) and np.isfinite(pcv).any():
        out["pass_median"] = float(np.nanmedian(pcv))
        out["pass_p90"] = float(np.nanpercentile(pcv, 90))
    return out


def measure_table(entries: list[Entry], out: str | Path, meta: dict, det: DetectorConfig,
                  lat: LatencyConfig, force: bool = False,
                  measure: Callable[[Entry, DetectorConfig, LatencyConfig], dict] | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Measure the entries not yet in `out` (all with `force`), flushing every `lat.flush_every`.

    `measure(entry, det, lat) -> {median_ms, p90_ms, cv, pass_cv}` times one entry at a time
    (default `measure_entry` for `lat.method` sequential); without it and with method interleaved,
    groups of entries are opened with `open_entry` and timed in interleaved rounds.
    """
    out = Path(out)
    context = bool(meta.get("settings", {}).get("context"))
    wrong = "reorder" if context else "context"
    if any(e.kind == wrong for e in entries):
        raise ValueError(f"entries with {wrong} rows for a table timed "
                         f"{'in context' if context else 'in isolation'}: build them with "
                         f"build_entries(space, cfg, context={context})")
    rows: list[dict] = []
    build_seconds = 0.0
    if out.is_file() and not force:
        if not meta_path(out).is_file():
            raise ValueError(f"{out} exists without its sidecar {meta_path(out)}; "
                             "pass --force to re-measure or choose another --out")
        old_meta = read_meta(out)
        reason = _same_setup(old_meta, meta)
        if reason:
            raise ValueError(f"{out} was measured with another setup ({reason}); "
                             "pass --force to re-measure or choose another --out")
        wanted = {e.key for e in entries}
        rows = [r for r in pd.read_csv(out).to_dict("records") if r["key"] in wanted
                and _valid_ms(r["median_ms"])]  # a NaN or negative entry is measured again
        build_seconds = float(old_meta.get("build_seconds", 0.0))
        if rows and "noise" in old_meta:
            meta["noise"] = old_meta["noise"]  # the reference baseline and rounds so far
            meta["overhead_ms"] = old_meta.get("overhead_ms", 0.0)
        if len(rows) == len(entries):
            meta["calibration"] = old_meta.get("calibration", meta["calibration"])
    if not rows:  # a new table (or --force): sidecar first, so a kill before the first flush
        out.unlink(missing_ok=True)  # leaves no CSV without its sidecar (which would block resuming)
        write_meta(out, {**meta, "n_entries": 0, "n_expected": len(entries), "complete": False})
    done = {r["key"] for r in rows}
    todo = [e for e in entries if e.key not in done]
    start = time.perf_counter()

    def flush() -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        order = {e.key: i for i, e in enumerate(entries)}
        frame = frame.sort_values("key", key=lambda s: s.map(order)).reset_index(drop=True)
        meta.update(n_entries=len(frame), n_expected=len(entries),
                    complete=len(frame) == len(entries),
                    build_seconds=round(build_seconds + time.perf_counter() - start, 2),
                    cv=summarize_cv(frame), updated_at=now())
        write_table(frame, meta, out)
        return frame

    bar = tqdm(total=len(entries), initial=len(done), unit="entry", disable=not progress,
               desc=f"measuring {out.name}")
    try:
        if measure is None and lat.method == "interleaved":
            _measure_interleaved(todo, rows, meta, det, lat, flush, bar)
        else:
            measure = measure or measure_entry
            for i, entry in enumerate(todo, 1):
                timing = measure(entry, det, lat)
                rows.append({**entry.row(), **{k: timing[k] for k in TABLE_COLUMNS if k in timing},
                             "measured_at": now()})
                bar.update()
                if i % lat.flush_every == 0:
                    flush()
    finally:
        bar.close()
    return flush()


def _measure_interleaved(todo: list[Entry], rows: list[dict], meta: dict, det: DetectorConfig,
                         lat: LatencyConfig, flush: Callable[[], pd.DataFrame], bar) -> None:
    """Groups of `lat.flush_every` entries, each timed in interleaved rounds against the reference
    workload (`latency.robust.time_interleaved`), then flushed; the sidecar's `noise` accumulates
    over the build (and across a resume: its per-round reference figures are kept)."""
    if not todo:
        return
    build = InterleavedBuild(open_session(reference_onnx(), lat), open_session(empty_onnx(), lat),
                             lat.rounds, lat.warmup, lat.repeats, lat.quantile, meta.get("noise"),
                             pin=lat.pin)
    for start in range(0, len(todo), lat.flush_every):
        group = todo[start:start + lat.flush_every]
        stats = build.time_group([open_entry(e, det, lat) for e in group], seed=len(rows))
        for entry, st in zip(group, stats):
            rows.append({**entry.row(), **{k: st[k] for k in TABLE_COLUMNS if k in st},
                         "measured_at": now()})
        meta["noise"], meta["overhead_ms"] = build.noise, build.overhead_ms
        bar.update(len(group))
        flush()


def import_results(results_path: str | Path, out: str | Path) -> pd.DataFrame:
    """Turn a device_bench results file into a table (+ calibration if it timed whole subnets)."""
    results = json.loads(Path(results_path).read_text())
    if results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{results_path}: not a device_bench results file "
                         f"(format {results.get('format')!r}, expected {RESULTS_FORMAT!r})")
    entries = results["entries"]
    rows = [e for e in entries if e["kind"] != "subnet"]
    frame = pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS))
    meta = {**results["table"], "format": TABLE_FORMAT, "device": results["device"],
            "settings": {**results["table"].get("settings", {}), **results["settings"],
                         "provider": results["device"]["provider"]},
            "imported_from": str(results_path), "n_entries": len(frame),
            "n_expected": results["table"].get("n_entries", len(frame)),
            "cv": summarize_cv(frame), "updated_at": now(),
            "calibration": {"a": 1.0, "b": 0.0, "fitted": False}}
    overhead = float(results.get("overhead_ms", 0.0))  # interleaved device runs time it
    if "overhead_ms" in results:
        meta["overhead_ms"] = overhead
    if "noise" in results:
        meta["noise"] = results["noise"]
    meta["complete"] = meta["n_entries"] == meta["n_expected"]
    subnets = [e for e in entries if e["kind"] == "subnet"]
    if len(subnets) >= 2:
        # each entry without the per-call overhead, the sum with it once (as LatencyTable.raw)
        median = {k: (max(m - overhead, 0.0) if m > 0 else 0.0)
                  for k, m in zip(frame["key"], frame["median_ms"])}
        missing = [k for s in subnets for k, _ in s["parts"] if k not in median]
        if missing:
            raise ValueError(f"{results_path}: subnet part {missing[0]!r} was not timed; "
                             "re-run device_bench.py to finish the bundle")
        raw = [sum(w * median[k] for k, w in s["parts"]) + overhead for s in subnets]
        meta["calibration"] = calibration_record([s["arch"] for s in subnets], raw,
                                                 [s["median_ms"] for s in subnets])
    write_table(frame, meta, out)
    return frame


def print_noise(meta: dict, lat: LatencyConfig) -> None:
    """The build's own noise estimate (a sidecar's ``noise``), and a warning on stderr when the
    machine was too busy for `lat.max_noise`; nothing for a build without a reference workload."""
    noise = meta.get("noise")
    if not noise or "reference_cv" not in noise:
        return
    print(f"noise estimate: reference workload {noise['reference_ms']:.4f} ms, CV "
          f"{100 * noise['reference_cv']:.2f}% over {noise['rounds']} rounds (range "
          f"{noise['drift_pct'][0]:+.1f}%..{noise['drift_pct'][1]:+.1f}%), "
          f"{noise['preempted_pct']:.1f}% of runs preempted (their off-CPU time removed)", flush=True)
    warning = noise_warning(noise, lat.max_noise)
    if warning:
        print(warning, file=sys.stderr)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="experiment YAML (space, detector, latency sections)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. latency.threads=2 (repeatable)")
    p.add_argument("--out", required=True, help="table CSV (sidecar written to <out>.json)")
    p.add_argument("--force", action="store_true", help="re-measure entries already in --out")
    p.add_argument("--calibrate", action="store_true",
                   help="then time latency.calibration_archs whole subnets and fit a * raw + b")
    p.add_argument("--import", dest="import_path", metavar="RESULTS",
                   help="build --out from a device_bench results file instead of measuring")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        with hold_file_lock(args.out):  # one writer per table
            return _run(args)
    except (ValueError, TypeError, FileNotFoundError, KeyError, LockError) as err:
        raise SystemExit(f"error: {err}") from None


def _run(args: argparse.Namespace) -> int:
    if args.import_path:
        frame = import_results(args.import_path, args.out)
        meta = read_meta(args.out)
        print(f"imported {len(frame)} entries from {args.import_path} -> {args.out} "
              f"(calibration {meta['calibration'].get('fitted') and 'fitted' or 'none'})")
        return 0
    if not args.config:
        raise ValueError("--config is required unless --import is given")
    exp = Experiment.from_yaml(args.config, args.set)
    lat = exp.section("latency", LatencyConfig)
    det = exp.section("detector", DetectorConfig)
    entries = build_entries(exp.space, det, lat.context)
    meta = table_meta(exp, args.set, lat, det)
    start = time.perf_counter()
    frame = measure_table(entries, args.out, meta, det, lat, args.force,
                          progress=not args.no_progress)
    meta = read_meta(args.out)
    print(json.dumps({k: meta[k] for k in ("device", "settings", "input_size", "fingerprint")}))
    print(f"{args.out}: {len(frame)} entries ({(frame['kind'] == 'block').sum()} blocks), "
          f"this run {time.perf_counter() - start:.1f} s, total build {meta['build_seconds']:.1f} s, "
          f"cv median {meta['cv']['median']:.3f} p90 {meta['cv']['p90']:.3f} max {meta['cv']['max']:.3f}")
    print_noise(meta, lat)
    if args.calibrate:
        from latency.calibrate import calibrate_table

        calibrate_table(args.out, exp, lat, det, lat.calibration_archs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
