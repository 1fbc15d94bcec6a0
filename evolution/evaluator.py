"""AP estimate of subnets with inherited supernet weights (the search's accuracy objective).

Per candidate: activate its path in the trained supernet detector, recalibrate BatchNorm on a fixed
set of training batches (SPOS: shared BN statistics mix every path, so they are re-estimated per
arch), then AP on a fixed val subset with the official WIDER protocol restricted to those images.
BN statistics come from training images resized exactly as the val images are (evaluation
resolution, whole image): statistics of the 160 px augmented training crops misdescribe 320 px
inputs. `loss` adds the held-out detection loss on the same val images (lower is better).
The batches and images are prepared once, so candidates differ only in their arch.

    >>> ev = SupernetEvaluator.from_checkpoint("runs/default/supernet.pt", exp)   # doctest: +SKIP
    >>> ev([space.baseline])                                                      # doctest: +SKIP
    [{'ap_easy': 0.62, 'ap_medium': 0.55, 'ap_hard': 0.31, 'ap_mean': 0.49, 'ap_min50': 0.7}]

Keys: ``ap_easy``, ``ap_medium``, ``ap_hard`` (official settings), ``ap_mean`` (their mean) and
``ap_min50`` (AP over faces >= 50 px, smaller ones ignored: the baseline team's own metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from detection.config import DetectorConfig
from detection.data import DataConfig
from detection.inference import ValSet, recalibration_batches
from detection.loss import DetectionLoss
from detection.model import Detector, build_supernet_detector
from supernet.net import SupernetConfig
from supernet.bn import recalibrate_bn
from supernet.device import select_device
from supernet.experiment import Experiment
from supernet.space import Arch


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are scored (the `search:` keys eval_images, bn_batches, ...)."""

    eval_images: int = 100  # fixed val subset (the first N val images)
    bn_batches: int = 4  # batches of `batch_size` training images at the evaluation resolution
    batch_size: int = 16
    seed: int = 0
    loss: bool = True  # also score the held-out detection loss (key "loss", lower is better)


class SupernetEvaluator:
    """Callable: list of archs -> list of AP dicts (see module docstring)."""

    def __init__(self, model: Detector, val: ValSet, recal: list[torch.Tensor],
                 progress: bool = False, loss: bool = True):
        self.model, self.val, self.recal, self.progress = model, val, recal, progress
        self.loss_fn = DetectionLoss(model.cfg) if loss else None
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
        model = build_supernet_detector(exp.space, det_cfg, exp.section("supernet", SupernetConfig).sharing)
        model.load_state_dict(checkpoint["model"])
        model.to(select_device(device)).eval()
        size = max(det_cfg.input_size)
        val = ValSet.load(data_cfg, size=size, limit=cfg.eval_images)
        recal = recalibration_batches(data_cfg, size, cfg.bn_batches * cfg.batch_size, cfg.batch_size)
        return cls(model, val, recal, loss=cfg.loss)

    def predict(self, arch: Arch) -> tuple[dict, float | None]:
        """`arch`'s val predictions with inherited weights and recalibrated BatchNorm, and its
        held-out loss (None without `loss`)."""
        recalibrate_bn(self.model, arch, self.recal)
        self.model.eval()
        self.n_evaluated += 1
        return self.val.predict_with_loss(self.model, arch, self.loss_fn)

    def evaluate_one(self, arch: Arch) -> dict[str, float]:
        preds, loss = self.predict(arch)
        scores = self.val.scores(preds)
        if loss is not None:
            scores["loss"] = loss
        return scores

    def __call__(self, archs: list[Arch]) -> list[dict[str, float]]:
        it = tqdm(archs, desc="evaluate", leave=False, disable=not self.progress)
        return [self.evaluate_one(a) for a in it]
