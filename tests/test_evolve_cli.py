"""evolve.py's command line: a search continuing a run takes the run's experiment; flags that
contradict each other are refused instead of one silently winning."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import evolve
from detection.config import DetectorConfig
from detection.model import build_supernet_detector
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, table_meta
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny supernet run folder as train_supernet.py leaves it (config.yaml + supernet.pt) and a
    table 'timed' by a deterministic function of the entry (no onnxruntime)."""
    exp = Experiment.from_yaml(ROOT / "experiments/tiny.yaml")
    det = exp.section("detector", DetectorConfig)
    run = tmp_path_factory.mktemp("run") / "tiny"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(exp.resolved(), sort_keys=False))
    model = build_supernet_detector(exp.space, det)
    torch.save({"kind": "supernet", "space": exp.space.fingerprint(), "model": model.state_dict(),
                "config": yaml.safe_dump(exp.resolved(), sort_keys=False)},
               run / "supernet.pt")
    lat = LatencyConfig(flush_every=1000)
    measure_table(build_entries(exp.space, det, lat.context), run / "latency.csv", table_meta(exp, [], lat, det),
                  det, lat, progress=False,
                  measure=lambda e, d, la: {"median_ms": 0.01 + 1e-9 * len(e.key), "p90_ms": 0.0,
                                            "cv": 0.0, "pass_cv": float("nan")})
    return run


def test_search_on_a_run_without_config_uses_the_runs_experiment(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here: nothing to find but what the flags name
    out = tmp_path / "search"
    evolve.main(["--supernet", str(tiny_run / "supernet.pt"), "--latency-table",
                 str(tiny_run / "latency.csv"), "--latency-budget", "5ms", "--population", "4",
                 "--generations", "1", "--out", str(out), "--no-progress"])
    saved = yaml.safe_load((out / "search.yaml").read_text())
    assert saved["resolved"]["experiment"] == str(tiny_run / "config.yaml")
    candidates = pd.read_csv(out / "candidates.csv")
    assert len(candidates) >= 4 and candidates["baseline"].any()  # the tiny space's baseline row


def test_objective_mnas_with_an_algorithm_is_refused(tiny_run, tmp_path):
    with pytest.raises(SystemExit, match="--objective mnas .* excludes --algorithm random"):
        evolve.main(["--supernet", str(tiny_run / "supernet.pt"), "--latency-table",
                     str(tiny_run / "latency.csv"), "--latency-budget", "5ms", "--objective", "mnas",
                     "--algorithm", "random", "--out", str(tmp_path / "s"), "--no-progress"])
    assert not (tmp_path / "s").exists()
