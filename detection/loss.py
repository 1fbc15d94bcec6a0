"""Training loss of the detector: RetinaFace anchor matching, sigmoid focal loss, smooth-L1 boxes.

    >>> loss_fn = DetectionLoss(cfg)                                       # doctest: +SKIP
    >>> cls, box = model(images)                                           # (B, A), (B, A, 4)
    >>> out = loss_fn(cls, box, model.anchors(images.shape[-2:]), targets) # targets: list of (N_i, 4)
    >>> out["loss"].backward()

Matching, per image (IoU of every anchor with every gt box, one matrix op): an anchor is positive
when its best IoU is >= 0.35, negative below 0.2 and ignored in between; then every gt box also
claims its best anchor as a positive (RetinaFace), so tiny faces are never left without one.

Classification is the sigmoid focal loss (alpha 0.25, gamma 2) over positives and negatives,
summed and divided by the number of positives in the batch (at least 1, so images without faces
give a finite, negatives-only loss). Box regression is smooth-L1 on the RetinaFace-encoded deltas of
the positives, same normaliser. Smooth-L1 rather than GIoU because it is what RetinaFace (and the
baseline detectors we compare with) train with; the encoding is already relative to the anchor
size, so 8-pixel and 300-pixel faces weigh alike; and it needs no decode (exp of untrained size
deltas) inside the loss, which keeps early supernet training stable. Gt boxes of zero width or
height are dropped (their deltas would be infinite).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detection.anchors import box_iou, encode
from detection.config import DetectorConfig


class DetectionLoss(nn.Module):
    """`forward(cls_logits, box_deltas, anchors, targets) -> {"loss", "cls", "box", "num_pos"}`."""

    def __init__(self, cfg: DetectorConfig, pos_iou: float = 0.35, neg_iou: float = 0.2,
                 alpha: float = 0.25, gamma: float = 2.0, box_weight: float = 2.0,
                 smooth_l1_beta: float = 1.0):
        super().__init__()
        if not neg_iou <= pos_iou:
            raise ValueError(f"neg_iou {neg_iou} must be <= pos_iou {pos_iou}")
        self.cfg = cfg
        self.pos_iou, self.neg_iou = pos_iou, neg_iou
        self.alpha, self.gamma = alpha, gamma
        self.box_weight = box_weight  # RetinaFace weights the box loss 2x
        self.smooth_l1_beta = smooth_l1_beta

    @torch.no_grad()
    def match(self, anchors: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (A,) (1 positive, 0 negative, -1 ignored) and the matched gt box (A, 4) per anchor."""
        a = anchors.shape[0]
        gt = gt[(gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])]
        if gt.shape[0] == 0:
            return (torch.zeros(a, dtype=torch.long, device=anchors.device),
                    torch.zeros(a, 4, dtype=anchors.dtype, device=anchors.device))
        gt = gt.to(anchors)
        iou = box_iou(anchors, gt)  # (A, N)
        best_iou, best_gt = iou.max(1)
        labels = torch.full((a,), -1, dtype=torch.long, device=anchors.device)
        labels[best_iou < self.neg_iou] = 0
        labels[best_iou >= self.pos_iou] = 1
        # every gt claims its best anchor (if two gts pick the same anchor, one of them gets it)
        best_anchor = iou.argmax(0)  # (N,)
        labels[best_anchor] = 1
        best_gt[best_anchor] = torch.arange(gt.shape[0], device=gt.device)
        return labels, gt[best_gt]

    def forward(self, cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor,
                targets: list[torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
                distill: float = 0.0) -> dict[str, torch.Tensor]:
        """cls_logits (B, A), box_deltas (B, A, 4), anchors (A, 4), targets: B tensors (N_i, 4) x1y1x2y2.

        `teacher` (its cls logits and box deltas on the same images) adds in-place distillation
        (BigNAS) weighted by `distill`: focal-weighted BCE towards the teacher's probabilities on
        every anchor, and smooth-L1 towards its deltas on the positives, with the same normaliser.
        """
        if len(targets) != cls_logits.shape[0]:
            raise ValueError(f"{len(targets)} target lists for a batch of {cls_logits.shape[0]}")
        anchors = anchors.to(device=cls_logits.device, dtype=torch.float32)
        labels, matched = zip(*(self.match(anchors, t.to(anchors.device).reshape(-1, 4)) for t in targets))
        labels, matched = torch.stack(labels), torch.stack(matched)  # (B, A), (B, A, 4)
        pos = labels == 1
        num_pos = pos.sum()
        norm = num_pos.clamp(min=1).float()

        logits = cls_logits.float()
        y = pos.float()
        ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * y + (1 - p) * (1 - y)
        focal = ce * (1 - p_t) ** self.gamma * (self.alpha * y + (1 - self.alpha) * (1 - y))
        cls_loss = (focal * (labels >= 0)).sum() / norm

        target_deltas = encode(matched[pos], anchors.expand_as(matched)[pos])
        box_loss = F.smooth_l1_loss(box_deltas.float()[pos], target_deltas, reduction="sum",
                                    beta=self.smooth_l1_beta) / norm
        loss = cls_loss + self.box_weight * box_loss
        if teacher is not None and distill > 0:
            t_cls, t_box = teacher
            q = torch.sigmoid(t_cls)
            soft = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
            kd_cls = (soft * (p - q).abs() ** self.gamma).sum() / norm
            kd_box = F.smooth_l1_loss(box_deltas.float()[pos], t_box[pos], reduction="sum",
                                      beta=self.smooth_l1_beta) / norm
            loss = loss + distill * (kd_cls + self.box_weight * kd_box)
        return {"loss": loss, "cls": cls_loss.detach(), "box": box_loss.detach(), "num_pos": num_pos}
