"""Detector configuration (the `detector:` section of an experiment YAML).

The neck and head are fixed (not searched); the latency table measures them from this same config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorConfig:
    feature_strides: tuple[int, ...] = (8, 16, 32)  # backbone strides feeding the FPN
    neck_channels: int = 64
    # RetinaFace anchors: square, two sizes per level (pixels at the network input)
    anchor_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    input_size: tuple[int, int] = (320, 320)  # (height, width) for latency and evaluation
    score_threshold: float = 0.02
    nms_iou: float = 0.4
    max_detections: int = 750

    def __post_init__(self) -> None:
        if len(self.anchor_sizes) != len(self.feature_strides):
            raise ValueError(f"detector: {len(self.feature_strides)} feature_strides but "
                             f"{len(self.anchor_sizes)} anchor_sizes levels")
        if len({len(a) for a in self.anchor_sizes}) != 1:
            raise ValueError("detector: every level needs the same number of anchor sizes")

    @property
    def n_anchors(self) -> int:
        """Anchors per location (same on every level)."""
        return len(self.anchor_sizes[0])
