"""Crash safety: SIGKILL the long commands at random points, resume, compare with uninterrupted runs.

Each command runs on experiments/tiny.yaml in a subprocess started through `_WRAPPER`, which
appends one line per finished unit of work (optimizer step, search generation, latency entry) to a
progress file, so the test knows exactly how much work the killed process had done and can bound
what the resumed one redoes: at most one checkpoint interval, one generation, one flush. After every
kill each artifact must parse (no half-written file); after the last resume no temp file is left
and the outputs equal an uninterrupted run (bitwise where CPU runs are deterministic; latency
values are timings, so there only the keys and the entries measured before each kill are compared).
The whole pipeline.py is also stopped (SIGKILL or Ctrl-C) in the first second of every stage and
rerun each time, without flags, until it completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import stages.trainer as run
from detection.config import DetectorConfig
from detection.loss import DetectionLoss
from core.checkpoint import load_checkpoint
from evolution import ArchSearchConfig, fake_arch_evaluator, run_search
from latency.keys import build_entries
from latency.table import LatencyTable
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.yaml"
TIMING = ("seconds", "images_per_s_per_path")  # log.csv columns that are wall-clock measurements

# Runs `python -c _WRAPPER <kind> <script or module> args...`: the real entry point, plus one
# progress line per unit of work (written and closed at once, so a SIGKILL loses none).
_WRAPPER = r"""
import os, runpy, sys
kind, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
progress = os.environ["FACENAS_PROGRESS"]

def note(text):
    with open(progress, "a") as f:
        f.write(text + "\n")

def counted(module, name, label):
    real = getattr(module, name)
    def wrapper(*a, **k):
        out = real(*a, **k)
        if out is not None:
            note(label(a, k))
        return out
    setattr(module, name, wrapper)

if kind == "train":
    import detection.loop as m
    counted(m, "train_step", lambda a, k: "step")
elif kind == "evolve":
    import evolution.optimizer as m
    counted(m, "evaluate_cached", lambda a, k: f"generation {a[4]}")
elif kind == "latency":
    import latency.measure as m
    counted(m, "open_entry", lambda a, k: a[0].key)
sys.argv = [target, *args]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:  # a module: call its main, so the patched module is the one that runs
    import importlib
    sys.exit(importlib.import_module(target).main(args))
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "facenas-cache"  # shared with the other test files


@contextlib.contextmanager
def _env(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(cache))


