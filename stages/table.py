"""Stage 3: the latency table of a run, measured on this machine, calibrated and validated.

    >>> build_table(Run.create("experiments/tiny.yaml"), validate=8)     # doctest: +SKIP

Resumable at every step: measured entries are kept (`latency.measure.measure_table` rewrites the
CSV atomically every `latency.flush_every` entries), a fitted calibration and an existing
validation are not redone. The table file is locked for the whole build (one writer).
"""

from __future__ import annotations

import time

from core.lock import hold_file_lock
from detection.config import DetectorConfig
from latency.calibrate import calibrate_table, check_same_device
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, print_noise, table_meta
from latency.table import LatencyTable, read_meta
from latency.validate import write_validation
from stages.run import Run


def build_table(run: Run, *, calibrate: bool = True, validate: int = 0, force: bool = False,
                progress: bool = True) -> LatencyTable:
    """Measure `run`'s table (resuming), fit its calibration if `calibrate` and not yet fitted,
    time `validate` spread subnets end to end (0: none) if no validation exists; the table."""
    exp = run.exp
    lat, det = exp.section("latency", LatencyConfig), exp.section("detector", DetectorConfig)
    run.root.mkdir(parents=True, exist_ok=True)
    with hold_file_lock(run.table):  # one writer per table and sidecar
        start = time.perf_counter()
        frame = measure_table(build_entries(exp.space, det, lat.context), run.table,
                              table_meta(exp, list(run.overrides), lat, det), det, lat, force,
                              progress=progress)
        meta = read_meta(run.table)
        print(f"{run.table}: {len(frame)} entries, this run {time.perf_counter() - start:.1f} s, "
              f"total build {meta['build_seconds']:.1f} s", flush=True)
        print_noise(meta, lat)
        if calibrate and not meta.get("calibration", {}).get("fitted"):
            record = calibrate_table(run.table, exp, lat, det, lat.calibration_archs)
            print(f"calibration: measured ~ {record['a']:.3f} x raw + {record['b']:.3f} ms "
                  f"(fit MAPE {record['fit_mape']:.2f}% on {record['n']} subnets)", flush=True)
        table = LatencyTable.load(run.table, exp.space, det)
        if validate and not run.validation.is_file():
            check_same_device(table.meta, lat, run.table)
            report = write_validation(table, lat, det, validate, run.validation,
                                      f"{exp.name} {det.input_size[0]}x{det.input_size[1]}, "
                                      f"{lat.threads} thread(s)")
            sub = report["subnets"]
            cal = report["calibrated"]
            print(f"validation on {len(sub)} subnets: MAPE {cal['mape_pct']:.2f}%, "
                  f"{cal['within_5_pct']:.0f}% within +-5% -> {run.validation}", flush=True)
    return table
