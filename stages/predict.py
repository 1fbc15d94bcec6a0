"""Write official WIDER FACE prediction files for a folder of images.

    facenas predict --weights runs/x/model.pt --images WIDER_val/images --out preds/
    facenas predict --weights runs/default/supernet.pt --arch "K3C32S2-..." \\
        --images WIDER_val/images --out preds/ [--size 640] [--bn-from ROOT]

Output: ``<out>/<event>/<image>.txt`` with the image name, the count, then ``x y w h score`` lines in
descending score, single scale: the long side resized to --size (default 640), aspect kept.
A supernet checkpoint needs --arch (the subnet to run; BatchNorm is recalibrated on the training
split of --bn-from, default the experiment's data) and a standalone checkpoint carries its arch.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from detection.augment import resize_for_eval
from detection.config import DetectorConfig
from detection.data import DataConfig, normalize
from detection.model import Detector, build_detector, build_supernet_detector
from detection.postprocess import to_wider
from detection.prediction_files import write_predictions
from detection.scoring import SubnetScorer
from core.checkpoint import check_checkpoint, checkpoint_experiment, load_checkpoint
from supernet.net import SupernetConfig
from core.device import select_device
from core.experiment import Experiment

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _load_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # a long multi-line listing of the keys: its first line is enough
        raise ValueError(f"{source}: weights do not fit the model of its config "
                         f"({str(err).strip().splitlines()[0]})") from None


def load_detector(checkpoint: dict, arch: str | None = None, bn_batches: int = 8,
                  data_root: str | None = None, source: str = "<checkpoint>"
                  ) -> tuple[Detector, Experiment]:
    """The detector of a checkpoint: standalone as saved, or a supernet subnet (BN recalibrated).
    `source` (the file) names it in errors."""
    exp = checkpoint_experiment(check_checkpoint(checkpoint, source), source)
    det_cfg = exp.section("detector", DetectorConfig)
    if checkpoint["kind"] == "standalone":
        saved = checkpoint["arch"]
        if arch is not None and arch != saved:
            raise ValueError(f"checkpoint holds arch {saved}, not {arch}")
        model = build_detector(exp.space, saved, det_cfg)
        _load_weights(model, checkpoint["model"], source)
        return model.eval(), exp
    if arch is None:
        raise ValueError("a supernet checkpoint needs --arch (which subnet to run)")
    parsed = exp.space.parse(arch)
    sup = build_supernet_detector(exp.space, det_cfg, exp.section("supernet", SupernetConfig).sharing)
    _load_weights(sup, checkpoint["model"], source)
    data_cfg = exp.section("data", DataConfig)
    if data_root:
        data_cfg = replace(data_cfg, root=data_root)
    # BN statistics of this subnet, re-estimated as the search did (training images at the
    # evaluation resolution): the one scorer's recalibration
    SubnetScorer.build(sup, data_cfg, det_cfg, 0, bn_batches, data_cfg.batch_size).activate(parsed)
    return sup.extract(parsed).eval(), exp


def list_images(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images (*.jpg, *.png) under {folder}")
    return images


@torch.no_grad()
def predict_folder(model: Detector, folder: Path, out: Path, size: int, device: torch.device,
                   progress: bool = True) -> int:
    """Predict every image under `folder` (``<event>/<image>``) into `out`; returns the count."""
    model.to(device).eval()
    images = list_images(folder)
    skipped = 0
    for path in tqdm(images, desc="predict", unit="img", disable=not progress):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            skipped += 1
            tqdm.write(f"warning: skipping unreadable image {path}: {err}")
            continue
        resized, scale = resize_for_eval(rgb, size, pad="multiple")
        dets = model.predict(normalize(resized)[None].to(device))[0]
        write_predictions(out, str(path.relative_to(folder)), to_wider(dets, scale))
    if skipped:
        print(f"{skipped} unreadable images skipped")
    return len(images) - skipped


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="checkpoint (model.pt or supernet.pt)")
    p.add_argument("--arch", help="subnet arch string (needed for a supernet checkpoint)")
    p.add_argument("--images", required=True, help="folder of <event>/<image>.jpg")
    p.add_argument("--out", required=True, help="prediction folder")
    p.add_argument("--size", type=int, default=640, help="long side in pixels (default 640)")
    p.add_argument("--bn-from", help="WIDER root whose train split recalibrates BN (supernet only)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        device = select_device(args.device)
        model, _ = load_detector(load_checkpoint(Path(args.weights)), args.arch,
                                 data_root=args.bn_from, source=args.weights)
        n = predict_folder(model, Path(args.images), Path(args.out), args.size, device,
                           progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote predictions for {n} images to {args.out}")
    return n


if __name__ == "__main__":
    main()
