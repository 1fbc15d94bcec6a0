"""Two gloo processes on CPU: identical weights, exact fairness, sharded evaluation = single process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TINY = Path(__file__).resolve().parent.parent / "experiments" / "tiny.yaml"
# FairNAS's m paths on one batch per step, no warm start: the decks are then balanced after every
# step, which is what the fairness check below can assert on both ranks
TRAIN = ["train.eval_images=0", "train.epochs=1", "train.max_steps_per_epoch=3", "data.workers=0",
         "train.path_batches=shared", "train.warm_fraction=0", "train.shrink_fraction=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int, cache: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), FACENAS_CACHE=cache)
    torch.set_num_threads(1)


def _train_worker(rank: int, world: int, port: int, cache: str, out: str) -> None:
    _env(rank, world, port, cache)
    from stages.trainer import train
    from core.experiment import Experiment

    summary = train(Experiment.from_yaml(TINY, TRAIN), Path(out) / "run", progress=False)
    Path(out, f"rank{rank}.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


def _eval_worker(rank: int, world: int, port: int, cache: str, out: str, archs: list[str]) -> None:
    _env(rank, world, port, cache)
    from detection.distributed import gather_shards, init_distributed
    from core.checkpoint import load_checkpoint
    from evolution.evaluator import EvalConfig, SupernetEvaluator
    from core.experiment import Experiment

    exp = Experiment.from_yaml(TINY)
    info = init_distributed(torch.device("cpu"))
    ev = SupernetEvaluator.from_checkpoint(load_checkpoint(Path(out) / "single" / "supernet.pt"),
                                           exp, EvalConfig(8, 1, 8))
    results = gather_shards([exp.space.parse(a) for a in archs], info, ev)
    Path(out, f"eval{rank}.json").write_text(json.dumps({"results": results,
                                                         "n_evaluated": ev.n_evaluated}))
    dist.destroy_process_group()


@pytest.fixture
def cache(tmp_path_factory, monkeypatch) -> str:
    path = str(tmp_path_factory.getbasetemp() / "facenas-cache")
    monkeypatch.setenv("FACENAS_CACHE", path)
    return path


@pytest.mark.slow
def test_two_ranks_train_identically_and_fairly(tmp_path, cache):
    mp.spawn(_train_worker, args=(2, _free_port(), cache, str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["steps"] == r1["steps"] == 3
    assert r0["weights_sha256"] == r1["weights_sha256"]  # bitwise-identical weights
    assert r0["sampler_counts"] == r1["sampler_counts"]  # the same paths on both ranks
    counts = r0["sampler_counts"]
    for name, c in counts.items():  # width/depth decks: exactly balanced after every step
        if name.endswith((".width", ".depth")):
            assert len(set(c)) == 1, (name, c)
    assert (tmp_path / "run" / "supernet.pt").exists()  # rank 0 wrote the checkpoint
    assert not list(tmp_path.glob("run/*.tmp"))


@pytest.mark.slow
def test_sharded_evaluation_equals_single_process(tmp_path, cache):
    from stages.trainer import train
    from evolution.evaluator import EvalConfig, SupernetEvaluator
    from core.checkpoint import load_checkpoint
    from core.experiment import Experiment

    exp = Experiment.from_yaml(TINY, TRAIN)
    train(exp, tmp_path / "single", progress=False)
    rng = np.random.default_rng(0)
    archs = [str(exp.space.sample(rng)) for _ in range(5)]
    single = SupernetEvaluator.from_checkpoint(load_checkpoint(tmp_path / "single" / "supernet.pt"),
                                               Experiment.from_yaml(TINY), EvalConfig(8, 1, 8))
    expected = single([exp.space.parse(a) for a in archs])
    mp.spawn(_eval_worker, args=(2, _free_port(), cache, str(tmp_path), archs), nprocs=2)
    e0, e1 = (json.loads((tmp_path / f"eval{r}.json").read_text()) for r in (0, 1))
    assert e0["results"] == e1["results"] == expected  # exact, and in the same order
    assert (e0["n_evaluated"], e1["n_evaluated"]) == (3, 2)  # each rank did its share only