def _start(kind: str, target: str, args: list[str], progress: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FACENAS_PROGRESS": str(progress), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-c", _WRAPPER, kind, target, *args], cwd=ROOT,
                                env=env, stdout=f, stderr=subprocess.STDOUT)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class Runner:
    """Starts one command repeatedly (with --resume after the first start); `kill_after(n)`
    SIGKILLs it once its n-th unit of work is done (plus a random delay), `finish()` lets it end."""

    def __init__(self, tmp: Path, kind: str, target: str, args: list[str], seed: int):
        self.tmp, self.kind, self.target, self.args = tmp, kind, target, args
        self.rng, self.runs = random.Random(seed), 0
        self.log = tmp / f"{kind}.log"

    def _launch(self) -> tuple[subprocess.Popen, Path]:
        extra = ["--resume"] if self.runs and self.kind != "latency" else []  # latency: re-run
        self.runs += 1
        progress = self.tmp / f"{self.kind}.progress{self.runs}"
        return _start(self.kind, self.target, self.args + extra, progress, self.log), progress

    def kill_after(self, n: int, max_delay: float = 0.3) -> list[str]:
        """Run until `n` units are done, wait up to `max_delay` s, SIGKILL; the units done."""
        proc, progress = self._launch()
        deadline = time.monotonic() + 120
        while len(_lines(progress)) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(self.rng.uniform(0, max_delay))
        if proc.poll() is not None:
            pytest.fail(f"{self.kind} ended (code {proc.returncode}) before the kill point {n}:\n"
                        f"{self.log.read_text()[-3000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return _lines(progress)

    def finish(self) -> list[str]:
        proc, progress = self._launch()
        if proc.wait(timeout=300) != 0:
            pytest.fail(f"{self.kind} failed:\n{self.log.read_text()[-3000:]}")
        return _lines(progress)


def assert_artifacts_whole(folder: Path) -> None:
    """Every artifact in `folder` parses (a kill must never leave half a file behind)."""
    for path in folder.rglob("*"):
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # a killed writer's temp file: the next write of that artifact removes it
        if path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            load_checkpoint(path)
        elif path.suffix == ".onnx":
            import onnx
            onnx.load(str(path))


def assert_no_temp_files(folder: Path) -> None:
    stray = [p.name for p in folder.rglob(".*.tmp")]
    assert not stray, f"temp files left in {folder}: {stray}"


# -- train_supernet.py -----------------------------------------------------------------------------
TRAIN_SETS = ["--set", "train.max_steps_per_epoch=4", "--set", "train.checkpoint_every=2"]
CHECKPOINT_EVERY = 2


def _train_args(out: Path) -> list[str]:
    return ["--config", str(TINY), "--out", str(out), "--no-progress", *TRAIN_SETS]


@pytest.fixture(scope="module")
def reference_supernet(tmp_path_factory, cache) -> Path:
    """An uninterrupted training run (in-process: the same code, one thread either way)."""
    from train_supernet import main

    out = tmp_path_factory.mktemp("train-straight")
    with _env(FACENAS_CACHE=str(cache)):
        main(_train_args(out))
    return out


def _assert_same_training(a: Path, b: Path, name: str) -> None:
    ca, cb = load_checkpoint(a / name), load_checkpoint(b / name)
    for key in ("state", "sampler", "evals", "space", "config", "kind", "arch"):
        assert ca[key] == cb[key], key
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for k, v in ca["rng"].items():
        assert (torch.equal(v, cb["rng"][k]) if isinstance(v, torch.Tensor) else v == cb["rng"][k]), k
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    la, lb = pd.read_csv(a / "log.csv"), pd.read_csv(b / "log.csv")
    pd.testing.assert_frame_equal(la.drop(columns=list(TIMING)), lb.drop(columns=list(TIMING)))
    assert (a / "evals.csv").exists() == (b / "evals.csv").exists()
    if (a / "evals.csv").exists():
        pd.testing.assert_frame_equal(pd.read_csv(a / "evals.csv"), pd.read_csv(b / "evals.csv"))


def _checkpoint_step(path: Path) -> int:
    return load_checkpoint(path)["state"]["step"] if path.exists() else 0


@pytest.mark.slow
def test_train_supernet_survives_sigkill(tmp_path, reference_supernet):
    out = tmp_path / "run"
    runner = Runner(tmp_path, "train", "train_supernet.py", _train_args(out), seed=0)
    total = len(pd.read_csv(reference_supernet / "log.csv"))  # 8 steps
    resumed_from = 0
    for kill in sorted(runner.rng.sample(range(1, total - 1), 3)):  # killed three times
        done = resumed_from + len(runner.kill_after(kill - resumed_from))
        assert_artifacts_whole(out)
        saved = _checkpoint_step(out / "supernet.pt")
        assert done - saved <= CHECKPOINT_EVERY, (done, saved)  # at most one interval is redone
        if (out / "log.csv").exists():  # the log never runs ahead of the checkpoint
            assert len(pd.read_csv(out / "log.csv")) <= saved
        resumed_from = saved
    redone = runner.finish()
    assert len(redone) == total - resumed_from  # the resumed run starts at the checkpoint's step
    assert_no_temp_files(out)
    _assert_same_training(reference_supernet, out, "supernet.pt")


# -- latency.measure -------------------------------------------------------------------------------
FLUSH_EVERY = 40
LATENCY_SETS = ["--set", f"latency.flush_every={FLUSH_EVERY}", "--set", "latency.warmup=1",
                "--set", "latency.repeats=3"]


@pytest.fixture(scope="module")
def killed_table(tmp_path_factory) -> dict:
    """A latency table built by a run killed twice and re-run; what was seen at each kill."""
    tmp = tmp_path_factory.mktemp("latency")
    out = tmp / "table" / "latency.csv"
    runner = Runner(tmp, "latency", "latency.measure",
                    ["--config", str(TINY), "--out", str(out), "--no-progress", *LATENCY_SETS], seed=0)
    kills, kept = [], 0
    for _ in range(2):
        n = runner.rng.randrange(FLUSH_EVERY // 2, 3 * FLUSH_EVERY)
        done = kept + len(runner.kill_after(n, max_delay=0.2))
        assert_artifacts_whole(out.parent)
        rows = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["key"])
        kills.append({"done": done, "rows": rows})
        kept = len(rows)
    final_units = runner.finish()
    return {"out": out, "kills": kills, "final_units": final_units}


@pytest.mark.slow
def test_latency_measure_survives_sigkill(killed_table):
    out = killed_table["out"]
    exp = Experiment.from_yaml(TINY)
    keys = [e.key for e in build_entries(exp.space, exp.section("detector", DetectorConfig), context=True)]
    final = pd.read_csv(out)
    assert list(final["key"]) == keys  # every entry, each once, in table order
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["complete"] and meta["n_entries"] == len(keys)
    remeasured = len(killed_table["final_units"])
    for kill in killed_table["kills"]:
        assert kill["done"] - len(kill["rows"]) <= FLUSH_EVERY  # at most one flush is lost
        # entries on disk at a kill are kept unchanged (timings, timestamps) by the resumed runs
        kept = final.set_index("key").loc[kill["rows"]["key"]].reset_index()
        pd.testing.assert_frame_equal(kept, kill["rows"].reset_index(drop=True), check_dtype=False)
    assert remeasured == len(keys) - len(killed_table["kills"][-1]["rows"])
    assert_no_temp_files(out.parent)


# -- evolve.py -------------------------------------------------------------------------------------
GENERATIONS = 6


@pytest.mark.slow
def test_evolve_survives_sigkill(tmp_path, reference_supernet, killed_table):
    from evolve import main

    exp = Experiment.from_yaml(TINY)
    table = LatencyTable.load(killed_table["out"], exp.space, exp.section("detector", DetectorConfig))
    budget = float(table.predict_many([exp.space.smallest(), exp.space.largest()]).mean())

    def args(out):
        return ["--config", str(TINY), "--supernet", str(reference_supernet / "supernet.pt"),
                "--latency-table", str(killed_table["out"]), "--latency-budget", f"{budget:.6f}ms",
                "--generations", str(GENERATIONS), "--out", str(out), "--no-progress"]

    main(args(tmp_path / "straight"))
    out = tmp_path / "run"
    runner = Runner(tmp_path, "evolve", "evolve.py", args(out), seed=0)
    resumed_from = 0
    for kill in (1, 3):
        done = resumed_from + len(runner.kill_after(kill - resumed_from))
        assert_artifacts_whole(out)
        checkpoint = out / "checkpoint.json"
        saved = json.loads(checkpoint.read_text())["generation"] if checkpoint.exists() else 0
        assert done - saved <= 1, (done, saved)  # at most one generation is redone
        generations = pd.read_csv(out / "candidates.csv")["generation"]
        assert generations.max() <= saved  # the archive never runs ahead of the checkpoint
        resumed_from = saved
    assert len(runner.finish()) == GENERATIONS - resumed_from
    assert_no_temp_files(out)
    for name in ("candidates.csv", "pareto.csv"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    assert (yaml.safe_load((out / "search.yaml").read_text())
            == yaml.safe_load((tmp_path / "straight" / "search.yaml").read_text()))


@pytest.mark.parametrize("algorithm", ["nsga2", "mnas", "random"])
def test_search_checkpoint_is_data_and_resumes_bit_identically(tmp_path, algorithm):
    """checkpoint.json holds plain data (no pickle); each algorithm resumes exactly from it."""
    space = Experiment.from_yaml(TINY).space
    evaluate, latency = fake_arch_evaluator(space, (64, 64))

    def search(out, generations, resume=False):
        cfg = ArchSearchConfig(algorithm=algorithm, population=6, generations=generations, seed=2,
                           latency_budget="4ms", progress=False)
        return run_search(space, evaluate, latency, cfg, out, input_size=(64, 64),
                          baseline=space.baseline, resume=resume)

    search(tmp_path / "straight", 4)
    search(tmp_path / "resumed", 2)
    state = json.loads((tmp_path / "resumed" / "checkpoint.json").read_text())
    assert state["generation"] == 2 and state["format"].startswith("facenas-search-checkpoint")
    assert not list((tmp_path / "resumed").glob("*.pkl"))
    search(tmp_path / "resumed", 4, resume=True)
    for name in ("candidates.csv", "pareto.csv", "checkpoint.json"):
        assert ((tmp_path / "resumed" / name).read_bytes()
                == (tmp_path / "straight" / name).read_bytes()), name


# -- retrain.py ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_retrain_survives_sigkill(tmp_path, killed_table):
    from retrain import main

    def args(out):
        return ["--arch", "baseline", "--config", str(TINY), "--out", str(out), "--no-progress",
                "--latency-table", str(killed_table["out"]), *TRAIN_SETS,
                "--set", "train.eval_images=0", "--set", "retrain.eval_images=4"]

    main(args(tmp_path / "straight"))
    out = tmp_path / "run"
    runner = Runner(tmp_path, "train", "retrain.py", args(out), seed=3)
    done = len(runner.kill_after(runner.rng.randrange(1, 7)))
    assert_artifacts_whole(out)
    assert done - _checkpoint_step(out / "model.pt") <= CHECKPOINT_EVERY
    runner.finish()
    assert_no_temp_files(out)
    _assert_same_training(tmp_path / "straight", out, "model.pt")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "straight", out))
    assert a["ap"] == b["ap"] and a["params"] == b["params"] and a["macs"] == b["macs"]
    assert a["onnx"]["max_abs_diff"] == b["onnx"]["max_abs_diff"]


