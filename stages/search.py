"""Stage 4: search the run's space under a latency budget (pymoo NSGA-II by default).

    >>> result = search(Run.open("runs/tiny"), "5ms")        # doctest: +SKIP

Objectives: the one-shot AP estimate (inherited supernet weights, BN recalibrated, AP on a fixed
val subset; `search.ap_metric`) and the table's predicted latency, with the budget as a
constraint. Writes candidates.csv, pareto.csv, pareto.png, search.yaml (and checkpoint.json after
every generation: `resume` continues bit-identically) to the run's search folder.

Under torchrun every rank runs the same search (same seed) and evaluates its share of each
generation; results are gathered so all ranks continue identically, and rank 0 writes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from core.checkpoint import load_checkpoint
from core.device import select_device
from core.lock import LockError, hold_lock
from detection.config import DetectorConfig
from detection.distributed import gather_shards, init_distributed
from detection.loop import TrainConfig
from evolution import ArchSearchConfig, parse_budget, run_search
from evolution.evaluator import EvalConfig, SupernetEvaluator
from latency.keys import build_entries
from latency.table import LatencyTable
from stages.run import Run
from stages.table import build_table


def search(run: Run, budget: str | None = None, *, supernet: Path | None = None,
           table: Path | None = None, out: Path | None = None, resume: bool = False,
           overwrite: bool = False, strict: bool = False, device: str = "auto"):
    """Search `run` (its supernet and table unless given) under `budget` (default
    search.latency_budget); returns the `evolution.SearchResult`. A missing table at the run's
    own path is measured first (`stages.table.build_table`)."""
    exp = run.exp if budget is None else run.with_overrides([f"search.latency_budget={budget}"]).exp
    cfg = exp.section("search", ArchSearchConfig)
    det = exp.section("detector", DetectorConfig)
    supernet = Path(supernet or run.supernet)
    table_path = Path(table or run.table)
    out = Path(out or run.search_dir)
    if cfg.latency_budget is None:
        raise ValueError("give --latency-budget (e.g. 12ms) or search.latency_budget")
    parse_budget(cfg.latency_budget)  # fail before loading anything
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if not supernet.is_file():
        raise FileNotFoundError(f"supernet checkpoint not found: {supernet} (train one with "
                                f"facenas train --config {run.config})")
    if not table_path.is_file() and table is None:
        print(f"no latency table at {table_path}: measuring it on this machine")
        build_table(run)
    threads = exp.section("train", TrainConfig).threads
    if threads:
        torch.set_num_threads(threads)
    lut = LatencyTable.load(table_path, exp.space, det, strict=strict)
    if strict:  # refuse before any search work, naming what is missing
        missing = lut.missing(e.key for e in build_entries(exp.space, det, lut.context))
        if missing:
            raise ValueError(f"--strict: latency table {table_path} lacks {len(missing)} entries of "
                             f"this space (first: {missing[0]}); complete it with facenas latency "
                             f"measure --config {run.config} --out {table_path}")
    print(f"supernet {supernet}\nlatency table {table_path} ({lut.meta.get('device', {})})")
    evaluator = SupernetEvaluator.from_checkpoint(
        load_checkpoint(supernet), exp,
        EvalConfig(cfg.eval_images, cfg.bn_batches, cfg.eval_batch_size),
        device=device, source=str(supernet))
    info = init_distributed(select_device(device))
    sharded = lambda archs: gather_shards(archs, info, evaluator)  # noqa: E731
    run_out = out
    if not info.is_main:  # a private copy: same state on resume, writes go nowhere shared
        run_out = Path(tempfile.mkdtemp(prefix=f"facenas-rank{info.rank}-"))
        if resume and out.is_dir():
            shutil.copytree(out, run_out, dirs_exist_ok=True)
    lock, refusal = hold_lock(out), None  # one writer per search folder: rank 0
    if info.is_main:
        try:
            lock.acquire()
        except LockError as err:
            refusal = str(err)
    refusal = gather_shards([refusal] * info.world_size, info, lambda mine: mine)[0]
    if refusal is not None:  # every rank stops (none waits for rank 0 forever)
        raise LockError(refusal)
    try:
        return run_search(exp.space, sharded, lut.predict_many, cfg, run_out,
                          input_size=det.input_size, baseline=exp.space.baseline,
                          resume=resume, overwrite=overwrite,
                          record={"supernet": str(supernet), "latency_table": str(table_path),
                                  "experiment": str(run.config)})
    finally:
        lock.release()
