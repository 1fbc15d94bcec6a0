"""What a user meets beyond bad input (issue 15): one writer per run folder, artifacts readable by
the user's group as the umask says, no "successful" run on unreadable data, the final model usable.
(Bad files are tests/test_bad_input_table.py; kills and Ctrl-C are tests/test_crash.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from detection.data import DataConfig, resolve_root
from core.experiment import Experiment
from core.io import atomic_write_text
from core.lock import LockError, hold_file_lock, hold_lock
from test_bad_input import _error, _fake_table

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.yaml"

# Holds a lock until killed; with "fork", also leaves a forked child (a DataLoader worker's
# situation) that outlives it. Prints "held" once the lock is taken.
_HOLDER = r"""
import multiprocessing, sys, time
from core.lock import hold_file_lock, hold_lock
folder, kind, fork = sys.argv[1], sys.argv[2], sys.argv[3] == "fork"
def child_main(ready):  # runs after the child's at-fork handlers (which drop the lock fd)
    ready.set()
    time.sleep(60)
with (hold_lock(folder) if kind == "folder" else hold_file_lock(folder)):
    if fork:
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        child = ctx.Process(target=child_main, args=(ready,))
        child.start()
        ready.wait(60)  # on a loaded machine the child may not have run yet: wait until it has
        print(child.pid, flush=True)
    print("held", flush=True)
    time.sleep(60)
"""


class Holder:
    """Another process holding the lock of `path` (a run folder, or a file with kind="file")."""

    def __init__(self, path: Path, kind: str = "folder", fork: bool = False):
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), kind,
                                      "fork" if fork else "-"], cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.child = int(self.proc.stdout.readline()) if fork else None
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        for pid in (self.proc.pid, self.child):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait()


@pytest.fixture
def holder():
    held: list[Holder] = []
    yield lambda *args, **kwargs: held.append(Holder(*args, **kwargs)) or held[-1]
    for h in held:
        h.kill()


@pytest.fixture(autouse=True)
def _cache_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path_factory.getbasetemp() / "facenas-cache"))


# -- one writer per run folder ----------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(tmp_path, holder):
    from evolve import main as evolve
    from latency.measure import main as measure
    from retrain import main as retrain
    from train_supernet import main as train

    out = tmp_path / "run"
    pid = holder(out).proc.pid
    message = _error(train, ["--config", TINY, "--out", out, "--no-progress"])
    assert f"{out} is being written by another process (PID {pid})" in message
    assert not (out / "config.yaml").exists()  # refused before writing anything
    message = _error(retrain, ["--arch", "baseline", "--config", TINY, "--out", out])
    assert f"(PID {pid})" in message

    table = tmp_path / "table" / "latency.csv"
    pid = holder(table, "file").proc.pid
    message = _error(measure, ["--config", TINY, "--out", table, "--no-progress"])
    assert f"{table} is being written by another process (PID {pid})" in message

    search = tmp_path / "search"  # evolve takes the lock once its inputs are loaded
    pid = holder(search).proc.pid
    supernet = tmp_path / "supernet"
    train([str(a) for a in ["--config", TINY, "--out", supernet, "--no-progress", "--sampler",
                            "uniform", "--set", "train.eval_images=0", "--set", "train.epochs=1"]])
    fake = _fake_table(tmp_path / "fake" / "latency.csv", [])
    message = _error(evolve, ["--config", TINY, "--supernet", supernet / "supernet.pt",
                              "--latency-table", fake, "--latency-budget", "0.85ms", "--out", search,
                              "--no-progress"])
    assert f"{search} is being written by another process (PID {pid})" in message


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    h = holder(tmp_path, fork=True)  # its forked child lives on after the kill
    with pytest.raises(LockError, match=f"PID {h.proc.pid}"):
        with hold_lock(tmp_path):
            pass
    os.kill(h.proc.pid, signal.SIGKILL)
    h.proc.wait()
    os.kill(h.child, 0)  # the child is still alive, yet it does not hold the lock
    with hold_lock(tmp_path) as lock_file:  # at once, no manual clean-up
        assert lock_file.read_text().strip() == str(os.getpid())
    assert lock_file.exists()  # never deleted (see core/lock.py)


def test_the_lock_is_reentrant_in_one_process_and_released(tmp_path):
    with hold_lock(tmp_path):
        with hold_lock(tmp_path):  # the pipeline holds its run folder while a stage locks it
            pass
        with hold_file_lock(tmp_path / "latency.csv"):  # a file's lock is another lock
            pass
    script = f"from core.lock import hold_lock\nwith hold_lock({str(tmp_path)!r}): pass"
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)  # released: free again


# -- artifacts respect the umask ----------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_artifacts_respect_the_umask(tmp_path, umask, mode):
    from latency.device_bench import _write_json  # the device bundle's own writer (numpy only)

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "report.html", "<html></html>")
        atomic_write_text(tmp_path / "report.html", "<html>again</html>")  # replacing keeps it
        _write_json(tmp_path / "results.json", {"entries": []})
    finally:
        os.umask(old)
    for name in ("report.html", "results.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# -- unreadable training data -------------------------------------------------------------------------
def test_unreadable_training_images_stop_training_before_any_checkpoint(tmp_path):
    from train_supernet import main as train

    wider = shutil.copytree(resolve_root(Experiment.from_yaml(TINY).section("data", DataConfig)),
                            tmp_path / "wider")
    for image in (wider / "WIDER_train" / "images").rglob("*.jpg"):
        image.write_bytes(image.read_bytes()[:100])  # truncated
    out = tmp_path / "run"
    message = _error(train, ["--config", TINY, "--data", wider, "--out", out, "--no-progress"])
    assert "none of the 16 train images checked" in message and str(wider) in message
    assert not (out / "supernet.pt").exists()
