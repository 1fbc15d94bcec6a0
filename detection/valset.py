"""In-process AP of a detector (or of the supernet with an arch active) on a split or a fixed subset.

Training evaluates a few subnets every epoch, and the search evaluates thousands of candidates on the
same images, so the evaluation images are decoded, resized and normalised once into a `ValSet`:

    >>> val = ValSet.load(data_cfg, size=320, limit=50)          # doctest: +SKIP
    >>> val.evaluate(detector, arch)                             # doctest: +SKIP
    {'easy': 0.71, 'medium': 0.62, 'hard': 0.31}

AP follows the official WIDER FACE protocol (`detection.wider_eval`), restricted to the images of the
subset (``subset=True``), against the split's ``ground_truth/*.mat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detection.annotations import ImageAnnotation, read_annotations
from detection.augment import resize_for_eval
from detection.data import DataConfig, normalize, resolve_root, val_images
from detection.wider_eval import GroundTruth, evaluate, evaluate_annotations, load_ground_truth
from detection.postprocess import postprocess, to_wider
from detection.prediction_files import write_predictions
from core.space import Arch


def recalibration_batches(cfg: DataConfig, size: int, images: int, batch_size: int = 16,
                          split: str = "train") -> list[torch.Tensor]:
    """The first `images` images of `split`, resized and padded exactly as at evaluation.

    BatchNorm statistics re-estimated for a subnet must describe the inputs it is scored on: at
    the evaluation resolution (not the smaller augmented training crops), whole images. They come
    from the training split so the val images stay held out.
    """
    tensors = [normalize(resize_for_eval(image, size)[0]) for _, image in val_images(cfg, split, images)]
    if not tensors:
        raise ValueError(f"{resolve_root(cfg)}: no readable {split} images for BN recalibration")
    stacked = torch.stack(tensors)
    return [stacked[i:i + batch_size] for i in range(0, len(stacked), batch_size)]


def _stem_key(name: str) -> str:
    """'<event>/<image>.jpg' -> '<event>/<image>' (the evaluator's key)."""
    return str(Path(name).with_suffix(""))


@dataclass
class ValSet:
    names: list[str]  # '<event>/<image>.jpg'
    images: torch.Tensor  # (N, 3, size, size) normalised, padded to square
    scales: np.ndarray  # (N,) resize factor original -> input
    gt: GroundTruth
    size: int
    annotations: list[ImageAnnotation] = field(default_factory=list)  # these images' faces (min50)

    @classmethod
    def load(cls, cfg: DataConfig, size: int, limit: int | None = None, split: str = "val",
             gt_dir: str | Path | None = None) -> "ValSet":
        """The first `limit` images of `split` (annotation order) with the split's ground truth."""
        root = resolve_root(cfg)
        gt = load_ground_truth(Path(gt_dir) if gt_dir else root / "ground_truth")
        names, tensors, scales = [], [], []
        for name, image in val_images(cfg, split, limit):
            resized, scale = resize_for_eval(image, size)
            names.append(name)
            tensors.append(normalize(resized))
            scales.append(scale)
        if not names:
            raise ValueError(f"{root}: no readable {split} images to evaluate on")
        ann_path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
        wanted = set(names)
        annotations = [a for a in read_annotations(ann_path) if a.name in wanted]
        return cls(names, torch.stack(tensors), np.array(scales), gt, size, annotations)

    def __len__(self) -> int:
        return len(self.names)

    def batches(self, batch_size: int):
        """Image batches (for BN recalibration on val-like inputs, or prediction)."""
        for i in range(0, len(self), batch_size):
            yield self.images[i:i + batch_size]

    def targets(self) -> list[torch.Tensor]:
        """Per image, the trainable faces as x1 y1 x2 y2 in network-input pixels (for the loss)."""
        by_name = {a.name: a for a in self.annotations}
        out = []
        for name, scale in zip(self.names, self.scales):
            ann = by_name.get(name)
            boxes = ann.trainable() * float(scale) if ann is not None else np.zeros((0, 4))
            out.append(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        return out

    @torch.no_grad()
    def predict_with_loss(self, model: torch.nn.Module, arch: Arch | None = None,
                          loss_fn: torch.nn.Module | None = None, batch_size: int = 16
                          ) -> tuple[dict[str, np.ndarray], float | None]:
        """WIDER-format detections (x y w h score, original pixels) keyed '<event>/<image>', and
        with `loss_fn` the held-out detection loss averaged over the images, from one forward pass.

        The loss is a one-shot score that, unlike AP, does not floor at 0 for a weak subnet
        (compared with AP in experiments/ranking.py).
        """
        if arch is not None:
            model.set_active(arch)
        model.eval()
        device = next(model.parameters()).device
        targets = self.targets() if loss_fn is not None else None
        out: dict[str, np.ndarray] = {}
        total = 0.0
        for i in range(0, len(self), batch_size):
            images = self.images[i:i + batch_size].to(device)
            cls, box = model(images)
            size = tuple(images.shape[-2:])
            anchors = model.anchors(size)
            if loss_fn is not None:
                loss = loss_fn(cls.float(), box.float(), anchors,
                               [t.to(device) for t in targets[i:i + batch_size]])
                total += float(loss["loss"]) * images.shape[0]
            for j, d in enumerate(postprocess(cls, box, anchors, model.cfg, image_size=size)):
                out[_stem_key(self.names[i + j])] = to_wider(d, float(self.scales[i + j]))
        return out, (total / len(self) if loss_fn is not None else None)

    def predict(self, model: torch.nn.Module, arch: Arch | None = None, batch_size: int = 16
                ) -> dict[str, np.ndarray]:
        """WIDER-format detections (x y w h score, original pixels) keyed '<event>/<image>'."""
        return self.predict_with_loss(model, arch, None, batch_size)[0]

    def evaluate(self, model: torch.nn.Module, arch: Arch | None = None, batch_size: int = 16
                 ) -> dict[str, float]:
        """Easy/Medium/Hard AP of `model` (with `arch` active if given) on these images."""
        preds = self.predict(model, arch, batch_size)
        return {k: float(np.nan_to_num(v)) for k, v in evaluate(preds, self.gt, subset=True).items()}

    def scores(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        """The search's metric keys: ap_easy/medium/hard (official), ap_mean, ap_min50 (>= 50 px)."""
        ap = evaluate(predictions, self.gt, subset=True)
        out = {f"ap_{k}": float(np.nan_to_num(v)) for k, v in ap.items()}
        out["ap_mean"] = float(np.mean([out["ap_easy"], out["ap_medium"], out["ap_hard"]]))
        if self.annotations:
            ann = evaluate_annotations(predictions, self.annotations, min_size=50, subset=True)
            out["ap_min50"] = float(np.nan_to_num(ann["min50"]))
        return out

    def write(self, predictions: dict[str, np.ndarray], pred_dir: str | Path) -> None:
        """Write predictions as official prediction files under `pred_dir`."""
        for name in self.names:
            write_predictions(pred_dir, name, predictions[_stem_key(name)])
