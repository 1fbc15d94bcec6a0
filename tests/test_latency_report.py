"""`python -m latency.report`: per-factor latency, dominated choices, narrowed space, two devices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, table_meta
from latency.report import compare, factor_effects, flag_dominated, latency_report, main
from latency.table import LatencyTable
from core.experiment import Experiment
from core.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def _device(slow_kernel: int | None):
    """A fake device: cost grows with channels, resolution and kernel; `slow_kernel` runs 4x
    slower than its size says (a kernel the device has no fast path for)."""
    def timing(entry, det, lat):
        ms = 1e-4 * (entry.c_in + entry.c_out) * entry.height * entry.width / 64 * (1 + entry.kernel / 10)
        if entry.kind == "block" and entry.kernel == slow_kernel:
            ms *= 4
        if entry.kind == "block" and entry.se:
            ms *= 1.2
        return {"median_ms": ms, "p90_ms": ms, "cv": 0.0, "pass_cv": float("nan")}
    return timing


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    exp = Experiment.from_yaml(ROOT / "experiments/tiny.yaml")
    det = exp.section("detector", DetectorConfig)
    lat = LatencyConfig(flush_every=1000)
    out = {}
    for name, slow in (("slow5", 5), ("plain", None)):
        path = tmp_path_factory.mktemp(name) / "t.csv"
        measure_table(build_entries(exp.space, det, lat.context), path, table_meta(exp, [], lat, det), det, lat,
                      measure=_device(slow), progress=False)
        out[name] = path
    return exp, det, out


def test_report_flags_a_synthetic_dominated_choice(tables):
    exp, det, paths = tables
    effects = factor_effects(LatencyTable.load(paths["slow5"], exp.space, det))
    kernels = effects[effects.factor == "kernel"]
    assert set(kernels.stage) == {s.index for s in exp.space.searchable_stages}
    k5, k7 = kernels[kernels.choice == "5"], kernels[kernels.choice == "7"]
    assert k5.dominated.all() and (k5.dominated_by == "7").all()  # slower, fewer params and MACs
    assert not k7.dominated.any() and not kernels[kernels.choice == "3"].dominated.any()
    assert (kernels.groupby("stage").added_ms.min() == 0).all()  # relative to the cheapest
    assert (effects[effects.factor == "se"].query("choice == '0.25'").added_ms > 0).all()


def test_flag_dominated_on_a_hand_made_frame():
    frame = pd.DataFrame({"stage": 1, "factor": "op", "choice": ["a", "b", "c"],
                          "latency_ms": [1.0, 2.0, 1.5], "params": [10, 10, 20],
                          "macs": [100, 90, 200]})
    out = flag_dominated(frame)
    assert list(out.dominated) == [False, True, False]  # b: slower than a, no more capacity
    assert out.dominated_by[1] == "a"
    # within the tolerance a choice is not dominated (timing noise)
    near = flag_dominated(frame.assign(latency_ms=[1.0, 1.001, 1.5]))
    assert not near.dominated.any()


def test_cli_writes_report_and_narrowed_space(tables, tmp_path, capsys):
    exp, det, paths = tables
    assert main(["--table", str(paths["slow5"]), "--out", str(tmp_path / "r")]) == 0
    space = yaml.safe_load((tmp_path / "r" / "space_narrowed.yaml").read_text())
    assert space["kernels"] == [3, 7] and space["ops"] == list(exp.space.config.ops)
    narrowed = SearchSpace.from_dict(space, base_dir=ROOT / "experiments")  # a usable space
    assert narrowed.kernels == (3, 7) and narrowed.baseline == exp.space.baseline
    for name in ("effects.csv", "heatmap.png", "report.html"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert "'kernel': [5]" in capsys.readouterr().out


def test_two_tables_side_by_side_show_where_they_disagree(tables, tmp_path):
    exp, det, paths = tables
    a = factor_effects(LatencyTable.load(paths["slow5"], exp.space, det))
    b = factor_effects(LatencyTable.load(paths["plain"], exp.space, det))
    both = compare(a, b)
    kernel = both[both.factor == "kernel"]
    assert kernel.disagree.all() and kernel.note.str.contains("dominated").all()
    assert not both[both.factor == "se"].disagree.any()  # SE costs the same way on both
    png, html = latency_report(paths["slow5"], paths["plain"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "order their choices differently" in html
    png, html = latency_report(paths["slow5"])  # what the search report embeds
    assert png[:4] == b"\x89PNG" and "yes: 7" in html and "kernels" in html
