"""pipeline.py end to end on the tiny config, then again: the second run resumes every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import pipeline

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


@pytest.mark.slow
def test_pipeline_runs_whole_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path / "cache"))
    args = ["--config", str(TINY), "--latency-budget", "5ms", "--retrain-epochs", "1",
            "--trust-archs", "2"]
    first = pipeline.main(args)
    run = tmp_path / "runs" / "tiny"
    assert (run / "supernet.pt").exists() and (run / "latency.csv").exists()
    pareto = pd.read_csv(run / "search" / "pareto.csv")
    assert len(pareto) >= 1 and (pareto["latency_ms"] <= 5).all()
    retrained = {m["arch"]: m for m in (json.loads(p.read_text())
                                        for p in (run / "retrain").glob("*/metrics.json"))}
    trust = json.loads((run / "retrain" / "trust.json").read_text())
    comparison = json.loads((run / "retrain" / "comparison.json").read_text())
    pick, baseline = trust["rows"][0]["arch"], trust["rows"][1]["arch"]
    # the pick comes from the front; the baseline and the trust-check archs are retrained too,
    # with the same budget, and every one of them is in the trust check
    assert pick in set(pareto["arch"]) and comparison["pick"]["arch"] == pick
    assert baseline == comparison["baseline"]["arch"] and retrained[baseline]["baseline"]
    assert {r["arch"] for r in trust["rows"]} == set(retrained) and len(retrained) >= 3
    assert {m["train"]["epochs"] for m in retrained.values()} == {1}
    d = comparison["pick_minus_baseline"]["mean"]
    assert d["lo"] <= d["value"] <= d["hi"]
    assert comparison["speedup"] == pytest.approx(
        retrained[baseline]["latency"]["measured_ms"] / retrained[pick]["latency"]["measured_ms"])
    html = (run / "search" / "report.html").read_text()
    assert len(html) > 10_000 and "Pick vs baseline, retrained" in html
    assert "Can the one-shot ranking be trusted here?" in html and trust["verdict"] in html
    candidates = pd.read_csv(run / "search" / "candidates.csv")

    second = pipeline.main(args)  # everything is done: each stage resumes and does no new work
    assert second["total"] < first["total"]
    pd.testing.assert_frame_equal(candidates, pd.read_csv(run / "search" / "candidates.csv"))
