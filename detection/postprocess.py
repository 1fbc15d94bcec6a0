"""From head outputs to detections: decode, score threshold, top-k, NMS (pure torch), WIDER output.

    >>> anchors = make_anchors(cfg, images.shape[-2:])                     # doctest: +SKIP
    >>> dets = postprocess(*model(images), anchors, cfg)                   # doctest: +SKIP
    >>> dets[0]                          # (N, 5): x1 y1 x2 y2 score, input pixels, best first
    >>> to_wider(dets[0], scale)         # (N, 5) numpy: x y w h score, original-image pixels

NMS is the standard greedy one (keep the best box, drop every remaining box whose IoU with it is
> `iou`, repeat), computed without a Python loop over boxes so it also runs fast on CUDA; see `nms`.
"""

from __future__ import annotations

import numpy as np
import torch

from detection.anchors import box_iou, decode
from detection.config import DetectorConfig

__all__ = ["decode", "nms", "postprocess", "to_wider"]

_NMS_BLOCK = 512  # boxes handled together by nms (memory ~ N x block booleans)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float,
        max_keep: int | None = None) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, by decreasing score (equal scores: lower index first).

    Greedy NMS, with boxes sorted by score: keep box i iff no *kept* box j < i overlaps it by IoU
    > `iou`. We take the sorted boxes in blocks of `_NMS_BLOCK`: one matrix op drops the boxes of a
    block that a kept box of earlier blocks overlaps; inside the block, with S[j, i] = "j < i and
    they overlap", iterate keep <- alive and not any_j(S[j, i] and keep[j]) from keep = alive. That
    recursion has exactly one solution and after step t the first t boxes are final, so stopping
    when nothing changes gives exactly the greedy result, in a few steps for real detections, with
    memory O(N x block) instead of O(N^2) and no Python loop over boxes. With `max_keep`, only the
    first `max_keep` kept boxes are returned, and blocks after the one that reaches them are skipped
    (they cannot change which boxes come first).
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    n = b.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=b.device)
    for start in range(0, n, _NMS_BLOCK):
        block = b[start:start + _NMS_BLOCK]
        kept = b[:start][keep[:start]]
        alive = ~(box_iou(kept, block) > iou).any(0)
        overlap = (box_iou(block, block) > iou).triu_(1)
        k = alive
        for _ in range(block.shape[0]):
            new = alive & ~(overlap & k[:, None]).any(0)
            if torch.equal(new, k):
                break
            k = new
        keep[start:start + _NMS_BLOCK] = k
        if max_keep is not None and int(keep.sum()) >= max_keep:
            break
    return order[keep][:max_keep]


def postprocess(cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor,
                cfg: DetectorConfig, pre_nms_top_k: int = 5000,
                image_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """Detections per image: list of (N, 5) x1 y1 x2 y2 score (input pixels, best first).

    cls_logits (B, A), box_deltas (B, A, 4) from the head; anchors (A, 4). Keeps scores above
    `cfg.score_threshold`, the `pre_nms_top_k` best of those, NMS at `cfg.nms_iou`, then at most
    `cfg.max_detections`. With `image_size` = (height, width) boxes are clipped to the input.
    """
    scores = torch.sigmoid(cls_logits.float())
    boxes = decode(box_deltas.float(), anchors.float())
    out = []
    for s, b in zip(scores, boxes):
        idx = torch.nonzero(s > cfg.score_threshold).squeeze(1)
        if idx.numel() > pre_nms_top_k:
            idx = idx[torch.topk(s[idx], pre_nms_top_k).indices]
        s, b = s[idx], b[idx]
        if image_size is not None:
            h, w = image_size
            b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h),
                             b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
        keep = nms(b, s, cfg.nms_iou, max_keep=cfg.max_detections)
        out.append(torch.cat([b[keep], s[keep, None]], 1))
    return out


def to_wider(dets: torch.Tensor, scale: float | tuple[float, float] = 1.0) -> np.ndarray:
    """(N, 5) x y w h score in original-image pixels, the WIDER FACE prediction-file rows.

    `scale` is the resize factor original -> input (a float, or (scale_y, scale_x) when the
    height and width were resized differently); boxes are divided by it.
    """
    d = dets.detach().float().cpu().numpy().reshape(-1, 5)
    sy, sx = (scale, scale) if np.isscalar(scale) else scale
    out = np.empty_like(d)
    out[:, 0], out[:, 2] = d[:, 0] / sx, (d[:, 2] - d[:, 0]) / sx
    out[:, 1], out[:, 3] = d[:, 1] / sy, (d[:, 3] - d[:, 1]) / sy
    out[:, 4] = d[:, 4]
    return out
