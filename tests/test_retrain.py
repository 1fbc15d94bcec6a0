"""retrain.py end to end on the tiny experiment, pick rules and errors, ONNX export/check/timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import retrain as retrain_cli
from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.export import OnnxMismatch, check_onnx, export_onnx
from latency.timing import time_models
from detection.model import build_detector
from stages.pick import pick_from_pareto
from stages.run import arch_hash
from core.experiment import Experiment

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """Generated data goes to a temp folder, shared by this module's tests (not ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACENAS_CACHE", str(tmp_path_factory.mktemp("facenas-cache")))
        yield


@pytest.fixture(scope="module")
def exp() -> Experiment:
    return Experiment.from_yaml(TINY)


@pytest.fixture
def pareto(exp, tmp_path) -> tuple[Path, list[str]]:
    """A hand-written front: AP 0.3 / 0.5 / 0.4 / 0.7 at 1 / 2 / 3 / 5 ms."""
    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys(str(exp.space.sample(rng)) for _ in range(10)))[:4]
    frame = pd.DataFrame({"arch": archs, "ap_mean": [0.3, 0.5, 0.4, 0.7],
                          "latency_ms": [1.0, 2.0, 3.0, 5.0]})
    path = tmp_path / "search" / "pareto.csv"
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    return path, archs


def test_pick_rules(pareto):
    frame = pd.read_csv(pareto[0])
    assert pick_from_pareto(frame, "best-under:4ms", "ap_mean")["ap_mean"] == 0.5
    assert pick_from_pareto(frame, "best-under:0.004s", "ap_mean")["ap_mean"] == 0.5
    assert pick_from_pareto(frame, "best-under:5", "ap_mean")["ap_mean"] == 0.7
    assert pick_from_pareto(frame, "best", "ap_mean")["ap_mean"] == 0.7
    assert pick_from_pareto(frame, "2", "ap_mean")["latency_ms"] == 3.0


def test_fastest_not_worse_pick():
    frame = pd.DataFrame({"arch": list("abcd"), "latency_ms": [1.0, 2.0, 3.0, 4.0],
                          "ap_mean": [0.2, 0.5, 0.6, 0.9]})
    # the fastest row whose one-shot AP reaches the baseline's
    assert pick_from_pareto(frame, "fastest-not-worse", "ap_mean", 0.5)["arch"] == "b"
    assert pick_from_pareto(frame, "fastest-not-worse", "ap_mean", 0.55)["arch"] == "c"
    with pytest.raises(ValueError, match="no Pareto row reaches the baseline"):
        pick_from_pareto(frame, "fastest-not-worse", "ap_mean", 0.95)
    with pytest.raises(ValueError, match="needs the baseline's one-shot AP"):
        pick_from_pareto(frame, "fastest-not-worse", "ap_mean", None)


@pytest.mark.parametrize("pick, message", [
    ("best-under:0.5ms", "no Pareto row is under 0.5 ms"),
    ("7", "the front has only 4 rows"),
    ("fastest-ish", "expected a row number, 'best', 'best-under:<budget>'"),
    ("best-under:soon", "cannot parse latency budget"),
])
def test_bad_pick_is_a_clear_error(pareto, tmp_path, pick, message):
    with pytest.raises(SystemExit) as err:
        retrain_cli.main(["--pareto", str(pareto[0]), "--pick", pick, "--config", str(TINY),
                          "--out", str(tmp_path / "r")])
    assert message in str(err.value)
    assert not (tmp_path / "r").exists()


def test_val_only_root_needs_train_split_val(tmp_path):
    (tmp_path / "root" / "WIDER_val" / "images").mkdir(parents=True)
    with pytest.raises(SystemExit, match="--train-split val"):
        retrain_cli.main(["--arch", "baseline", "--config", str(TINY), "--data",
                          str(tmp_path / "root"), "--out", str(tmp_path / "r")])


def test_pick_needs_pareto(tmp_path):
    with pytest.raises(SystemExit, match="--pick goes with --pareto"):
        retrain_cli.main(["--arch", "baseline", "--pick", "0", "--config", str(TINY)])


