"""Write a device bundle: every table entry as ONNX, a manifest, and the standalone timing script.

    facenas latency bundle --config experiments/default.yaml --out bundle_320/
    scp -r bundle_320 device:                      # then, on the device (numpy + onnxruntime only):
    python device_bench.py --threads 2             # -> results_t2.json
    facenas latency measure --import bundle_320/results_t2.json --out runs/lut_device.csv

Layout::

    bundle_320/manifest.json      {"table": {fingerprint, input_size, detector, ...},
                                   "settings": {warmup, repeats, passes, method, quantile, rounds},
                                   "entries": [{key, kind, file, inputs, op, kernel, ...}, ...]}
    bundle_320/onnx/00000.onnx    one model per entry
    bundle_320/device_bench.py    copy of latency/device_bench.py
    bundle_320/robust.py          copy of latency/robust.py (the interleaved method, numpy only)
    bundle_320/reference.onnx     the reference workload re-timed every round (drift, noise)
    bundle_320/empty.onnx         onnxruntime's per-call overhead

The device times the entries as `latency.measure` does here (``latency.method``: interleaved
rounds, a low quantile, preempted time removed, drift corrected), so a device table and a local
one are built the same way; the results carry the build's noise estimate and per-call overhead.

With `--subnets K` (default latency.calibration_archs) the bundle also holds K whole detectors
spread in MACs (kind "subnet", with the [key, weight] terms they sum in "parts"), so the import fits the
device's affine calibration too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

import latency.device_bench as device_bench
import latency.robust as robust
from detection.config import DetectorConfig
from detection.model import build_detector
from latency.calibrate import spread_archs
from latency.config import LatencyConfig
from latency.keys import Entry, arch_terms, build_entries
from latency.measure import table_meta
from latency.export import onnx_bytes
from latency.parts import empty_onnx, export_entry, reference_onnx
from core.experiment import Experiment
from core.io import atomic_write_bytes, atomic_write_text

BUNDLE_FORMAT = "facenas-latency-bundle/1"


def write_bundle(exp: Experiment, overrides: list[str], lat: LatencyConfig, det: DetectorConfig,
                 out: str | Path, subnets: int = 0, entries: list[Entry] | None = None,
                 progress: bool = True) -> dict:
    """Export `entries` (default: all of `build_entries`) and `subnets` whole detectors into `out`;
    returns the manifest (also written to out/manifest.json)."""
    out, space = Path(out), exp.space
    meta = table_meta(exp, overrides, lat, det)
    all_entries = build_entries(space, det, lat.context)
    entries = all_entries if entries is None else list(entries)
    size = tuple(det.input_size)
    archs = []
    if subnets:
        def macs(archs):
            return np.array([space.macs(a, size) for a in archs], dtype=float)

        archs = spread_archs(space, macs, subnets, lat.seed, lat.pool_size)
        have = {e.key for e in entries}  # a partial bundle still needs every part of its subnets
        needed = {k for a in archs for k, _ in arch_terms(space, a, det, lat.context)} - have
        entries += [e for e in all_entries if e.key in needed]
    table = {k: meta[k] for k in ("config", "overrides", "space_source", "fingerprint",
                                  "input_size", "detector")}
    table.update(settings={"opset": lat.opset, **({"context": True} if lat.context else {})},
                 n_entries=len(entries))
    rows = []
    for i, entry in enumerate(tqdm(entries, desc="exporting", unit="entry", disable=not progress)):
        file = f"onnx/{i:05d}.onnx"
        atomic_write_bytes(out / file, export_entry(entry, det, lat.opset, lat.context))
        rows.append({**entry.row(), "file": file, "inputs": [list(s) for s in entry.inputs]})
    for j, arch in enumerate(archs):
        file = f"onnx/subnet_{j:03d}.onnx"
        atomic_write_bytes(out / file, onnx_bytes(build_detector(space, arch, det), ((1, 3, *size),),
                                                   lat.opset))
        rows.append({"key": f"subnet:{arch}", "kind": "subnet", "arch": str(arch),
                     "parts": arch_terms(space, arch, det, lat.context), "file": file, "inputs": [[1, 3, *size]]})
    manifest = {"format": BUNDLE_FORMAT, "table": table,
                "settings": {"warmup": lat.warmup, "repeats": lat.repeats, "passes": lat.passes,
                             "clock": lat.clock, "method": lat.method, "quantile": lat.quantile,
                             "rounds": lat.rounds, **({"pin": True} if lat.pin else {})},
                "entries": rows}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    atomic_write_bytes(out / "device_bench.py", Path(device_bench.__file__).read_bytes())
    # the interleaved method's pieces: its timing code and the workloads every round re-times
    atomic_write_bytes(out / "robust.py", Path(robust.__file__).read_bytes())
    atomic_write_bytes(out / "reference.onnx", reference_onnx())
    atomic_write_bytes(out / "empty.onnx", empty_onnx())
    return manifest


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="bundle folder")
    p.add_argument("--subnets", type=int, default=None,
                   help="whole detectors for the device calibration (default "
                        "latency.calibration_archs; 0 = none)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    exp = Experiment.from_yaml(args.config, args.set)
    lat = exp.section("latency", LatencyConfig)
    det = exp.section("detector", DetectorConfig)
    n_sub = lat.calibration_archs if args.subnets is None else args.subnets
    manifest = write_bundle(exp, args.set, lat, det, args.out, n_sub)
    print(f"wrote {args.out}: {len(manifest['entries'])} models ({n_sub} whole subnets), "
          f"manifest.json, device_bench.py\non the device: python device_bench.py --threads N")
    return 0


if __name__ == "__main__":
    sys.exit(main())
