"""Check the table's predictions against whole subnets timed end to end on this machine.

    facenas latency validate --table runs/lut.csv --n 30
    # -> runs/lut.csv.validation.json (printed too) and runs/lut.csv.validation.png

The N subnets are the space's smallest and largest archs plus N - 2 archs evenly spaced in raw
predicted latency between them (`latency.calibrate.spread_archs` with seed latency.seed + 1, never
one of the calibration subnets). Reports MAPE, max error, Pearson r, Kendall tau and the share of
subnets within +-5% / +-10% of measured, raw (sum of entries) and calibrated (a * raw + b), and a
predicted-vs-measured scatter plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from detection.config import DetectorConfig
from latency.calibrate import check_same_device, experiment_of, measure_archs, spread_archs
from latency.config import LatencyConfig
from latency.table import LatencyTable
from core.io import atomic_path, atomic_write_text


def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """MAPE / max |error| in % of measured, Pearson r, Kendall tau, and the share (%) of subnets
    predicted within +-5% and +-10% of measured (nn-Meter's headline figure is the +-10% one)."""
    err = np.abs(predicted - measured) / measured * 100
    return {"mape_pct": float(err.mean()), "max_error_pct": float(err.max()),
            "pearson_r": float(stats.pearsonr(predicted, measured)[0]),
            "kendall_tau": float(stats.kendalltau(predicted, measured)[0]),
            "within_5_pct": float(np.mean(err <= 5) * 100),
            "within_10_pct": float(np.mean(err <= 10) * 100)}


def plot(raw: np.ndarray, calibrated: np.ndarray, measured: np.ndarray, path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    hi = float(max(raw.max(), calibrated.max(), measured.max())) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="y = x")
    ax.scatter(measured, raw, marker="o", facecolors="none", edgecolors="tab:blue", label="raw sum")
    ax.scatter(measured, calibrated, marker="x", color="tab:red", label="calibrated")
    ax.set(xlabel="measured end to end (ms)", ylabel="predicted (ms)", xlim=(0, hi), ylim=(0, hi),
           title=title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def validate_table(table: LatencyTable, lat: LatencyConfig, det: DetectorConfig, n: int) -> dict:
    space, cal = table.space, table.meta.get("calibration") or {}
    calib_archs = [space.parse(a) for a in cal.get("archs", [])]
    archs = spread_archs(space, table.raw_many, n, lat.seed + 1, lat.pool_size,
                         exclude=calib_archs, extremes=True)
    timings = measure_archs(space, archs, det, lat, desc="validation")
    measured = np.array([t["median_ms"] for t in timings])
    raw, calibrated = table.raw_many(archs), table.predict_many(archs)
    a, b = table.calibration
    return {
        "table": table.source, "device": table.meta.get("device"), "settings": table.meta.get("settings"),
        "input_size": list(det.input_size), "n": len(archs), "seed": lat.seed + 1,
        "calibration": {"a": a, "b": b, "fitted": bool(cal.get("fitted")), "n": cal.get("n", 0)},
        "raw": metrics(raw, measured), "calibrated": metrics(calibrated, measured),
        "round_cv_median": float(np.median([t["round_cv"] for t in timings])),
        "smallest": {"arch": str(archs[0]), "measured_ms": float(measured[0]),
                     "predicted_ms": float(calibrated[0])},
        "largest": {"arch": str(archs[-1]), "measured_ms": float(measured[-1]),
                    "predicted_ms": float(calibrated[-1])},
        "subnets": [{"arch": str(arch), "measured_ms": float(m), "raw_ms": float(r),
                     "predicted_ms": float(c), "cv": float(t["cv"]), "round_cv": t["round_cv"]}
                    for arch, m, r, c, t in zip(archs, measured, raw, calibrated, timings)],
    }


def write_validation(table: LatencyTable, lat: LatencyConfig, det: DetectorConfig, n: int,
                     out: Path, title: str) -> dict:
    """`validate_table` written as `out` (JSON) and its scatter plot beside it (PNG)."""
    report = validate_table(table, lat, det, n)
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    sub = report["subnets"]
    plot(np.array([s["raw_ms"] for s in sub]), np.array([s["predicted_ms"] for s in sub]),
         np.array([s["measured_ms"] for s in sub]), out.with_suffix(".png"), title)
    return report


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="table CSV from latency.measure")
    p.add_argument("--config", help="experiment YAML (default: the one recorded in the sidecar)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--n", type=int, default=None, help="subnets (default latency.validation_archs)")
    p.add_argument("--out", help="report JSON (default <table>.validation.json; PNG beside it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    exp = experiment_of(args.table, args.config, args.set)
    lat = exp.section("latency", LatencyConfig)
    det = exp.section("detector", DetectorConfig)
    table = LatencyTable.load(args.table, exp.space, det)
    check_same_device(table.meta, lat, args.table)
    out = Path(args.out or f"{args.table}.validation.json")
    report = write_validation(table, lat, det, args.n or lat.validation_archs, out,
                              f"{exp.name} {det.input_size[0]}x{det.input_size[1]}, "
                              f"{lat.threads} thread(s)")
    print(json.dumps({k: v for k, v in report.items() if k != "subnets"}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
