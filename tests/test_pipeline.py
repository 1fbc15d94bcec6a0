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
    args = ["--config", str(TINY), "--latency-budget", "0.1ms", "--retrain-epochs", "1"]
    first = pipeline.main(args)
    run = tmp_path / "runs" / "tiny"
    assert (run / "supernet.pt").exists() and (run / "latency.csv").exists()
    pareto = pd.read_csv(run / "search" / "pareto.csv")
    assert len(pareto) >= 1 and (pareto["latency_ms"] <= 0.1).all()
    (metrics_path,) = (run / "retrain").glob("*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["arch"] in set(pareto["arch"])
    assert (run / "search" / "report.html").stat().st_size > 10_000
    candidates = pd.read_csv(run / "search" / "candidates.csv")

    second = pipeline.main(args)  # everything is done: each stage resumes and does no new work
    assert second["total"] < first["total"]
    pd.testing.assert_frame_equal(candidates, pd.read_csv(run / "search" / "candidates.csv"))
