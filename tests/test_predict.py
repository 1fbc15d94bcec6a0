"""python -m stages.predict: official prediction files from a checkpoint and a folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detection.wider_eval import load_ground_truth, evaluate
from stages.predict import main as predict
from detection.prediction_files import read_predictions
from train_supernet import main as train

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


def test_predict_writes_official_files_that_the_evaluator_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path / "cache"))
    train(["--config", str(TINY), "--out", str(tmp_path / "run"), "--no-progress",
           "--set", "train.eval_images=0", "--set", "train.epochs=1"])
    (root,) = (tmp_path / "cache").glob("synth-*")
    images = root / "WIDER_val" / "images"
    from core.experiment import Experiment

    arch = str(Experiment.from_yaml(TINY).space.baseline)
    n = predict(["--weights", str(tmp_path / "run" / "supernet.pt"), "--arch", arch,
                 "--images", str(images), "--out", str(tmp_path / "pred"), "--size", "96",
                 "--no-progress"])
    assert n == len(list(images.rglob("*.jpg"))) > 0
    preds = read_predictions(tmp_path / "pred")
    assert len(preds) == n
    for boxes in preds.values():  # x y w h score, best first
        assert boxes.shape[1] == 5 and np.all(np.diff(boxes[:, 4]) <= 0)
    ap = evaluate(preds, load_ground_truth(root / "ground_truth"))
    assert set(ap) == {"easy", "medium", "hard"}


def test_supernet_checkpoint_needs_an_arch(tmp_path, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path / "cache"))
    train(["--config", str(TINY), "--out", str(tmp_path / "run"), "--no-progress",
           "--set", "train.eval_images=0", "--set", "train.epochs=1"])
    with pytest.raises(SystemExit, match="needs --arch"):
        predict(["--weights", str(tmp_path / "run" / "supernet.pt"), "--images", str(tmp_path),
                 "--out", str(tmp_path / "pred")])


def test_a_retrained_model_predicts(tmp_path, monkeypatch):
    """retrain.py's model.pt (its config records the arch) is what predict takes, without --arch."""
    from retrain import main as retrain

    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "retrain"
    retrain(["--arch", "baseline", "--config", str(TINY), "--out", str(out), "--no-progress",
             "--epochs", "1", "--eval-images", "2", "--set", "train.eval_images=0"])
    (root,) = (tmp_path / "cache").glob("synth-*")
    images = root / "WIDER_val" / "images"
    n = predict(["--weights", str(out / "model.pt"), "--images", str(images),
                 "--out", str(tmp_path / "pred"), "--size", "96", "--no-progress"])
    assert n == len(list(images.rglob("*.jpg"))) == len(read_predictions(tmp_path / "pred"))