# -- non-finite losses -----------------------------------------------------------------------------
class _NanAfter(DetectionLoss):
    """The real loss, NaN from call `start` on (for `count` calls, or forever)."""

    calls, start, count, on_first_nan = 0, 0, None, None

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        cls = type(self)
        cls.calls += 1
        nan = cls.calls > cls.start and (cls.count is None or cls.calls <= cls.start + cls.count)
        if nan:
            if cls.on_first_nan is not None:
                cls.on_first_nan()
                cls.on_first_nan = None
            out = {**out, "loss": out["loss"] * float("nan")}
        return out


def _nan_loss(monkeypatch, start: int, count: int | None, on_first_nan=None) -> None:
    cls = type("NanLoss", (_NanAfter,), {"calls": 0, "start": start, "count": count,
                                        "on_first_nan": on_first_nan})
    monkeypatch.setattr(run, "DetectionLoss", cls)


def _nan_args(out: Path) -> list[str]:  # uniform sampler: one loss call per step
    return ["--config", str(TINY), "--out", str(out), "--no-progress", "--sampler", "uniform",
            "--set", "train.eval_images=0", "--set", "train.epochs=1",
            "--set", "train.max_steps_per_epoch=6"]


def test_repeated_nonfinite_loss_stops_keeping_the_last_good_checkpoint(tmp_path, monkeypatch):
    from train_supernet import main

    out = tmp_path / "run"
    on_disk = {}
    _nan_loss(monkeypatch, start=2, count=None,
              on_first_nan=lambda: on_disk.update(bytes=(out / "supernet.pt").read_bytes()))
    with pytest.warns(RuntimeWarning, match="non-finite loss, step skipped"):
        with pytest.raises(SystemExit) as err:
            main(_nan_args(out))
    message = str(err.value)
    assert message.startswith("error: 3 non-finite losses in a row") and "\n" not in message
    assert "train.lr" in message and "--resume" in message
    assert (out / "supernet.pt").read_bytes() == on_disk["bytes"]  # the last good one, untouched
    ck = load_checkpoint(out / "supernet.pt")
    assert ck["state"]["step"] == 2 and len(pd.read_csv(out / "log.csv")) == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    # the advice works: resume from that checkpoint with a lower learning rate
    monkeypatch.setattr(run, "DetectionLoss", DetectionLoss)
    summary = main(_nan_args(out) + ["--resume", "--set", "train.lr=0.001"])
    assert summary["steps"] == 6  # the skipped batches are trained again, at the lower rate
    log = pd.read_csv(out / "log.csv")
    assert list(log["step"]) == list(range(6))
    assert (log["lr"][:2] > 0.001).all() and (log["lr"][2:] <= 0.001).all()


