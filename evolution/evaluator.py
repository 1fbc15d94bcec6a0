"""AP estimate of subnets with inherited supernet weights (the search's accuracy objective).

Per candidate: activate its path in the trained supernet detector, recalibrate BatchNorm on a fixed
set of training batches (SPOS: shared BN statistics mix every path, so they are re-estimated per
arch), then AP on a fixed val subset with the official WIDER protocol restricted to those images.
The batches and images are prepared once, so candidates differ only in their arch.

    >>> ev = SupernetEvaluator.from_checkpoint("runs/default/supernet.pt", exp)   # doctest: +SKIP
    >>> ev([space.baseline])                                                      # doctest: +SKIP
    [{'ap_easy': 0.62, 'ap_medium': 0.55, 'ap_hard': 0.31, 'ap_mean': 0.49, 'ap_min50': 0.7}]

Keys: ``ap_easy``, ``ap_medium``, ``ap_hard`` (official settings), ``ap_mean`` (their mean) and
``ap_min50`` (AP over faces >= 50 px, smaller ones ignored: the baseline team's own metric).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from detection.annotations import read_annotations
from detection.config import DetectorConfig
from detection.data import DataConfig, build_loader, resolve_root
from detection.evaluate import evaluate, evaluate_annotations
from detection.inference import ValSet
from detection.model import Detector, build_supernet_detector
from supernet.bn import recalibrate_bn
from supernet.device import select_device
from supernet.experiment import Experiment
from supernet.space import Arch


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are scored (the `search:` keys eval_images, bn_batches, ...)."""

    eval_images: int = 100  # fixed val subset (the first N val images)
    bn_batches: int = 4  # training batches for BN recalibration, per candidate
    batch_size: int = 16
    seed: int = 0


class SupernetEvaluator:
    """Callable: list of archs -> list of AP dicts (see module docstring)."""

    def __init__(self, model: Detector, val: ValSet, recal: list[torch.Tensor],
                 annotations: list | None = None, progress: bool = False):
        self.model, self.val, self.recal, self.progress = model, val, recal, progress
        self.annotations = annotations
        self.n_evaluated = 0

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, exp: Experiment, cfg: EvalConfig,
                        device: str = "auto", source: str = "supernet checkpoint"
                        ) -> "SupernetEvaluator":
        """`source` (the checkpoint's path) names the file in errors."""
        if checkpoint.get("kind") != "supernet":
            raise ValueError(f"{source}: the search needs a supernet checkpoint (train_supernet.py), "
                             f"got a {checkpoint.get('kind')!r} checkpoint")
        if checkpoint["space"] != exp.space.fingerprint():
            raise ValueError(f"{source}: supernet checkpoint from another search space (fingerprint "
                             f"{checkpoint['space']}, config {exp.space.source} "
                             f"{exp.space.fingerprint()}); pass the --config it was trained with")
        det_cfg = exp.section("detector", DetectorConfig)
        data_cfg = exp.section("data", DataConfig)
        model = build_supernet_detector(exp.space, det_cfg)
        model.load_state_dict(checkpoint["model"])
        model.to(select_device(device)).eval()
        size = max(det_cfg.input_size)
        val = ValSet.load(data_cfg, size=size, limit=cfg.eval_images)
        loader = build_loader(replace(data_cfg, workers=0, batch_size=cfg.batch_size), "train",
                              train=True, seed=cfg.seed + 1)
        recal = [images for images, _ in itertools.islice(loader, cfg.bn_batches)]
        ann_path = resolve_root(data_cfg) / "wider_face_split" / "wider_face_val_bbx_gt.txt"
        names = set(val.names)
        annotations = [a for a in read_annotations(ann_path) if a.name in names]
        return cls(model, val, recal, annotations)

    def evaluate_one(self, arch: Arch) -> dict[str, float]:
        recalibrate_bn(self.model, arch, self.recal)
        self.model.eval()
        preds = self.val.predict(self.model, arch)
        ap = evaluate(preds, self.val.gt, subset=True)
        out = {f"ap_{k}": float(np.nan_to_num(v)) for k, v in ap.items()}
        out["ap_mean"] = float(np.mean([out["ap_easy"], out["ap_medium"], out["ap_hard"]]))
        if self.annotations:
            ann = evaluate_annotations(preds, self.annotations, min_size=50, subset=True)
            out["ap_min50"] = float(np.nan_to_num(ann["min50"]))
        self.n_evaluated += 1
        return out

    def __call__(self, archs: list[Arch]) -> list[dict[str, float]]:
        it = tqdm(archs, desc="evaluate", leave=False, disable=not self.progress)
        return [self.evaluate_one(a) for a in it]
