"""Latency table: coverage, additivity, errors, resume, device import, calibration, bundle script.

Most tests time entries with a deterministic fake (`_fake`) so they run in milliseconds; the real
onnxruntime path is exercised on a handful of entries at 64x64 (experiments/tiny.yaml).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.config import DetectorConfig
from latency import device_bench
from latency.bundle import write_bundle
from latency.calibrate import calibrate_table, spread_archs
from latency.config import LatencyConfig
from latency.keys import build_entries, context_key, head_key, lateral_key, reorder_key
from latency.measure import import_results, main as measure_main, measure_entry, measure_table, table_meta
from latency.parts import export_entry
from latency.export import onnx_bytes
from latency.table import LatencyTable, fit_affine, read_meta, write_meta
from latency.validate import validate_table
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 64)


@pytest.fixture(scope="module")
def exp() -> Experiment:
    return Experiment.from_yaml(ROOT / "experiments/tiny.yaml")


@pytest.fixture(scope="module")
def det(exp) -> DetectorConfig:
    det = exp.section("detector", DetectorConfig)
    assert tuple(det.input_size) == SIZE
    return det


@pytest.fixture(scope="module")
def lat() -> LatencyConfig:
    """Entries timed alone (the layout-reorder scheme); `lat_ctx`: in context (the default)."""
    return LatencyConfig(warmup=1, repeats=5, flush_every=3, calibration_archs=3, context=False)


@pytest.fixture(scope="module")
def lat_ctx(lat) -> LatencyConfig:
    return dataclasses.replace(lat, context=True)


def _fake(entry, det, lat) -> dict:
    """Deterministic 'timing': depends only on the entry, so hand sums are exact."""
    ms = 0.001 * (entry.c_in + entry.c_out) * entry.height * entry.width / 64 + entry.kernel * 1e-3
    return {"median_ms": ms, "p90_ms": 1.1 * ms, "cv": 0.01, "pass_cv": float("nan")}


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory, exp, det, lat) -> Path:
    out = tmp_path_factory.mktemp("lut") / "tiny.csv"
    measure_table(build_entries(exp.space, det), out, table_meta(exp, [], lat, det), det, lat,
                  measure=_fake, progress=False)
    return out


@pytest.fixture(scope="module")
def fake_ctx_table(tmp_path_factory, exp, det, lat_ctx) -> Path:
    out = tmp_path_factory.mktemp("lut") / "tiny_ctx.csv"
    measure_table(build_entries(exp.space, det, context=True), out,
                  table_meta(exp, [], lat_ctx, det), det, lat_ctx, measure=_fake, progress=False)
    return out


def _archs(space, n=20, seed=0):
    rng = np.random.default_rng(seed)
    return [space.baseline, space.smallest(), space.largest()] + [space.sample(rng) for _ in range(n)]


def test_table_covers_blocks_laterals_head(fake_table, exp, det):
    space = exp.space
    frame = pd.read_csv(fake_table)
    blocks = {str(k) for k in space.blocks(SIZE)}
    assert set(frame.loc[frame.kind == "block", "key"]) == blocks
    taps = space.tap_stages(det.feature_strides)  # tiny: stages 2, 3, 4 at 8x8, 4x4, 2x2
    sizes = [(8, 8), (4, 4), (2, 2)]
    c, a = det.neck_channels, det.n_anchors
    laterals = {lateral_key(c, det.neck_channels, s) for i, s in zip(taps, sizes)
                for c in space.stages[i].widths}
    assert set(frame.loc[frame.kind == "lateral", "key"]) == laterals
    assert list(frame.loc[frame.kind == "head", "key"]) == [head_key(c, a, sizes)]
    # one layout-reorder entry per tensor shape blocks/laterals/head share (channels % 4 == 0)
    shapes = {(k.c_in, k.height, k.width) for k in space.blocks(SIZE)}
    shapes |= {(k.block.channels, *k.out_size) for k in space.blocks(SIZE)}
    shapes |= {(c, *s) for s in sizes}
    reorders = {reorder_key(*s) for s in shapes if s[0] % 4 == 0}
    assert set(frame.loc[frame.kind == "reorder", "key"]) == reorders
    assert len(frame) == len(blocks) + len(laterals) + 1 + len(reorders)
    assert list(frame.columns[:11]) == ["key", "kind", "op", "kernel", "c_in", "c_out", "stride",
                                        "expand", "se", "height", "width"]
    assert {"median_ms", "p90_ms", "cv"} <= set(frame.columns)
    meta = read_meta(fake_table)
    assert meta["fingerprint"] == space.fingerprint() and meta["input_size"] == [64, 64]
    assert meta["device"]["threads"] == 1 and meta["device"]["onnxruntime"]
    assert meta["complete"] and meta["n_entries"] == len(frame)


def test_raw_is_the_hand_sum_and_predict_many_matches(fake_table, exp, det):
    space = exp.space
    table = LatencyTable.load(fake_table, space, det)
    median = dict(zip(table.frame.key, table.frame.median_ms))
    c, sizes = det.neck_channels, [(8, 8), (4, 4), (2, 2)]

    def half_reorder(ch, h, w):  # layout conversion a lone model pays at a shared tensor
        return 0.5 * median[reorder_key(ch, h, w)] if ch % 4 == 0 else 0.0

    for arch in _archs(space, 5):
        total = 0.0
        for k in space.layers(arch, SIZE):
            total += median[str(k)] - half_reorder(k.c_in, k.height, k.width)
            total -= half_reorder(k.block.channels, *k.out_size)
        taps = space.tap_blocks(arch, det.feature_strides)
        for t, (h, w) in zip(taps, sizes):
            c_in = arch.blocks[t].channels
            total += median[lateral_key(c_in, c, (h, w))]
            total -= half_reorder(c_in, h, w) + half_reorder(c, h, w)
        total += median[head_key(c, det.n_anchors, sizes)]
        total -= sum(half_reorder(c, h, w) for h, w in sizes)
        assert table.raw(arch) == pytest.approx(total, rel=1e-12)
        assert table.predict(arch) == table.raw(arch)  # not calibrated yet: a=1, b=0
    table.meta["calibration"] = {"a": 1.5, "b": 0.25, "fitted": True}
    archs = _archs(space, 50, seed=1)
    many = table.predict_many(archs)
    assert many.shape == (len(archs),)
    np.testing.assert_allclose(many, [table.predict(a) for a in archs], rtol=1e-12)
    np.testing.assert_allclose(many, 1.5 * table.raw_many(archs) + 0.25, rtol=1e-12)
    assert table.predict_many([]).shape == (0,)


def test_context_table_has_one_context_per_input_shape_and_no_reorders(fake_ctx_table, exp, det):
    frame = pd.read_csv(fake_ctx_table)
    assert not (frame.kind == "reorder").any()
    entries = build_entries(exp.space, det, context=True)
    measured = [e for e in entries if e.kind in ("block", "lateral", "head")]
    stem = [e for e in measured if e.c_in == 3]
    assert len(stem) == 1 and stem[0].inputs == ((1, 3, *SIZE),)  # the image: no context
    expected = {context_key(e.inputs) for e in measured if e is not stem[0]}
    assert set(frame.loc[frame.kind == "context", "key"]) == expected
    assert "context:16x8x8+16x4x4+16x2x2" in expected  # the head's three lateral outputs
    assert "context:8x32x32" in expected  # what the stem hands the first block
    assert len(frame) == len(measured) + len(expected)
    assert read_meta(fake_ctx_table)["settings"]["context"] is True


def test_context_raw_is_each_entry_minus_its_context(fake_ctx_table, exp, det):
    space = exp.space
    table = LatencyTable.load(fake_ctx_table, space, det)
    assert table.context
    median = dict(zip(table.frame.key, table.frame.median_ms))
    c, sizes = det.neck_channels, [(8, 8), (4, 4), (2, 2)]

    def in_context(key, *inputs):  # the entry as the network runs it
        return median[key] - median[context_key(tuple((1, *s) for s in inputs))]

    for arch in _archs(space, 5):
        layers = space.layers(arch, SIZE)
        total = median[str(layers[0])]  # the stem takes the image
        total += sum(in_context(str(k), (k.c_in, k.height, k.width)) for k in layers[1:])
        for t, (h, w) in zip(space.tap_blocks(arch, det.feature_strides), sizes):
            c_in = arch.blocks[t].channels
            total += in_context(lateral_key(c_in, c, (h, w)), (c_in, h, w))
        total += in_context(head_key(c, det.n_anchors, sizes), *[(c, h, w) for h, w in sizes])
        assert table.raw(arch) == pytest.approx(total, rel=1e-12)
    # the per-call overhead cancels within each pair: only the stem pays it, and the arch once
    meta = read_meta(fake_ctx_table)
    with_overhead = LatencyTable(table.frame, {**meta, "overhead_ms": 1e-4}, space, det)
    archs = _archs(space, 20, seed=3)
    np.testing.assert_allclose(with_overhead.raw_many(archs), table.raw_many(archs), rtol=1e-12)


def test_measure_table_refuses_entries_of_the_other_scheme(exp, det, lat, lat_ctx, tmp_path):
    with pytest.raises(ValueError, match="context=True"):
        measure_table(build_entries(exp.space, det), tmp_path / "a.csv",
                      table_meta(exp, [], lat_ctx, det), det, lat_ctx, measure=_fake, progress=False)
    with pytest.raises(ValueError, match="context=False"):
        measure_table(build_entries(exp.space, det, context=True), tmp_path / "b.csv",
                      table_meta(exp, [], lat, det), det, lat, measure=_fake, progress=False)
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def test_entries_in_context_run_after_a_depthwise_producer(exp, det, lat_ctx):
    import onnx

    entries = build_entries(exp.space, det, context=True)
    block = next(e for e in entries if e.kind == "block" and e.op == "ir" and e.kernel == 7
                 and e.se > 0 and e.c_in != 3)
    alone = onnx.load_from_string(export_entry(block, det, context=False))
    inside = onnx.load_from_string(export_entry(block, det, context=True))
    convs = [n for n in inside.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in alone.graph.node) + 1
    first = convs[0]
    assert first.input[0] == "x0"  # the producer reads the input, the block reads the producer
    assert {a.name: onnx.helper.get_attribute_value(a) for a in first.attribute}["group"] == block.c_in
    stem = next(e for e in entries if e.c_in == 3)  # the image needs no producer
    ops = [[n.op_type for n in onnx.load_from_string(export_entry(stem, det, context=c)).graph.node]
           for c in (True, False)]
    assert ops[0] == ops[1]
    context = next(e for e in entries if e.key == context_key(block.inputs))
    t_block, t_context = (measure_entry(e, det, lat_ctx)["median_ms"] for e in (block, context))
    assert 0 < t_context < t_block  # an SE inverted residual, k7, does more than a 1x1 depthwise


@pytest.mark.slow
def test_predict_many_on_10k_archs_equals_predict(fake_table, exp, det):
    # the vectorised path the search uses (its speed: experiments/, not a timed test)
    table = LatencyTable.load(fake_table, exp.space, det)
    rng = np.random.default_rng(2)
    archs = [exp.space.sample(rng) for _ in range(10_000)]
    many = table.predict_many(archs)
    assert many.shape == (10_000,) and np.isfinite(many).all() and (many > 0).all()
    np.testing.assert_allclose(many[::200], [table.predict(a) for a in archs[::200]], rtol=1e-9)
    np.testing.assert_array_equal(table.predict_many(archs), many)  # cached ids, same answer


def test_missing_entry_raises_keyerror_naming_the_block(fake_table, exp, det, tmp_path):
    arch = exp.space.largest()
    gone = str(exp.space.layers(arch, SIZE)[3])
    frame = pd.read_csv(fake_table)
    frame[frame.key != gone].to_csv(tmp_path / "t.csv", index=False)
    write_meta(tmp_path / "t.csv", read_meta(fake_table))
    table = LatencyTable.load(tmp_path / "t.csv", exp.space, det, strict=True)
    with pytest.raises(KeyError, match=gone.replace("@", ".")):
        table.predict(arch)
    with pytest.raises(KeyError, match="no entry"):
        table.predict_many([exp.space.baseline, arch])


def test_table_from_another_space_or_input_size_is_a_clear_error(fake_table, exp, det):
    with pytest.raises(ValueError, match=r"input size \[64, 64\].*input size \[96, 96\]"):
        LatencyTable.load(fake_table, exp.space, dataclasses.replace(det, input_size=(96, 96)))
    other = Experiment.from_yaml(ROOT / "experiments/default.yaml").space
    with pytest.raises(ValueError, match=f"{exp.space.fingerprint()}.*{other.fingerprint()}"):
        LatencyTable.load(fake_table, other, det)
    with pytest.raises(ValueError, match="detector"):
        LatencyTable.load(fake_table, exp.space, dataclasses.replace(det, neck_channels=32))


def test_resume_keeps_measured_entries(exp, det, tmp_path):
    lat = LatencyConfig(flush_every=4)
    entries = build_entries(exp.space, det, lat.context)
    out, meta = tmp_path / "r.csv", table_meta(exp, [], lat, det)
    calls = []

    def dies_after_10(entry, det, lat):
        if len(calls) == 10:
            raise KeyboardInterrupt("simulated kill")
        calls.append(entry.key)
        return {**_fake(entry, det, lat), "median_ms": 1.0}

    with pytest.raises(KeyboardInterrupt):
        measure_table(entries, out, dict(meta), det, lat, measure=dies_after_10, progress=False)
    kept = pd.read_csv(out)
    assert len(kept) == 8  # flushed after entries 4 and 8; the 9th and 10th are lost
    assert not read_meta(out)["complete"]

    second = []

    def counting(entry, det, lat):
        second.append(entry.key)
        return {**_fake(entry, det, lat), "median_ms": 2.0}

    lat = LatencyConfig(flush_every=1000)  # same timing settings, fewer rewrites (test speed)
    frame = measure_table(entries, out, dict(meta), det, lat, measure=counting, progress=False)
    assert len(second) == len(entries) - 8 and not set(second) & set(kept.key)
    assert len(frame) == len(entries) and read_meta(out)["complete"]
    assert (frame.set_index("key").loc[kept.key, "median_ms"] == 1.0).all()
    assert list(frame.key) == [e.key for e in entries]
    # --force re-measures everything
    second.clear()
    frame = measure_table(entries, out, dict(meta), det, lat, force=True, measure=counting,
                          progress=False)
    assert len(second) == len(entries) and (frame.median_ms == 2.0).all()
    # another setup cannot be resumed into the same file
    with pytest.raises(ValueError, match="settings"):
        measure_table(entries, out, table_meta(exp, [], LatencyConfig(repeats=7), det), det, lat,
                      measure=counting, progress=False)


def test_real_timing_of_each_entry_kind(exp, det, lat):
    entries = build_entries(exp.space, det)
    picked = [next(e for e in entries if e.kind == kind)
              for kind in ("block", "lateral", "head", "reorder")]
    for entry in picked:
        t = measure_entry(entry, det, lat)
        assert 0 < t["median_ms"] <= t["p90_ms"] and t["cv"] >= 0 and t["n"] == lat.repeats


def test_exported_detector_matches_torch(exp, det):
    import onnxruntime as ort
    import torch

    from detection.model import build_detector

    model = build_detector(exp.space, exp.space.baseline, det).eval()
    sess = ort.InferenceSession(onnx_bytes(model, ((1, 3, *SIZE),)),
                                providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        cls, box = model(x)
    got = sess.run(None, {"x0": x.numpy()})
    np.testing.assert_allclose(got[0], cls.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], box.numpy(), atol=1e-4)


def test_fit_affine_recovers_known_affine():
    rng = np.random.default_rng(0)
    raw = rng.uniform(1, 30, 25)
    assert fit_affine(raw, 1.3 * raw + 0.7) == pytest.approx((1.3, 0.7), abs=1e-9)
    a, b = fit_affine(raw, 0.9 * raw - 0.4 + rng.normal(0, 0.01, raw.size))
    assert a == pytest.approx(0.9, abs=2e-3) and b == pytest.approx(-0.4, abs=3e-2)
    with pytest.raises(ValueError):
        fit_affine([1.0], [2.0])


def test_spread_archs_span_the_range(fake_table, exp, det):
    table = LatencyTable.load(fake_table, exp.space, det)
    cal = spread_archs(exp.space, table.raw_many, 8, seed=0, pool_size=500)
    val = spread_archs(exp.space, table.raw_many, 10, seed=1, pool_size=500, exclude=cal,
                       extremes=True)
    assert len(set(cal)) == 8 and len(set(val)) == 10 and not set(cal) & set(val)
    assert val[0] == exp.space.smallest() and val[-1] == exp.space.largest()
    assert exp.space.smallest() not in cal and exp.space.largest() not in cal
    raw = table.raw_many(val)
    assert raw[0] == raw.min() and raw[-1] == raw.max()
    assert np.all(np.diff(raw[1:-1]) > 0)  # evenly spaced targets -> increasing picks


@pytest.mark.slow
def test_calibrate_and_validate_end_to_end(fake_table, exp, det, lat, tmp_path):
    table_path = tmp_path / "c.csv"
    pd.read_csv(fake_table).to_csv(table_path, index=False)
    write_meta(table_path, read_meta(fake_table))
    record = calibrate_table(table_path, exp, lat, det, 3)
    meta = read_meta(table_path)
    assert meta["calibration"]["fitted"] and meta["calibration"]["n"] == 3
    assert meta["calibration"]["a"] == record["a"] and len(record["measured_ms"]) == 3
    table = LatencyTable.load(table_path, exp.space, det)
    assert table.calibration == (record["a"], record["b"])
    report = validate_table(table, lat, det, 4)
    assert report["n"] == 4 and set(report["raw"]) == {"mape_pct", "max_error_pct", "pearson_r",
                                                       "kendall_tau", "within_5_pct",
                                                       "within_10_pct"}
    archs = [s["arch"] for s in report["subnets"]]
    assert archs[0] == str(exp.space.smallest()) and archs[-1] == str(exp.space.largest())
    assert not set(archs) & set(record["archs"])
    assert all(s["measured_ms"] > 0 for s in report["subnets"])


def _mini_bundle(exp, det, lat, out: Path, subnets: int = 0) -> dict:
    entries = build_entries(exp.space, det, lat.context)
    picked = entries[:4] + [e for e in entries if e.kind != "block"]
    return write_bundle(exp, [], lat, det, out, subnets=subnets, entries=picked, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("context", [False, True])
def test_device_results_import_reproduces_the_table(exp, det, lat, tmp_path, context):
    lat = dataclasses.replace(lat, context=context)
    manifest = _mini_bundle(exp, det, lat, tmp_path / "bundle", subnets=2)
    results_path = tmp_path / "results.json"
    results = device_bench.run_bundle(tmp_path / "bundle/manifest.json", results_path, threads=1,
                                      warmup=1, repeats=3, flush_every=2, verbose=False)
    assert len(results["entries"]) == len(manifest["entries"])
    out = tmp_path / "device.csv"
    assert measure_main(["--import", str(results_path), "--out", str(out)]) == 0
    table = LatencyTable.load(out, exp.space, det)  # same fingerprint/input size as measured here
    rows = [e for e in manifest["entries"] if e["kind"] != "subnet"]
    assert list(table.frame.key) == [e["key"] for e in rows]
    for col in ("kind", "op", "kernel", "c_in", "c_out", "stride", "height", "width"):
        assert list(table.frame[col]) == [e[col] for e in rows]
    timed = {e["key"]: e["median_ms"] for e in results["entries"]}
    assert all(table[k] == timed[k] for k in table.frame.key)
    cal = table.meta["calibration"]
    assert cal["fitted"] and cal["n"] == 2
    subnets = [e for e in results["entries"] if e["kind"] == "subnet"]
    # the device timed as here (interleaved): per-call overhead and noise estimate come along,
    # and each part counts without the overhead, the whole subnet with it once
    ov = results["overhead_ms"]
    assert ov > 0 and table.meta["overhead_ms"] == ov and table.overhead_ms == ov
    assert table.meta["noise"]["rounds"] == results["noise"]["rounds"] >= 5
    assert table.meta["settings"]["method"] == "interleaved" and table.context == context
    assert any(e["kind"] == ("context" if context else "reorder") for e in rows)
    raw = [sum(w * (max(timed[k] - ov, 0) if timed[k] > 0 else 0) for k, w in s["parts"]) + ov
           for s in subnets]
    assert (cal["a"], cal["b"]) == pytest.approx(fit_affine(raw, [s["median_ms"] for s in subnets]))
    assert [table.raw(exp.space.parse(s["arch"])) for s in subnets] == pytest.approx(raw)
    assert table.meta["device"]["threads"] == 1 and table.meta["settings"]["repeats"] == 3
    # re-running the device script on the same results file resumes (nothing left to time)
    again = device_bench.run_bundle(tmp_path / "bundle/manifest.json", results_path, threads=1,
                                    warmup=1, repeats=3, verbose=False)
    assert [e["measured_at"] for e in again["entries"]] == [e["measured_at"] for e in
                                                            results["entries"]]
    # a file from somewhere else is rejected
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not a device_bench results file"):
        import_results(tmp_path / "bad.json", tmp_path / "bad.csv")


def test_a_sequential_bundle_times_one_entry_at_a_time(exp, det, tmp_path):
    seq = LatencyConfig(warmup=1, repeats=3, method="sequential")
    manifest = _mini_bundle(exp, det, seq, tmp_path / "bundle")
    assert manifest["settings"]["method"] == "sequential"
    results = device_bench.run_bundle(tmp_path / "bundle/manifest.json", tmp_path / "r.json",
                                      threads=1, verbose=False)
    assert len(results["entries"]) == len(manifest["entries"])
    assert "overhead_ms" not in results and "noise" not in results  # the old method times neither
    import_results(tmp_path / "r.json", tmp_path / "t.csv")
    assert LatencyTable.load(tmp_path / "t.csv", exp.space, det).overhead_ms == 0.0


def _torchless_env(tmp_path: Path) -> tuple[Path, dict]:
    """A venv without system site-packages; numpy + onnxruntime (and their deps) via symlinks."""
    import google.protobuf
    import numpy
    import onnxruntime

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(numpy.__file__).parents[1]
    libs = tmp_path / "libs"
    libs.mkdir()
    names = ["numpy", "numpy.libs", "onnxruntime", "onnxruntime.libs", "flatbuffers", "packaging"]
    for name in names:
        if (site / name).exists():
            (libs / name).symlink_to(site / name)
    (libs / "google").symlink_to(Path(google.protobuf.__file__).parents[1])
    assert Path(onnxruntime.__file__).parents[1] == site
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(libs), "HOME": str(tmp_path)}
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return python, env


@pytest.mark.slow
def test_bundle_script_runs_without_torch(exp, det, lat, tmp_path):
    bundle = tmp_path / "bundle"
    manifest = _mini_bundle(exp, det, lat, bundle)
    python, env = _torchless_env(tmp_path)
    cwd = tmp_path  # not the repo: facenas must not be importable either
    for module in ("torch", "supernet", "pandas"):
        r = subprocess.run([str(python), "-s", "-c", f"import {module}"], cwd=cwd, env=env,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "No module named" in r.stderr, module
    r = subprocess.run([str(python), "-s", "-c", "import numpy, onnxruntime; print('ok')"],
                       cwd=cwd, env=env, capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr
    r = subprocess.run([str(python), "-s", str(bundle / "device_bench.py"), "--threads", "1",
                        "--warmup", "1", "--repeats", "3"], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    results = json.loads((bundle / "results_t1.json").read_text())
    assert [e["key"] for e in results["entries"]] == [e["key"] for e in manifest["entries"]]
    assert all(e["median_ms"] > 0 for e in results["entries"])
    assert results["device"]["threads"] == 1 and results["table"] == manifest["table"]
    assert results["overhead_ms"] > 0 and results["noise"]["rounds"] >= 5  # the interleaved method


@pytest.mark.slow
def test_measure_cli_writes_table_and_sidecar(exp, monkeypatch, tmp_path):
    monkeypatch.setattr("latency.measure.measure_entry", _fake)
    out = tmp_path / "cli.csv"
    sets = ["latency.threads=2", "detector.input_size=[96,96]"]
    argv = ["--config", str(ROOT / "experiments/tiny.yaml"), "--out", str(out), "--no-progress"]
    assert measure_main(argv + [x for s in sets for x in ("--set", s)]) == 0
    meta = read_meta(out)
    assert meta["settings"]["threads"] == 2 and meta["input_size"] == [96, 96]
    assert meta["overrides"] == sets and meta["config"].endswith("tiny.yaml")
    det96 = Experiment.from_yaml(ROOT / "experiments/tiny.yaml", sets).section("detector",
                                                                               DetectorConfig)
    table = LatencyTable.load(out, exp.space, det96)
    assert table.context and len(table) == len(build_entries(exp.space, det96, context=True))