def test_a_single_nonfinite_loss_is_skipped(tmp_path, monkeypatch):
    from train_supernet import main

    _nan_loss(monkeypatch, start=2, count=1)
    with pytest.warns(RuntimeWarning, match="step 2: non-finite loss, step skipped"):
        summary = main(_nan_args(tmp_path / "run"))
    assert summary["steps"] == 5  # six batches, one skipped
    assert pd.read_csv(tmp_path / "run" / "log.csv")["loss"].notna().all()


# -- pipeline.py: killed or interrupted anywhere ---------------------------------------------------
INTERRUPTED = "interrupted: run the same command again to resume"
STAGE_LINE = re.compile(r"== (.+)")  # "== search" when it starts, "== search: 1.5 s" when done


def _pipeline(tmp: Path, cache: Path, n: int) -> tuple[subprocess.Popen, Path, Path]:
    """Start the whole tiny pipeline in `tmp` (its runs/ folder); stdout and stderr files."""
    out, err = tmp / f"pipeline{n}.out", tmp / f"pipeline{n}.err"
    env = {**os.environ, "FACENAS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, str(ROOT / "pipeline.py"), "--config", str(TINY),
                                 "--latency-budget", "5ms", "--retrain-epochs", "1"],
                                cwd=tmp, env=env, stdout=o, stderr=e)
    return proc, out, err


