"""The face detector: searched backbone -> per-level 1x1 laterals -> FPN head (RetinaFace-like).

    >>> det = build_supernet_detector(space, cfg)      # elastic: det.set_active(arch) picks a subnet
    >>> cls, box = det(images)                         # (B, A) logits, (B, A, 4) deltas
    >>> small = det.extract(arch)                      # standalone copy, same outputs, ONNX-exportable
    >>> small.predict(images)[0]                       # (N, 5) x1 y1 x2 y2 score, input pixels

Design: anchor-based, RetinaFace-like. Square anchors, `cfg.n_anchors` (2) per location, sizes per
level from `cfg.anchor_sizes` at strides 8/16/32; IoU matching, focal + smooth-L1 loss
(`detection.loss`); decode + greedy NMS (`detection.postprocess`). Why:

* simple and ONNX-friendly: the network is convs only; anchors are constants computed outside the
  graph, so the exported model is backbone + neck + head with no custom ops;
* the same anchors (and box coding) as the baseline team's RetinaFace-style detectors, so results
  compare like for like and only the backbone differs;
* matching is one IoU matrix per image, cheap on CPU, which matters for supernet training here.

An anchor-free ATSS/FCOS design was considered and not taken. The ATSS paper shows the gap between
RetinaNet and FCOS comes from how positives are chosen, not from anchors versus points, so going
anchor-free buys nothing by itself; FCOS adds a centerness branch and per-level size ranges to tune
for faces, and ATSS adds per-gt top-k and IoU statistics per step (costly with hundreds of faces
per WIDER image on CPU), while breaking comparability with the baseline detectors. The neck/head
are fixed and shared by every arch, so the search compares backbones, not detector designs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from detection.anchors import make_anchors
from detection.config import DetectorConfig
from detection.neck import FPNHead, SlicedLateral
from detection.postprocess import postprocess
from supernet.blocks import Backbone, ConvBNAct
from supernet.net import Supernet
from core.space import Arch, SearchSpace


class Detector(nn.Module):
    """Backbone (a `Supernet` or a `Backbone`) -> one lateral per level -> `FPNHead`.

    `tap_channels` are the backbone's channels at each feature stride: the widest choice for a
    supernet, whose laterals are `SlicedLateral` (input width follows the active arch); the exact
    widths for a plain backbone, whose laterals are plain `ConvBNAct` 1x1 (no slicing in the graph).
    A backbone counts as elastic when it has `set_active`.
    """

    def __init__(self, backbone: nn.Module, tap_channels: list[int], cfg: DetectorConfig):
        super().__init__()
        if len(tap_channels) != len(cfg.feature_strides):
            raise ValueError(f"{len(tap_channels)} tap channels for {len(cfg.feature_strides)} "
                             f"feature strides {cfg.feature_strides}")
        self.cfg, self.tap_channels = cfg, list(tap_channels)
        self.backbone = backbone
        if self.elastic:
            lats = [SlicedLateral(c, cfg.neck_channels) for c in tap_channels]
        else:
            lats = [ConvBNAct(c, cfg.neck_channels, 1) for c in tap_channels]
        self.laterals = nn.ModuleList(lats)
        self.head = FPNHead(cfg.neck_channels, len(cfg.feature_strides), cfg.n_anchors)
        self._anchor_cache: dict[tuple, torch.Tensor] = {}

    @property
    def elastic(self) -> bool:
        return hasattr(self.backbone, "set_active")

    def set_active(self, arch: Arch) -> None:
        """Select the subnet of an elastic backbone; a plain one only accepts its own arch."""
        if self.elastic:
            self.backbone.set_active(arch)
        elif str(arch) != getattr(self.backbone, "arch", str(arch)):
            raise ValueError(f"standalone detector of arch {self.backbone.arch} cannot run {arch}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> class logits (B, A), box deltas (B, A, 4), ordered as `anchors`."""
        feats = self.backbone(images)
        return self.head([lat(f) for lat, f in zip(self.laterals, feats)])

    def anchors(self, image_size: tuple[int, int]) -> torch.Tensor:
        """(A, 4) anchors for inputs of `image_size` = (height, width), on this model's device."""
        device = next(self.parameters()).device
        key = (int(image_size[0]), int(image_size[1]), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = make_anchors(self.cfg, key[:2], device=device)
        return self._anchor_cache[key]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Detections per image, (N, 5) x1 y1 x2 y2 score in input pixels (runs in eval mode)."""
        was_training = self.training
        self.eval()
        try:
            cls, box = self(images)
        finally:
            self.train(was_training)
        size = tuple(images.shape[-2:])
        return postprocess(cls, box, self.anchors(size), self.cfg, image_size=size)

    def extract(self, arch: Arch) -> "Detector":
        """The standalone detector of `arch`, weights copied; equals this one with `arch` active."""
        if not self.elastic:
            raise TypeError("extract needs an elastic (supernet) backbone")
        backbone = self.backbone.extract(arch)
        channels = [arch.blocks[t].channels for t in backbone.taps]
        det = Detector(backbone, channels, self.cfg)
        det.laterals = nn.ModuleList(lat.export(c) for lat, c in zip(self.laterals, channels))
        det.head = copy.deepcopy(self.head)
        return det.to(next(self.parameters()).device).train(self.training)


def _as_arch(space: SearchSpace, arch: Arch | str) -> Arch:
    return space.parse(arch) if isinstance(arch, str) else arch


def build_supernet_detector(space: SearchSpace, cfg: DetectorConfig, sharing: str = "nested"
                            ) -> Detector:
    """Detector on a weight-sharing `Supernet` of `space` (laterals sized for the widest taps)."""
    net = Supernet(space, cfg.feature_strides, sharing)
    return Detector(net, net.max_tap_channels, cfg)


def build_detector(space: SearchSpace, arch: Arch | str, cfg: DetectorConfig) -> Detector:
    """Freshly initialised standalone detector of one arch (for retraining and export)."""
    arch = _as_arch(space, arch)
    taps = space.tap_blocks(arch, cfg.feature_strides)
    return Detector(Backbone(arch, taps), [arch.blocks[t].channels for t in taps], cfg)