def test_onnx_check_reports_the_difference(exp, tmp_path):
    det_cfg = exp.section("detector", DetectorConfig)
    model = build_detector(exp.space, exp.space.baseline, det_cfg)
    path = export_onnx(model, tmp_path / "m.onnx", det_cfg.input_size)
    assert check_onnx(model, path, det_cfg.input_size, atol=1e-4) <= 1e-4
    with torch.no_grad():  # the torch model drifts away from the exported one
        for p in model.parameters():
            p.mul_(1.1)
    with pytest.raises(OnnxMismatch, match=r"differs from torch by up to .* > atol 0.0001"):
        check_onnx(model, path, det_cfg.input_size, atol=1e-4)
    for method in ("interleaved", "sequential"):  # the one timing routine, both statistics
        lat = LatencyConfig(warmup=1, repeats=4, rounds=2, method=method)
        timing = time_models([path], lat, progress=False)[0]
        assert timing["median_ms"] > 0 and len(timing["rounds_ms"]) == 2


@pytest.mark.slow
def test_retrain_end_to_end_and_resume(pareto, tmp_path, monkeypatch):
    """--pareto/--pick best-under: interrupted after epoch 1, --resume trains only epoch 2."""
    path, archs = pareto
    out = tmp_path / "r"
    monkeypatch.chdir(tmp_path)  # runs/tiny/latency.csv of the checkout must not be found
    argv = ["--pareto", str(path), "--pick", "best-under:4ms", "--config", str(TINY), "--out",
            str(out), "--no-progress"]
    import stages.trainer as run

    real, calls = run.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        retrain_cli.main(argv)
    assert (out / "model.pt").is_file() and not (out / "metrics.json").exists()
    assert len(pd.read_csv(out / "log.csv")) == 2  # epoch 1: 2 steps
    monkeypatch.setattr(run, "train_one_epoch", real)

    with pytest.raises(SystemExit, match="--resume"):  # a run is there: no silent restart
        retrain_cli.main(argv)
    metrics = retrain_cli.main(argv + ["--resume"])
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == [0, 1, 2, 3] and log["epoch"].tolist() == [0, 0, 1, 1]

    assert metrics["arch"] == archs[1]  # the best AP (0.5) under 4 ms
    assert (out / "arch.txt").read_text().strip() == archs[1]
    assert metrics["one_shot"]["ap_mean"] == 0.5
    assert set(metrics["ap"]) >= {"ap_easy", "ap_medium", "ap_hard", "ap_mean"}
    assert all(0 <= v <= 1 for v in metrics["ap"].values())
    assert metrics["onnx"]["max_abs_diff"] <= metrics["onnx"]["atol"] == 1e-4
    assert metrics["latency"]["measured_ms"] > 0
    assert "predicted_ms" not in metrics["latency"]  # no table for this experiment
    assert metrics["params"] > metrics["params_backbone"] > 0 and metrics["macs"] > 0
    assert metrics["train"]["steps"] == 4
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (out / "model.onnx").stat().st_size > 0
    # finished: --resume returns the saved metrics
    assert retrain_cli.main(argv + ["--resume"]) == metrics


@pytest.mark.slow
def test_retrain_default_out_and_inherited_init(exp, tmp_path, monkeypatch):
    """--arch baseline --init supernet, output under runs/<name>/retrain/<arch hash>."""
    from stages.trainer import train

    monkeypatch.chdir(tmp_path)
    train(Experiment.from_yaml(TINY, ["train.epochs=1", "train.eval_images=0"]),
          tmp_path / "runs" / "tiny", progress=False)
    metrics = retrain_cli.main(["--arch", "baseline", "--config", str(TINY), "--init", "supernet",
                                "--epochs", "1", "--eval-images", "4", "--no-progress"])
    out = tmp_path / "runs" / "tiny" / "retrain" / arch_hash(exp.space.baseline)
    assert (out / "metrics.json").is_file()
    assert metrics["baseline"] and metrics["train"]["init"].startswith("supernet:")
    assert metrics["eval"]["images"] == 4 and metrics["train"]["steps"] == 2
