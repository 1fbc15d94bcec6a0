"""The fixed (not searched) part of the detector: FPN-style neck and a RetinaFace-style head.

Features at strides 8/16/32 (configurable) come from the backbone with whatever widths the arch
chose; a 1x1 *lateral* projection per level maps them to `channels`. In the supernet the lateral
holds weights for the widest choice and slices its input channels to the active width, so one
neck serves every arch; `SlicedLateral.export(c_in)` gives the plain module for one width.

    >>> head = FPNHead(channels=64, n_levels=3, n_anchors=2)
    >>> feats = [torch.zeros(1, 64, s, s) for s in (40, 20, 10)]
    >>> cls, box = head(feats)
    >>> cls.shape, box.shape   # 2 anchors x (40^2 + 20^2 + 10^2) locations
    (torch.Size([1, 4200]), torch.Size([1, 4200, 4]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks import ConvBNAct


PRIOR = 0.01  # initial face probability of every anchor (RetinaNet's pi)


class SlicedLateral(nn.Module):
    """1x1 conv + BN + ReLU whose input channels follow the input (<= max_c_in)."""

    def __init__(self, max_c_in: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(max_c_in, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        if c_in > self.conv.in_channels:
            raise ValueError(f"lateral gets {c_in} channels, built for at most {self.conv.in_channels}")
        return F.relu(self.bn(F.conv2d(x, self.conv.weight[:, :c_in])))

    def export(self, c_in: int) -> ConvBNAct:
        """The plain lateral for inputs of `c_in` channels, with this module's weights."""
        m = ConvBNAct(c_in, self.conv.out_channels, 1)
        with torch.no_grad():
            m[0].weight.copy_(self.conv.weight[:, :c_in])
        m[1].load_state_dict(self.bn.state_dict())
        return m


class FPNHead(nn.Module):
    """Top-down FPN merge, a 3x3 smoothing conv per level, then per-level class and box convs.

    Input: `n_levels` maps of `channels` channels, finest first. Output: class logits (B, A_total)
    and box deltas (B, A_total, 4), anchors ordered level, y, x, anchor.
    """

    def __init__(self, channels: int, n_levels: int, n_anchors: int):
        super().__init__()
        self.n_anchors = n_anchors
        self.smooth = nn.ModuleList(ConvBNAct(channels, channels, 3) for _ in range(n_levels))
        self.cls = nn.ModuleList(nn.Conv2d(channels, n_anchors, 1) for _ in range(n_levels))
        self.box = nn.ModuleList(nn.Conv2d(channels, n_anchors * 4, 1) for _ in range(n_levels))
        # RetinaNet's initialisation: small weights, and a class bias that makes every anchor start
        # at p = PRIOR. With bias 0 (p = 0.5) the focal loss over ~thousands of negatives starts
        # near 12 and the first hundred steps only learn that faces are rare.
        for conv in (*self.cls, *self.box):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        for conv in self.cls:
            nn.init.constant_(conv.bias, -math.log((1 - PRIOR) / PRIOR))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        merged = [feats[-1]]
        for f in reversed(feats[:-1]):  # coarse to fine: add the upsampled coarser level
            merged.insert(0, f + F.interpolate(merged[0], size=f.shape[-2:], mode="nearest"))
        cls_out, box_out = [], []
        for f, smooth, cls, box in zip(merged, self.smooth, self.cls, self.box):
            f = smooth(f)
            b = f.shape[0]
            cls_out.append(cls(f).permute(0, 2, 3, 1).reshape(b, -1))
            box_out.append(box(f).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(cls_out, 1), torch.cat(box_out, 1)
