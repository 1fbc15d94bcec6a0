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

from tqdm import tqdm

from detection.config import DetectorConfig
from detection.data import DataConfig
from detection.model import build_supernet_detector
from detection.scoring import SubnetScorer
from supernet.net import SupernetConfig
from core.device import flush_denormals, select_device
from core.checkpoint import check_checkpoint
from core.experiment import Experiment
from core.space import Arch


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are scored (the `search:` keys eval_images, bn_batches, ...)."""

    eval_images: int = 100  # fixed val subset (the first N val images)
    bn_batches: int = 4  # batches of `batch_size` training images at the evaluation resolution
    batch_size: int = 16
    loss: bool = True  # also score the held-out detection loss (key "loss", lower is better)


class SupernetEvaluator:
    """Callable: list of archs -> list of AP dicts (module docstring): the search's adapter of
    `detection.scoring.SubnetScorer`, the scorer that training and prediction also use."""

    def __init__(self, scorer: SubnetScorer, progress: bool = False):
        self.scorer, self.progress = scorer, progress

    @property
    def n_evaluated(self) -> int:
        return self.scorer.n_scored

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, exp: Experiment, cfg: EvalConfig,
                        device: str = "auto", source: str = "supernet checkpoint"
                        ) -> "SupernetEvaluator":
        """`source` (the checkpoint's path) names the file in errors."""
        check_checkpoint(checkpoint, source, kind="supernet", space=exp.space)
        det_cfg = exp.section("detector", DetectorConfig)
        model = build_supernet_detector(exp.space, det_cfg, exp.section("supernet", SupernetConfig).sharing)
        model.load_state_dict(checkpoint["model"])
        flush_denormals()
        model.to(select_device(device)).eval()
        return cls(SubnetScorer.build(model, exp.section("data", DataConfig), det_cfg, cfg.eval_images,
                                      cfg.bn_batches, cfg.batch_size, loss=cfg.loss))

    def predict(self, arch: Arch) -> tuple[dict, float | None]:
        """`arch`'s val predictions with inherited weights and recalibrated BatchNorm, and its
        held-out loss (None without `loss`)."""
        return self.scorer.predict(arch)

    def evaluate_one(self, arch: Arch) -> dict[str, float]:
        return self.scorer.score(arch)

    def __call__(self, archs: list[Arch]) -> list[dict[str, float]]:
        it = tqdm(archs, desc="evaluate", leave=False, disable=not self.progress)
        return [self.evaluate_one(a) for a in it]
