"""Data pipeline speed: generation time of the default synthetic dataset and loader throughput.

Generates the default-size dataset into a fresh temporary cache (so the figure is a first use, not
a cache hit), then runs the default training loader (TrainTransform, `workers` processes) over it
and reports images/s over `--batches` + 1 batches, worker start-up included (workers prefetch
while the first batch is awaited, so excluding it would flatter short runs). Prints JSON:

    python experiments/bench_data.py
    {"synth_seconds": ..., "synth_cpu_seconds": ..., "synth_images": 1200, "loader_images_per_s": ..., ...}
    python experiments/bench_data.py --data /path/to/widerface --split train   # a real root

The loader should beat the training step: with batch 16 at 320 px a CPU step takes seconds, so a
few dozen images/s is already more than enough; on GPU compare with the step time there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from detection.data import DataConfig, build_loader
from detection.synth import ensure_synthetic


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="WIDER FACE root (default: generate the synthetic set)")
    p.add_argument("--split", default="train")
    p.add_argument("--workers", type=int, default=DataConfig.workers)
    p.add_argument("--batches", type=int, default=40, help="batches after the first")
    p.add_argument("--keep", action="store_true", help="keep the generated dataset's temp folder")
    return p


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the generation pool's workers)."""
    try:
        import resource
    except ImportError:  # Windows
        return time.process_time()
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    cfg = replace(DataConfig(), workers=args.workers)
    out: dict = {"cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                 "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    tmp = None
    if args.data is None:
        tmp = Path(tempfile.mkdtemp(prefix="facenas-bench-"))
        start, cpu = time.perf_counter(), _cpu_seconds()
        root = ensure_synthetic(tmp, seed=cfg.synth_seed, n_train=cfg.synth_train_images,
                                n_val=cfg.synth_val_images, size=cfg.synth_image_size)
        out["synth_seconds"] = round(time.perf_counter() - start, 2)
        out["synth_cpu_seconds"] = round(_cpu_seconds() - cpu, 2)  # load-independent: summed over processes
        out["synth_images"] = cfg.synth_train_images + cfg.synth_val_images
        out["synth_root"] = str(root)
    else:
        root = Path(args.data)
    try:
        loader = build_loader(replace(cfg, root=str(root)), args.split, train=True, seed=0)
        start = time.perf_counter()
        batches = iter(loader)
        n = len(next(batches)[0])
        out["first_batch_seconds"] = round(time.perf_counter() - start, 2)
        for i, (images, _) in enumerate(batches):
            n += len(images)
            if i + 1 >= args.batches:
                break
        seconds = time.perf_counter() - start  # worker start-up included: a lower bound on throughput
        out.update(loader_images_per_s=round(n / seconds, 1), loader_images=n, batch_size=cfg.batch_size,
                   workers=cfg.workers, train_size=cfg.train_size, skipped=loader.dataset.n_skipped)
        del batches, loader  # stop the persistent workers before the folder goes
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
