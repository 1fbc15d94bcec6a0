"""train_supernet.py on the tiny config: loss goes down, resume is exact, bad input is explained."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import stages.trainer as run
from core.checkpoint import load_checkpoint
from core.experiment import Experiment
from train_supernet import main

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # generated data goes to a per-session temp cache, not ~/.cache
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path_factory.getbasetemp() / "facenas-cache"))


def _args(out: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_training_lowers_the_loss(tmp_path):
    main(_args(tmp_path / "run", "--set", "train.epochs=6", "--set", "train.max_steps_per_epoch=6",
               "--set", "train.eval_images=0", "--set", "train.lr=0.01"))
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert len(log) == 36 and (log["paths"] == 1).all()  # one strict-fair path per batch
    # RetinaNet's prior bias starts every anchor at p = 0.01, so the loss no longer begins with the
    # big drop of learning that faces are rare: what is left is learning the faces
    assert log["loss"].tail(6).mean() < 0.9 * log["loss"].head(6).mean()
    ck = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert ck["kind"] == "supernet" and ck["state"]["step"] == 36


def test_writes_run_folder_and_subnet_evals(tmp_path):
    main(_args(tmp_path / "run"))
    out = tmp_path / "run"
    assert {"config.yaml", "supernet.pt", "log.csv", "evals.csv"} <= {p.name for p in out.iterdir()}
    evals = pd.read_csv(out / "evals.csv")
    assert set(evals["subnet"]) >= {"smallest", "largest", "baseline", "random0"}
    assert evals[["easy", "medium", "hard"]].apply(lambda c: c.between(0, 1)).all().all()
    assert len(evals) == 2 * 4  # two epochs, four subnets each
    # the saved config reproduces the experiment, space inlined
    saved = Experiment.from_yaml(out / "config.yaml")
    assert saved.space.fingerprint() == Experiment.from_yaml(TINY).space.fingerprint()


def test_uniform_sampler_option(tmp_path):
    main(_args(tmp_path / "run", "--sampler", "uniform", "--set", "train.eval_images=0"))
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert (log["paths"] == 1).all()


@pytest.mark.slow
def test_resume_after_crash_is_bitwise_equal(tmp_path, monkeypatch):
    extra = ("--set", "train.epochs=2", "--set", "train.max_steps_per_epoch=3")
    main(_args(tmp_path / "straight", *extra))

    saves = {"n": 0}
    real_save = run.save_checkpoint

    def crash_after_third_checkpoint(obj, path):
        real_save(obj, path)
        saves["n"] += 1
        if saves["n"] == 3:  # step 3 = mid-way, after the first epoch's evaluation
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(run, "save_checkpoint", crash_after_third_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        main(_args(tmp_path / "resumed", *extra))
    monkeypatch.setattr(run, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "resumed" / "supernet.pt")["state"]["step"] < 6
    main(_args(tmp_path / "resumed", *extra, "--resume"))

    a = load_checkpoint(tmp_path / "straight" / "supernet.pt")
    b = load_checkpoint(tmp_path / "resumed" / "supernet.pt")
    assert a["state"] == b["state"]
    assert a["sampler"] == b["sampler"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    la, lb = pd.read_csv(tmp_path / "straight" / "log.csv"), pd.read_csv(tmp_path / "resumed" / "log.csv")
    pd.testing.assert_series_equal(la["loss"], lb["loss"])
    ea, eb = pd.read_csv(tmp_path / "straight" / "evals.csv"), pd.read_csv(tmp_path / "resumed" / "evals.csv")
    pd.testing.assert_frame_equal(ea, eb)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    extra = ("--set", "train.eval_images=0", "--set", "train.epochs=1")
    main(_args(tmp_path / "run", *extra))
    with pytest.raises(SystemExit, match="already holds a run"):
        main(_args(tmp_path / "run", *extra))
    with pytest.raises(SystemExit, match="different config"):
        main(_args(tmp_path / "run", "--resume", "--set", "train.weight_decay=0.5", *extra))
    # a later stage's settings (search, latency, retrain) do not make it another training run
    main(_args(tmp_path / "run", "--resume", "--set", "search.population=4", *extra))
    main(_args(tmp_path / "run", "--overwrite", *extra))


@pytest.mark.parametrize("bad, message", [
    ("train.lrr=0.1", "unknown key 'lrr'"),
    ("train.epochs=two", "expected an integer"),
    ("data.batch_size=0", "batch_size >= 1"),
])
def test_bad_config_values_are_named(tmp_path, bad, message):
    with pytest.raises(SystemExit, match=message):
        main(_args(tmp_path / "run", "--set", bad))


def test_checkpoint_from_another_space_is_refused(tmp_path):
    extra = ("--set", "train.eval_images=0", "--set", "train.epochs=1")
    main(_args(tmp_path / "run", *extra))
    other = tmp_path / "other"
    other.mkdir()
    (other / "supernet.pt").write_bytes((tmp_path / "run" / "supernet.pt").read_bytes())
    with pytest.raises(SystemExit, match="another search space"):
        main(_args(other, "--resume", *extra, "--set", "space.kernels=[3,5]"))


@pytest.mark.parametrize("extra", [("train.precision=bf16",), ("train.channels_last=true",)])
def test_mixed_precision_and_channels_last_train(tmp_path, extra):
    sets = [a for e in extra for a in ("--set", e)]
    main(_args(tmp_path / "run", "--set", "train.eval_images=0", *sets))
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert len(log) == 4 and log["loss"].map(math.isfinite).all()


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="train.precision must be one of"):
        main(_args(tmp_path / "run", "--set", "train.precision=fp8"))


@pytest.mark.slow
def test_path_schedule_in_training(tmp_path):
    """Warm start on the largest path (1 pass per step), then sandwich + distillation (4 passes);
    the same run killed mid-way and resumed is bitwise equal (own-batch queues and phases resume)."""
    extra = ("--set", "train.epochs=3", "--set", "train.max_steps_per_epoch=2", "--set", "train.eval_images=0",
             "--set", "train.warm_fraction=0.3", "--set", "train.shrink_fraction=0.3",
             "--set", "train.sandwich=true", "--set", "train.distill=1.0", "--set", "train.sampler=uniform")
    main(_args(tmp_path / "run", *extra))
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert log["paths"].tolist() == [1, 1, 4, 4, 4, 4]
    own = ("--set", "train.epochs=2", "--set", "train.max_steps_per_epoch=4", "--set", "train.eval_images=0",
           "--set", "train.path_batches=own", "--set", "train.sampler=strict_fair",
           "--set", "train.warm_fraction=0", "--set", "train.shrink_fraction=0")
    main(_args(tmp_path / "own", *own))
    ck = load_checkpoint(tmp_path / "own" / "supernet.pt")
    assert (pd.read_csv(tmp_path / "own" / "log.csv")["paths"] == 1).all()
    import json

    sampler = json.loads(ck["sampler"])
    assert sampler["steps"] == 2 and len(sampler["pending"]) == 4  # 8 paths drawn as 2 fair steps of 6


def test_train_config_rejects_inconsistent_schedule():
    from detection.loop import TrainConfig

    with pytest.raises(ValueError, match="distill"):
        TrainConfig(distill=1.0)
    with pytest.raises(ValueError, match="path_batches"):
        TrainConfig(path_batches="some")
    with pytest.raises(ValueError, match="warm_fraction"):
        TrainConfig(warm_fraction=0.8, shrink_fraction=0.5)
