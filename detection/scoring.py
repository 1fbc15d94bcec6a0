"""The one subnet scorer: BatchNorm recalibrated for the arch, then AP (and loss) on val images.

    >>> scorer = SubnetScorer.build(supernet_detector, data_cfg, det_cfg, eval_images=200,
    ...                             bn_batches=8)                         # doctest: +SKIP
    >>> scorer.score(arch)                                                # doctest: +SKIP
    {'ap_easy': 0.61, 'ap_medium': 0.78, 'ap_hard': 0.70, 'ap_mean': 0.70, 'loss': 3.9}

Used by the per-epoch evaluation of supernet training (`stages.trainer`), by the search's
evaluator (`evolution.evaluator`, and the front confirmation through it) and by prediction with a
supernet subnet (`stages.predict`, which only needs `activate`). Shared weights carry BN statistics
of a mixture of paths; a subnet is scored only after its own statistics are re-estimated on
`bn_batches` batches of training images at the evaluation resolution (`recalibration_batches`).
A standalone (non-elastic) detector is scored as it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from detection.config import DetectorConfig
from detection.data import DataConfig
from detection.loss import DetectionLoss
from detection.valset import ValSet, recalibration_batches
from supernet.bn import recalibrate_bn
from core.space import Arch


class SubnetScorer:
    def __init__(self, model: torch.nn.Module, val: ValSet | None, recal: list[torch.Tensor],
                 loss: bool = False):
        self.model, self.val, self.recal = model, val, recal
        self.loss_fn = DetectionLoss(model.cfg) if loss else None
        self.n_scored = 0

    @classmethod
    def build(cls, model: torch.nn.Module, data_cfg: DataConfig, det_cfg: DetectorConfig,
              eval_images: int | None, bn_batches: int, batch_size: int = 16,
              loss: bool = False) -> "SubnetScorer":
        """Val images (the first `eval_images`; 0: none, `activate` only; None: all) and
        `bn_batches` recalibration batches, both at the evaluation resolution."""
        size = max(det_cfg.input_size)
        val = ValSet.load(data_cfg, size=size, limit=eval_images) if eval_images != 0 else None
        recal = recalibration_batches(data_cfg, size, bn_batches * batch_size, batch_size)
        return cls(model, val, recal, loss=loss)

    def activate(self, arch: Arch) -> None:
        """Make `arch` the model's active subnet with its own BN statistics (eval mode)."""
        if getattr(self.model, "elastic", False):
            recalibrate_bn(self.model, arch, self.recal)
        self.model.eval()

    def predict(self, arch: Arch) -> tuple[dict[str, np.ndarray], float | None]:
        """`arch`'s val predictions with inherited weights and recalibrated BatchNorm, and its
        held-out loss (None without `loss`)."""
        if self.val is None:
            raise ValueError("this scorer was built without val images (eval_images=0)")
        self.activate(arch)
        self.n_scored += 1
        elastic = getattr(self.model, "elastic", False)
        return self.val.predict_with_loss(self.model, arch if elastic else None, self.loss_fn)

    def score(self, arch: Arch) -> dict[str, float]:
        """ap_easy/medium/hard (official), ap_mean, ap_min50 when annotated, and loss if asked."""
        preds, loss = self.predict(arch)
        scores = self.val.scores(preds)
        if loss is not None:
            scores["loss"] = loss
        return scores

    @contextmanager
    def keeping_bn(self) -> Iterator["SubnetScorer"]:
        """Restore the model's BN running statistics afterwards (scoring in the middle of
        training must not change what training continues from)."""
        saved = {k: v.clone() for k, v in self.model.state_dict().items()
                 if "running" in k or "num_batches" in k}
        try:
            yield self
        finally:
            self.model.load_state_dict(saved, strict=False)
