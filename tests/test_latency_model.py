"""The latency model for unmeasured entries, predict's fallback to it, and table/device checks.

Tables are 'timed' by a deterministic function of the entry (no onnxruntime): tiny config.
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, table_meta
from latency.model import LatencyModel, cross_validate, features
from latency.table import LatencyTable, meta_path, read_meta, write_meta
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
TRUE_WEIGHTS = np.array([0.004, 0.02, 0.02, 0.001, 0.3, 0.3, 0.07, 0.0015, 0.003])


def synthetic_ms(entry) -> float:
    """A device whose cost is (nearly) the model's form, with a +-3% entry-specific wobble."""
    if entry.kind == "head":
        return 0.05
    wobble = 1 + 0.03 * np.sin(zlib.crc32(entry.key.encode()) % 1000)
    return float(features(pd.DataFrame([entry.row()]))[0] @ TRUE_WEIGHTS * wobble)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    exp = Experiment.from_yaml(ROOT / "experiments/tiny.yaml")
    det = exp.section("detector", DetectorConfig)
    lat = LatencyConfig(flush_every=1000)
    path = tmp_path_factory.mktemp("model") / "t.csv"
    measure_table(build_entries(exp.space, det, lat.context), path, table_meta(exp, [], lat, det), det, lat,
                  measure=lambda e, d, la: {"median_ms": synthetic_ms(e), "p90_ms": 0.0, "cv": 0.0,
                                            "pass_cv": float("nan")}, progress=False)
    return exp, det, path


def _without(path: Path, keys: set[str], out: Path) -> Path:
    frame = pd.read_csv(path)
    frame[~frame.key.isin(keys)].to_csv(out, index=False)
    write_meta(out, read_meta(path))
    return out


def test_model_cross_validated_error_is_finite_and_small(setup):
    exp, det, path = setup
    table = LatencyTable.load(path, exp.space, det)
    cv = cross_validate(table, folds=5, n_archs=20)
    assert cv["held_out_pct"] == 20.0 and cv["n_entries"] == len(table) - 1  # all but the head
    for key in ("block_mape_pct", "entry_mape_pct", "subnet_mape_pct", "subnet_max_error_pct"):
        assert np.isfinite(cv[key])
    assert cv["block_mape_pct"] < 6 and cv["subnet_mape_pct"] < 3


def test_predict_falls_back_to_the_model_with_a_warning_and_strict_refuses(setup, tmp_path):
    exp, det, path = setup
    arch = exp.space.largest()
    gone = {str(k) for k in exp.space.layers(arch, tuple(det.input_size))[2:4]}
    full = LatencyTable.load(path, exp.space, det).predict(arch)
    cut = _without(path, gone, tmp_path / "cut.csv")
    table = LatencyTable.load(cut, exp.space, det)
    with pytest.warns(UserWarning, match="predicted by the latency model") as record:
        predicted = table.predict(arch)
    message = str(record[0].message)
    assert all(k in message for k in gone) and "2 part(s)" in message
    assert set(table.modelled) == gone
    assert predicted == pytest.approx(full, rel=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second warning, same answer
        assert table.predict_many([arch])[0] == pytest.approx(predicted)
    strict = LatencyTable.load(cut, exp.space, det, strict=True)
    with pytest.raises(KeyError, match="strict"):
        strict.predict(arch)


def test_model_refuses_a_missing_head(setup, tmp_path):
    exp, det, path = setup
    frame = pd.read_csv(path)
    cut = _without(path, set(frame.key[frame.kind == "head"]), tmp_path / "nohead.csv")
    with pytest.raises(KeyError, match="does not predict heads"):
        LatencyTable.load(cut, exp.space, det).predict(exp.space.baseline)


def test_model_fit_needs_rows():
    frame = pd.DataFrame([{"kind": "block", "op": "ir", "kernel": 3, "c_in": 8, "c_out": 8,
                           "stride": 1, "expand": 3, "se": 0.0, "height": 8, "width": 8,
                           "median_ms": 0.01, "key": "x"}])
    with pytest.raises(ValueError, match="at least"):
        LatencyModel.fit(frame)


def test_table_from_another_device_warns_naming_both(setup, tmp_path):
    exp, det, path = setup
    other = _without(path, set(), tmp_path / "device.csv")
    meta = read_meta(other)
    meta["device"] = {**meta["device"], "cpu": "Cortex-A76", "onnxruntime": "1.0.0", "threads": 4}
    meta_path(other).write_text(json.dumps(meta))
    with pytest.warns(UserWarning) as record:
        LatencyTable.load(other, exp.space, det, threads=1)
    message = " ".join(str(r.message) for r in record)
    here = read_meta(path)["device"]
    for text in ("Cortex-A76", here["cpu"], "1.0.0", here["onnxruntime"], "threads 4"):
        assert text in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same device: no warning
        LatencyTable.load(path, exp.space, det, threads=1)


def test_nonfinite_entry_is_an_error_naming_the_row(setup, tmp_path):
    exp, det, path = setup
    frame = pd.read_csv(path)
    frame.loc[5, "median_ms"] = float("inf")
    frame.to_csv(tmp_path / "bad.csv", index=False)
    write_meta(tmp_path / "bad.csv", read_meta(path))
    with pytest.raises(ValueError, match=f"line 7 \\({frame.key[5]}"):
        LatencyTable.load(tmp_path / "bad.csv", exp.space, det)


def test_table_of_a_widened_space_is_accepted_on_request(setup):
    exp, det, path = setup
    wide = Experiment.from_yaml(ROOT / "experiments/tiny.yaml", ["space.kernels=[3,5,7,9]"]).space
    with pytest.raises(ValueError, match="space fingerprint"):
        LatencyTable.load(path, wide, det)
    with pytest.warns(UserWarning, match="space fingerprint"):
        table = LatencyTable.load(path, wide, det, allow_other_space=True)
    arch = wide.largest()  # kernel 9 everywhere: none of its blocks were measured
    with pytest.warns(UserWarning, match="K9"):
        ms = table.predict(arch)
    assert np.isfinite(ms) and ms > table.predict(exp.space.largest())


def test_evolve_strict_refuses_an_incomplete_table_before_searching(setup, tmp_path, capsys):
    import evolve

    exp, det, path = setup
    gone = sorted(str(k) for k in exp.space.layers(exp.space.largest(), tuple(det.input_size))[2:4])
    cut = _without(path, set(gone), tmp_path / "cut.csv")
    supernet = tmp_path / "supernet.pt"
    supernet.write_bytes(b"never read: the table check comes first")
    argv = ["--config", str(ROOT / "experiments/tiny.yaml"), "--supernet", str(supernet),
            "--latency-table", str(cut), "--latency-budget", "5ms", "--out", str(tmp_path / "s"),
            "--strict", "--no-progress"]
    with pytest.raises(SystemExit, match=r"--strict: latency table .*cut.csv lacks 2 entries") as err:
        evolve.main(argv)
    assert gone[0] in str(err.value) or gone[1] in str(err.value)
    assert not (tmp_path / "s" / "candidates.csv").exists()  # refused before any search work
