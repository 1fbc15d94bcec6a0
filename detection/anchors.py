"""RetinaFace anchors and the box coding the head regresses.

Anchors are square, `cfg.n_anchors` sizes per location, one location per cell of each feature map,
centred at ((x + 0.5) * stride, (y + 0.5) * stride) in input pixels. They are ordered level, y, x,
anchor: exactly the order `detection.neck.FPNHead` flattens its outputs in.

    >>> cfg = DetectorConfig()                      # strides 8/16/32, sizes (16,32)/(64,128)/(256,512)
    >>> make_anchors(cfg, (320, 320)).shape         # 2 x (40^2 + 20^2 + 10^2)
    torch.Size([4200, 4])

Box coding (RetinaFace/SSD, variances 0.1 and 0.2): for an anchor with centre (ax, ay) and size
(aw, ah) and a box with centre (bx, by) and size (bw, bh), the deltas are
((bx - ax) / (0.1 aw), (by - ay) / (0.1 ah), log(bw / aw) / 0.2, log(bh / ah) / 0.2).
Boxes everywhere are x1 y1 x2 y2 in input pixels.
"""

from __future__ import annotations

import math

import torch

from detection.config import DetectorConfig

VARIANCES = (0.1, 0.2)  # centre, size (RetinaFace / SSD)
# Largest log size ratio decode accepts, so an untrained head cannot produce inf boxes (as torchvision).
_MAX_LOG_RATIO = math.log(1000.0 / 16)


def feature_size(size: int, stride: int) -> int:
    """Feature-map length at `stride` for an input of length `size`.

    Each stride-2 'same'-padded conv maps h to (h - 1) // 2 + 1 = ceil(h / 2), and nested ceilings
    compose (ceil(ceil(h / a) / b) = ceil(h / ab)), so any chain of strides gives ceil(size / stride):
    321 -> 161 -> 81 -> 41 at stride 8, as the backbone computes it (`LayerKey.out_size`).
    """
    return (size - 1) // stride + 1


def make_anchors(cfg: DetectorConfig, image_size: tuple[int, int],
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(A, 4) anchors x1y1x2y2 for an input of `image_size` = (height, width), ordered level, y, x, anchor."""
    height, width = image_size
    levels = []
    for stride, sizes in zip(cfg.feature_strides, cfg.anchor_sizes):
        h, w = feature_size(height, stride), feature_size(width, stride)
        cy = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * stride
        cx = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * stride
        half = torch.tensor(sizes, dtype=torch.float32, device=device) / 2
        cy, cx, half = torch.broadcast_tensors(cy[:, None, None], cx[None, :, None], half[None, None, :])
        levels.append(torch.stack([cx - half, cy - half, cx + half, cy + half], -1).reshape(-1, 4))
    return torch.cat(levels)


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    wh = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * wh, wh


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Deltas (..., 4) that turn `anchors` (..., 4) into `boxes` (..., 4) (both x1y1x2y2)."""
    b_xy, b_wh = _centre_size(boxes)
    a_xy, a_wh = _centre_size(anchors)
    d_xy = (b_xy - a_xy) / (VARIANCES[0] * a_wh)
    d_wh = torch.log(b_wh / a_wh) / VARIANCES[1]
    return torch.cat([d_xy, d_wh], -1)


def decode(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes x1y1x2y2 from `deltas` (..., A, 4) and `anchors` (A, 4); inverse of `encode`."""
    a_xy, a_wh = _centre_size(anchors.to(deltas.dtype))
    xy = a_xy + deltas[..., :2] * VARIANCES[0] * a_wh
    wh = a_wh * torch.exp((deltas[..., 2:] * VARIANCES[1]).clamp(max=_MAX_LOG_RATIO))
    return torch.cat([xy - 0.5 * wh, xy + 0.5 * wh], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (N, M) of boxes `a` (N, 4) and `b` (M, 4), x1y1x2y2 (0 where the union is empty)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
