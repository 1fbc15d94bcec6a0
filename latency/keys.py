"""Table keys (torch-free): the entries a latency table holds and the keys an arch sums over.

Every entry is one small ONNX model with fixed input shapes. Keys (the table's `key` column):

==========================================  ================================================
``E6K5C24S2SE@16x160x160``                  a block (`str(LayerKey)`: c_in x height x width)
``lateral:K1C64@96x20x20``                  1x1 ConvBNAct 96 -> neck channels at a tap
``head:C64A2@40x40,20x20,10x10``            FPN merge + smoothing + class/box convs (one entry)
==========================================  ================================================

    >>> entries = build_entries(space, DetectorConfig(input_size=(64, 64)))   # doctest: +SKIP
    >>> arch_keys(space, space.baseline, cfg)[-1]                             # doctest: +SKIP
    'head:C64A2@8x8,4x4,2x2'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from detection.config import DetectorConfig
from supernet.space import Arch, LayerKey, SearchSpace

COLUMNS = ("key", "kind", "op", "kernel", "c_in", "c_out", "stride", "expand", "se", "height",
           "width")


@dataclass(frozen=True)
class Entry:
    """One row of the table before timing; `inputs` are the NCHW input shapes of its ONNX model."""

    key: str
    kind: str  # "block", "lateral" or "head"
    op: str  # block op ("conv", "dw", "ir"), "lateral" or "fpn"
    kernel: int
    c_in: int
    c_out: int
    stride: int
    expand: int
    se: float
    height: int  # input height (head: of the finest level)
    width: int
    inputs: tuple[tuple[int, ...], ...]

    def row(self) -> dict:
        """The descriptive columns (everything but the input shapes)."""
        d = asdict(self)
        del d["inputs"]
        return d


def lateral_key(c_in: int, channels: int, size: tuple[int, int]) -> str:
    return f"lateral:K1C{channels}@{c_in}x{size[0]}x{size[1]}"


def head_key(channels: int, n_anchors: int, sizes: list[tuple[int, int]]) -> str:
    return f"head:C{channels}A{n_anchors}@" + ",".join(f"{h}x{w}" for h, w in sizes)


def stage_sizes(space: SearchSpace, input_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Output (height, width) of every stage at `input_size` (same rounding as `LayerKey`)."""
    h, w = input_size
    out = []
    for st in space.stages:
        s = st.base.stride
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
        out.append((h, w))
    return out


def tap_sizes(space: SearchSpace, cfg: DetectorConfig) -> list[tuple[int, int]]:
    """Resolution of each detector feature (finest first)."""
    sizes = stage_sizes(space, tuple(cfg.input_size))
    return [sizes[i] for i in space.tap_stages(cfg.feature_strides)]


def block_entry(key: LayerKey) -> Entry:
    b = key.block
    return Entry(str(key), "block", b.op, b.kernel, key.c_in, b.channels, b.stride, b.expand, b.se,
                 key.height, key.width, ((1, key.c_in, key.height, key.width),))


def lateral_entry(c_in: int, channels: int, size: tuple[int, int]) -> Entry:
    return Entry(lateral_key(c_in, channels, size), "lateral", "lateral", 1, c_in, channels, 1, 1,
                 0.0, size[0], size[1], ((1, c_in, *size),))


def head_entry(cfg: DetectorConfig, sizes: list[tuple[int, int]]) -> Entry:
    c = cfg.neck_channels
    return Entry(head_key(c, cfg.n_anchors, sizes), "head", "fpn", 3, c, c, 1, 1, 0.0,
                 sizes[0][0], sizes[0][1], tuple((1, c, h, w) for h, w in sizes))


def build_entries(space: SearchSpace, cfg: DetectorConfig) -> list[Entry]:
    """Every entry the table needs: `space.blocks`, laterals per tap width, and the head."""
    entries = [block_entry(k) for k in space.blocks(tuple(cfg.input_size))]
    sizes = tap_sizes(space, cfg)
    for stage, size in zip(space.tap_stages(cfg.feature_strides), sizes):
        entries += [lateral_entry(c, cfg.neck_channels, size) for c in space.stages[stage].widths]
    entries.append(head_entry(cfg, sizes))
    return entries


def arch_keys(space: SearchSpace, arch: Arch, cfg: DetectorConfig) -> list[str]:
    """Table keys whose medians add up to `arch`'s detector latency."""
    keys = [str(k) for k in space.layers(arch, tuple(cfg.input_size))]
    groups, sizes = space.split(arch), tap_sizes(space, cfg)
    for stage, size in zip(space.tap_stages(cfg.feature_strides), sizes):
        keys.append(lateral_key(groups[stage][-1].channels, cfg.neck_channels, size))
    keys.append(head_key(cfg.neck_channels, cfg.n_anchors, sizes))
    return keys
