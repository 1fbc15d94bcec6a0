"""How many images does BatchNorm recalibration need before a subnet's one-shot AP is stable?

    python experiments/bench_bn_recal.py --supernet runs/default/supernet.pt --out runs/bn_recal

For a few subnets of a trained supernet (smallest, baseline, largest, random ones) and each
recalibration size N (16 .. 512 training images at the evaluation resolution), BN statistics are
re-estimated on R disjoint sets of N images and the subnet is scored on the same val images; the
spread of its AP over the R sets is the noise recalibration adds. The search's default
(`search.bn_batches` x 16 images) should sit where that spread is small next to the AP gaps
between subnets. Writes bn_recal.csv / bn_recal.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from detection.config import DetectorConfig
from detection.data import DataConfig
from detection.valset import ValSet, recalibration_batches
from detection.model import build_supernet_detector
from core.checkpoint import load_checkpoint
from supernet.bn import recalibrate_bn
from core.experiment import Experiment
from core.io import atomic_write_csv, atomic_write_text
from supernet.net import SupernetConfig


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="runs/default/supernet.pt")
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--repeats", type=int, default=3, help="disjoint image sets per size")
    p.add_argument("--archs", type=int, default=3, help="random subnets besides the named ones")
    p.add_argument("--eval-images", type=int, default=100)
    p.add_argument("--out", default="runs/bn_recal")
    return p


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(Path(args.supernet))
    import yaml

    exp = Experiment.from_dict(yaml.safe_load(ckpt["config"]), source=args.supernet)
    det, data = exp.section("detector", DetectorConfig), exp.section("data", DataConfig)
    model = build_supernet_detector(exp.space, det, exp.section("supernet", SupernetConfig).sharing)
    model.load_state_dict(ckpt["model"])
    size = max(det.input_size)
    val = ValSet.load(data, size=size, limit=args.eval_images)
    need = max(args.sizes) * args.repeats
    pool = torch.cat(recalibration_batches(data, size, need, 16))
    if len(pool) < need:
        raise ValueError(f"{len(pool)} training images, need {need} for {args.repeats} disjoint sets "
                         f"of {max(args.sizes)}")
    rng = np.random.default_rng(0)
    archs = [("smallest", exp.space.smallest()), ("baseline", exp.space.baseline),
             ("largest", exp.space.largest())]
    archs += [(f"random{i}", exp.space.sample(rng)) for i in range(args.archs)]
    rows = []
    for label, arch in archs:
        for n in args.sizes:
            for r in range(args.repeats):
                images = pool[r * n:(r + 1) * n]
                recalibrate_bn(model, arch, [images[i:i + 16] for i in range(0, n, 16)])
                ap = val.scores(val.predict(model, arch))
                rows.append({"subnet": label, "arch": str(arch), "images": n, "set": r, **ap})
                print(f"{label:9s} N={n:4d} set {r}: ap_mean {ap['ap_mean']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    atomic_write_csv(frame, out / "bn_recal.csv")
    spread = frame.groupby(["subnet", "images"])["ap_mean"].agg(["mean", "std"]).reset_index()
    summary = spread.groupby("images")["std"].mean().rename("mean_std_over_subnets")
    gaps = frame[frame["images"] == max(args.sizes)].groupby("subnet")["ap_mean"].mean()
    result = {"sizes": args.sizes, "repeats": args.repeats, "eval_images": len(val),
              "std_by_size": summary.to_dict(),
              "median_gap_between_subnets": float(np.median(np.abs(np.diff(np.sort(gaps.to_numpy()))))),
              "per_subnet": spread.to_dict(orient="records")}
    atomic_write_text(out / "bn_recal.json", json.dumps(result, indent=1) + "\n")
    print(summary.to_string())
    print(f"median AP gap between neighbouring subnets: {result['median_gap_between_subnets']:.4f}")
    return frame


if __name__ == "__main__":
    main()