def _started(out: Path) -> list[str]:
    return [m[1] for line in _lines(out) if (m := STAGE_LINE.fullmatch(line)) and ": " not in m[1]]


def _next_stage(proc: subprocess.Popen, out: Path, done: set[str]) -> str | None:
    """Wait until a stage not in `done` starts; None if the pipeline ends first."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        fresh = [s for s in _started(out) if s not in done]
        if fresh:
            return fresh[0]
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    pytest.fail(f"no new stage within 300 s: {_started(out)}")


def _stop(proc: subprocess.Popen, out: Path, err: Path, delay: float, sig: int) -> None:
    """Send `sig` after `delay` s; Ctrl-C must end with one line and no traceback."""
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.fail(f"pipeline ended (code {proc.returncode}) before the kill:\n{err.read_text()[-3000:]}")
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=120)
    finished = '"seconds"' in out.read_text()  # the work was all done: stopped while exiting
    if sig == signal.SIGINT and not finished:
        text = err.read_text()
        assert code == 130 and "Traceback" not in text, text[-3000:]
        assert text.rstrip("\n").splitlines()[-1] == INTERRUPTED


@pytest.mark.slow
def test_pipeline_resumes_after_sigkill_or_ctrl_c_at_any_moment(tmp_path, cache):
    """Stopped at a random moment of its first seconds (imports, data), then within the first
    second of every stage in turn, alternating Ctrl-C and SIGKILL: a plain rerun always continues
    and finally completes."""
    rng = random.Random(0)
    run, killed, n = tmp_path / "runs" / "tiny", set(), 0
    proc, out, err = _pipeline(tmp_path, cache, n)
    _stop(proc, out, err, rng.uniform(0, 6), signal.SIGINT)
    while True:
        n += 1
        proc, out, err = _pipeline(tmp_path, cache, n)
        stage = _next_stage(proc, out, killed)
        if stage is None:  # every stage was stopped once: this run completed
            break
        killed.add(stage)
        _stop(proc, out, err, rng.uniform(0, 1), signal.SIGKILL if n % 2 else signal.SIGINT)
        if run.exists():
            assert_artifacts_whole(run)
    assert proc.wait() == 0, err.read_text()[-3000:]
    assert len(killed) >= 5, killed  # train, latency, search, retrain, report at least
    assert_no_temp_files(run)
    pareto = pd.read_csv(run / "search" / "pareto.csv")
    retrained = {json.loads(p.read_text())["arch"] for p in (run / "retrain").glob("*/metrics.json")}
    assert retrained & set(pareto["arch"])
    assert (run / "search" / "report.html").stat().st_size > 10_000
    # the search was stopped too, yet its archive is that of one uninterrupted run
    candidates = pd.read_csv(run / "search" / "candidates.csv")
    assert candidates["arch"].is_unique and candidates["generation"].max() == 1
