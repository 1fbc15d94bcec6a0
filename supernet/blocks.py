"""Standalone torch modules for the blocks of `core.space` (what `Supernet.extract` returns).

    >>> from core.space import LayerKey, parse_block
    >>> m = build_block(LayerKey(parse_block("E6K5C24S2SE"), 16, 64, 64))
    >>> m(torch.zeros(1, 16, 64, 64)).shape
    torch.Size([1, 24, 32, 32])

Parameter counts equal `LayerKey.params()` (tested), so the space's cost model and torch agree.
"""

from __future__ import annotations

import torch
from torch import nn

from core.space import Arch, Block, LayerKey, se_channels


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True):
        layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(c_out)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """SE (Hu et al.): global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class BlockModule(nn.Module):
    """One block: optional expand 1x1, k x k (depthwise unless plain conv), optional SE, project 1x1."""

    def __init__(self, block: Block, c_in: int):
        super().__init__()
        self.block, self.c_in = block, c_in
        mid = block.mid_channels(c_in)
        self.expand = ConvBNAct(c_in, mid, 1) if block.op == "ir" and block.expand != 1 else None
        if block.op == "conv":
            self.spatial = ConvBNAct(c_in, block.channels, block.kernel, block.stride)
        else:
            self.spatial = ConvBNAct(mid, mid, block.kernel, block.stride, groups=mid)
        self.se = SqueezeExcite(mid, se_channels(mid, block.se)) if block.se > 0 else None
        self.project = None if block.op == "conv" else ConvBNAct(mid, block.channels, 1, act=False)
        self.residual = block.has_residual(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.spatial(y)
        if self.se is not None:
            y = self.se(y)
        if self.project is not None:
            y = self.project(y)
        return x + y if self.residual else y


def build_block(key: LayerKey) -> BlockModule:
    return BlockModule(key.block, key.c_in)


class Backbone(nn.Module):
    """A plain feed-forward backbone for one arch; returns the outputs at `taps` (block indices)."""

    def __init__(self, arch: Arch, taps: tuple[int, ...]):
        super().__init__()
        self.arch, self.taps = str(arch), tuple(taps)
        c_in, layers = 3, []
        for b in arch.blocks:
            layers.append(BlockModule(b, c_in))
            c_in = b.channels
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return feats
