"""Elastic (weight-sliced) ops of the supernet: one set of weights serves every width and kernel.

Each op holds weights for its widest input/output channels and its largest kernel; `forward` takes
the active sizes and uses the first channels (as SPOS/OFA) and the centered k x k crop of the
superkernel (as Single-Path NAS/OFA). `copy_to` writes the active slice into the plain modules of
`supernet.blocks`, which is how `Supernet.extract` builds a standalone network.

    >>> conv = ElasticConvBN(c_in=24, c_out=48, kernel=7)
    >>> conv(torch.zeros(2, 16, 32, 32), c_out=32, kernel=3, stride=2).shape  # 16 -> 32 channels
    torch.Size([2, 32, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.blocks import ConvBNAct, SqueezeExcite


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``x.shape[1]`` channels; updates only that slice of the stats.

    Mirrors `nn.BatchNorm2d.forward` (including ``momentum=None`` = cumulative average, which BN
    recalibration uses), but passes views ``running_mean[:c]`` etc. to `F.batch_norm`, which
    updates them in place, so the statistics of wider channels are untouched.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        if c == self.num_features:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training, factor, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, factor, self.eps)

    def copy_to(self, dst: nn.BatchNorm2d) -> None:
        c = dst.num_features
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dst, name).copy_(getattr(self, name)[:c])
            dst.num_batches_tracked.copy_(self.num_batches_tracked)


def _crop(weight: torch.Tensor, c_out: int, c_in: int, kernel: int) -> torch.Tensor:
    """weight[:c_out, :c_in] with the centered kernel x kernel crop, as a view (no copy).

    Plain slicing, not one `as_strided` view: autograd's as_strided backward takes a slow general
    path (measured: 30-80 s for the first backward passes of the default supernet, vs 0.3 s).
    """
    k_max = weight.shape[-1]
    if c_out == weight.shape[0] and c_in == weight.shape[1] and kernel == k_max:
        return weight
    off = (k_max - kernel) // 2
    return weight[:c_out, :c_in, off:off + kernel, off:off + kernel]


class ElasticConvBN(nn.Module):
    """Conv (no bias) + DynamicBatchNorm2d (+ ReLU); dense, or depthwise with ``depthwise=True``.

    The active input channels are those of the input; for a depthwise conv the output channels equal
    them too (``c_out`` is ignored). Same padding (kernel // 2), as `blocks.ConvBNAct`.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, depthwise: bool = False):
        super().__init__()
        self.depthwise = depthwise
        shape = (c_out, 1, kernel, kernel) if depthwise else (c_out, c_in, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")  # as torchvision's MobileNetV2
        self.bn = DynamicBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, c_out: int, kernel: int, stride: int = 1,
                act: bool = True) -> torch.Tensor:
        c_in = x.shape[1]
        if self.depthwise:
            w = _crop(self.weight, c_in, 1, kernel)
            y = F.conv2d(x, w, None, stride, kernel // 2, 1, c_in)
        else:
            y = F.conv2d(x, _crop(self.weight, c_out, c_in, kernel), None, stride, kernel // 2)
        y = self.bn(y)
        return F.relu(y, inplace=True) if act else y

    def copy_to(self, dst: ConvBNAct) -> None:
        """Copy the slice matching the plain `dst` (its conv's channels and kernel decide which)."""
        conv = dst[0]
        c_in = 1 if self.depthwise else conv.in_channels
        with torch.no_grad():
            conv.weight.copy_(_crop(self.weight, conv.out_channels, c_in, conv.kernel_size[0]))
        self.bn.copy_to(dst[1])


class ElasticSE(nn.Module):
    """Squeeze-and-excite on the first ``x.shape[1]`` channels with the first `squeeze` units."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor, squeeze: int) -> torch.Tensor:
        c = x.shape[1]
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, self.reduce.weight[:squeeze, :c], self.reduce.bias[:squeeze]))
        s = F.conv2d(s, self.expand.weight[:c, :squeeze], self.expand.bias[:c])
        return x * torch.sigmoid(s)

    def copy_to(self, dst: SqueezeExcite) -> None:
        c, sq = dst.reduce.in_channels, dst.reduce.out_channels
        with torch.no_grad():
            dst.reduce.weight.copy_(self.reduce.weight[:sq, :c])
            dst.reduce.bias.copy_(self.reduce.bias[:sq])
            dst.expand.weight.copy_(self.expand.weight[:c, :sq])
            dst.expand.bias.copy_(self.expand.bias[:c])
