"""report.py on a tiny search folder: self-contained HTML, front archs listed, missing pieces noted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import report as report_cli
from evolution import ArchSearchConfig, fake_arch_evaluator, run_search
from core.experiment import Experiment

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


@pytest.fixture(scope="module")
def space():
    return Experiment.from_yaml(TINY).space


@pytest.fixture
def search_dir(space, tmp_path) -> Path:
    """runs/tiny/search from a real (fast, fake-evaluator) search."""
    evaluate, latency = fake_arch_evaluator(space)
    config = ArchSearchConfig(population=8, generations=3, latency_budget="8ms", ap_metric="ap",
                          progress=False)
    out = tmp_path / "runs" / "tiny" / "search"
    result = run_search(space, evaluate, latency, config, out, input_size=(64, 64),
                        baseline=space.baseline)
    assert len(result.pareto) >= 2
    return out


def _supernet_run(run: Path) -> None:
    steps = np.arange(12)
    pd.DataFrame({"step": steps, "epoch": steps // 6, "loss": 5 - 0.2 * steps,
                  "lr": 1e-3 * (1 - steps / 12), "paths": 6}).to_csv(run / "log.csv", index=False)
    rows = [{"subnet": s, "arch": "x", "easy": 0.1 * e + 0.1, "medium": 0.1 * e, "hard": 0.05 * e,
             "epoch": e, "step": 6 * (e + 1)} for e in range(2) for s in ("smallest", "largest", "random0")]
    pd.DataFrame(rows).to_csv(run / "evals.csv", index=False)


def _retrained(run: Path, arch: str, baseline: bool = False) -> None:
    out = run / "retrain" / ("base" if baseline else "r0")
    out.mkdir(parents=True)
    metrics = {"arch": arch, "arch_hash": "r0", "baseline": baseline,
               "ap": {"ap_easy": 0.6, "ap_medium": 0.5, "ap_hard": 0.2, "ap_mean": 0.43, "ap": 0.43},
               "eval": {"images": 8}, "one_shot": None,
               "onnx": {"max_abs_diff": 1e-6, "atol": 1e-4},
               "latency": {"measured_ms": 2.5, "predicted_ms": 2.2}, "params": 1000, "macs": 10**6,
               "train": {"init": "scratch"}}
    (out / "metrics.json").write_text(json.dumps(metrics))


def _self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in text  # no CSS-loaded files either


def test_report_full(search_dir, space):
    run = search_dir.parent
    _supernet_run(run)
    pareto = pd.read_csv(search_dir / "pareto.csv")
    _retrained(run, pareto["arch"].iloc[-1])
    _retrained(run, str(space.baseline), baseline=True)
    path = report_cli.main([str(search_dir)])
    assert path == search_dir / "report.html"
    text = path.read_text()
    _self_contained(text)
    for arch in pareto["arch"]:
        assert arch in text
    assert str(space.baseline) in text
    assert len(re.findall(r'src="data:image/png', text)) == 3  # pareto, baseline, training
    for name in ("report_pareto.png", "report_training.png", "report_baseline.png"):
        assert (search_dir / name).stat().st_size > 1000
    assert "none found" not in text  # every piece was found


def test_report_missing_pieces_are_notes(search_dir, tmp_path):
    """A bare search folder elsewhere: no supernet run, no table, no retrained models."""
    bare = tmp_path / "elsewhere" / "search"
    bare.mkdir(parents=True)
    for name in ("candidates.csv", "pareto.csv"):  # and no search.yaml
        (bare / name).write_bytes((search_dir / name).read_bytes())
    (bare / "pareto.csv").write_text("")  # an empty, unreadable file
    path = report_cli.main([str(bare), "--retrained", str(tmp_path / "nope")])
    text = path.read_text()
    _self_contained(text)
    for note in ("search.yaml not found", "Pareto front:", "supernet run: none found",
                 "nope: no metrics.json", "retrained models: none found"):
        assert note in text, note


def test_report_explicit_paths(search_dir, tmp_path):
    run = tmp_path / "supernet-elsewhere"
    run.mkdir()
    _supernet_run(run)
    table = tmp_path / "lut.csv"
    (tmp_path / "lut.csv.validation.json").write_text(json.dumps({
        "n": 6, "device": {"cpu": "test cpu", "threads": 1},
        "raw": {"mape_pct": 9.0, "max_error_pct": 15.0, "pearson_r": 0.99, "kendall_tau": 0.9},
        "calibrated": {"mape_pct": 4.0, "max_error_pct": 8.0, "pearson_r": 0.99, "kendall_tau": 0.9}}))
    out = tmp_path / "out" / "r.html"
    path = report_cli.main([str(search_dir), "--supernet-run", str(run), "--latency-table",
                            str(table), "--out", str(out)])
    text = path.read_text()
    assert path == out and "test cpu" in text and "supernet learning rate" not in text
    _self_contained(text)
    assert (out.parent / "report_training.png").is_file()


def test_report_missing_search_folder(tmp_path):
    with pytest.raises(SystemExit, match="search folder not found"):
        report_cli.main([str(tmp_path / "nothing")])


def test_report_shows_the_confirmed_front(search_dir, space):
    pareto = pd.read_csv(search_dir / "pareto.csv")
    table = pd.DataFrame([
        {"arch": pareto["arch"].iloc[0], "latency_ms": 1.25, "search_ap": 0.61, "ap": 0.5512,
         "diff": -0.0321, "diff_lo": -0.0605, "diff_hi": -0.0042, "baseline": False, "images": 200,
         "bn_images": 128},
        {"arch": str(space.baseline), "latency_ms": 3.0, "search_ap": 0.6, "ap": 0.5833,
         "diff": 0.0, "diff_lo": 0.0, "diff_hi": 0.0, "baseline": True, "images": 200, "bn_images": 128}])
    table.to_csv(search_dir / "confirmed.csv", index=False)
    text = report_cli.main([str(search_dir)]).read_text()
    section = text.split("<h2>Front confirmed before the pick</h2>")[1].split("<h2>")[0]
    assert "re-scored with the same inherited weights on 200 val images" in section
    assert "-0.0321 [-0.0605, -0.0042]" in section and "0.5512" in section
    assert f"{space.baseline}</code> (baseline)" in section
