"""The supernet: shared weights for every arch of a `SearchSpace`; one path runs at a time.

    >>> from core.experiment import Experiment
    >>> space = Experiment.from_yaml("experiments/tiny.yaml").space
    >>> net = Supernet(space, feature_strides=(8, 16, 32))
    >>> net.set_active(space.baseline)
    >>> [f.shape[1] for f in net(torch.zeros(1, 3, 64, 64))]          # channels at strides 8/16/32
    [16, 24, 32]
    >>> standalone = net.extract(space.baseline)  # a plain blocks.Backbone, same outputs in eval

Weight sharing
--------------
Every layer position (stage i, layer j; ``max_depth`` positions per stage) holds, by
`SupernetConfig.sharing`:

* ``nested`` (the default): **one set of weights for every op choice** (`ElasticBlock` with all
  ops): ``ir<e>`` runs the first ``e * c_in`` hidden channels of the widest expansion (ir3 is the
  first half of ir6, Single-Path NAS), ``dw`` the first ``c_in`` depthwise filters and projection
  columns on its input. ``separate``: one set per op (FairNAS treats each op as its own choice);
  ``nested_ir``: ir ops nested, dw apart. Why nested is the default: with separate weights every op
  learns from scratch on 1/n of the steps, and a warm start on one path helps only the archs that
  share its weights (the issue's probe: an all-dw arch gained nothing from a warm ir path). Nested,
  every path is a slice of the largest one, so the warm start and progressive shrinking of
  `samplers.PathSchedule` reach all of them; measured in experiments/ranking.py (README,
  "Ranking correlation": the ablation table, one row per technique at equal passes).
* **one superkernel for all kernel sizes**: weights for the largest kernel; a k x k choice
  uses the centered crop (Single-Path NAS, OFA). A layer thus needs 1x, not len(kernels)x, the
  spatial weights, and a 3x3 choice trains the centre that the 5x5/7x7 choices also rely on.
* **channel slicing for stage widths**: weights for the widest choice; a narrower width uses the
  first c channels (SPOS, OFA), in every conv, BN and SE that width reaches.
* **one SE module per SE ratio > 0** (per op when ops are separate), sliced to the active hidden
  width (its squeeze width is ``space.se_channels(mid, se)`` of the *active* mid channels).
* **BatchNorm sliced** (`ops.DynamicBatchNorm2d`): running stats per channel (per op when
  separate); stats of a path trained with others are re-estimated per arch by `bn.recalibrate_bn`
  on training images at the evaluation resolution.

The residual is added when stride is 1 and channels match (`Block.has_residual`), so it follows the
active widths. A stage shallower than its max depth skips its extra layers. Fixed stages hold the
same elastic modules with a single choice (their input width can still vary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from supernet.blocks import Backbone, BlockModule
from supernet.ops import ElasticConvBN, ElasticSE
from core.space import Arch, Block, SearchSpace, se_channels


def _se_key(ratio: float) -> str:
    return f"se{round(ratio * 100)}"  # ModuleDict keys may not contain "."


SHARING = ("separate", "nested_ir", "nested")


@dataclass(frozen=True)
class SupernetConfig:
    """The ``supernet:`` section of an experiment YAML: how the op choices share weights.

    ``separate``: one set of weights per op at every layer; ``nested_ir``: ir<e> ops nested (ir3 =
    first half of ir6), dw separate; ``nested``: every non-conv op of a layer in one set of weights
    (see `ElasticBlock`). A checkpoint only loads into a supernet of the same sharing.
    """

    sharing: str = "nested"

    def __post_init__(self) -> None:
        if self.sharing not in SHARING:
            raise ValueError(f"supernet.sharing must be one of {', '.join(SHARING)}, got {self.sharing!r}")


def _module_key(op_name: str, sharing: str) -> str:
    """The ModuleDict key of the weights an op runs on under `sharing`."""
    if sharing == "nested" and op_name != "conv":
        return "nested"
    if sharing == "nested_ir" and op_name.startswith("ir"):
        return "ir"
    return op_name


def _share_groups(ops, sharing: str) -> dict[str, tuple[tuple[str, int], ...]]:
    """Module key -> the (op, expand) choices that share its weights."""
    groups: dict[str, list] = {}
    for op, e in ops:
        groups.setdefault(_module_key(Block(op, 3, 8, 1, e).op_name, sharing), []).append((op, e))
    return {k: tuple(v) for k, v in groups.items()}


class ElasticBlock(nn.Module):
    """The op choices `ops` ((op, expand) pairs) of one layer position in one set of weights.

    With one op this is the weights of `blocks.BlockModule` at max size. With several (full
    nesting) they share: ``ir<e>`` uses the first ``e * c_in`` hidden channels of the widest
    expansion (Single-Path NAS: ir3 is the first half of ir6), and ``dw`` (no expansion) runs the
    first ``c_in`` depthwise filters and projection columns on its input directly.
    """

    def __init__(self, ops: tuple[tuple[str, int], ...], c_in: int, c_out: int, kernel: int,
                 se_ratios: tuple[float, ...]):
        super().__init__()
        kinds = {op for op, _ in ops}
        if "conv" in kinds and len(ops) > 1:
            raise ValueError("a plain conv op cannot share weights with other ops")
        self.op = "conv" if "conv" in kinds else "ir"
        mid = max(Block(op, kernel, c_out, 1, e).mid_channels(c_in) for op, e in ops)
        expanding = any(op == "ir" and e != 1 for op, e in ops)
        self.expand = ElasticConvBN(c_in, mid, 1) if expanding else None
        if self.op == "conv":
            self.spatial = ElasticConvBN(c_in, c_out, kernel)
        else:
            self.spatial = ElasticConvBN(mid, mid, kernel, depthwise=True)
        # squeeze width of the widest SE any active mid (<= mid) can ask for
        self.se = nn.ModuleDict({_se_key(r): ElasticSE(mid, max(se_channels(m, r) for m in
                                                              range(1, mid + 1)))
                                 for r in se_ratios if r > 0})
        self.project = None if self.op == "conv" else ElasticConvBN(mid, c_out, 1)
        self._active: tuple | None = None

    def set_active(self, block: Block, c_in: int) -> None:
        mid = block.mid_channels(c_in)
        se = self.se[_se_key(block.se)] if block.se > 0 else None
        squeeze = se_channels(mid, block.se) if block.se > 0 else 0
        self._active = (block, mid, se, squeeze, block.has_residual(c_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, mid, se, squeeze, residual = self._active
        y = self.expand(x, mid, 1) if b.op == "ir" and b.expand != 1 else x
        y = self.spatial(y, b.channels if self.op == "conv" else mid, b.kernel, b.stride)
        if se is not None:
            y = se(y, squeeze)
        if self.project is not None:
            y = self.project(y, b.channels, 1, act=False)
        return x + y if residual else y

    def copy_to(self, dst: BlockModule) -> None:
        """Write the weights of `dst.block` (input `dst.c_in`) into the plain `dst`."""
        for name in ("expand", "spatial", "project"):
            if getattr(dst, name) is not None:
                getattr(self, name).copy_to(getattr(dst, name))
        if dst.se is not None:
            self.se[_se_key(dst.block.se)].copy_to(dst.se)


class Supernet(nn.Module):
    """Shared weights for the whole `space`; `set_active(arch)` then `forward(x)` runs one path.

    `forward` returns the feature maps at ``space.tap_blocks(arch, feature_strides)`` (finest
    first). `max_tap_channels` are the widest channels each tap can have (for sliced laterals).
    """

    def __init__(self, space: SearchSpace, feature_strides: tuple[int, ...] = (8, 16, 32),
                 sharing: str = "nested"):
        super().__init__()
        if sharing not in SHARING:
            raise ValueError(f"supernet sharing must be one of {SHARING}, got {sharing!r}")
        self.space, self.feature_strides, self.sharing = space, tuple(feature_strides), sharing
        tap_stages = space.tap_stages(self.feature_strides)
        self.max_tap_channels: list[int] = [max(space.stages[i].widths) for i in tap_stages]
        stages, c_in = [], 3
        for st in space.stages:
            if st.fixed:
                ops, kernels, ses = [(st.base.op, st.base.expand)], [st.base.kernel], [st.base.se]
            else:
                ops, kernels, ses = space.ops, space.kernels, space.se_ratios
            c_out, layers = max(st.widths), []
            for j in range(st.max_depth):
                layers.append(nn.ModuleDict({
                    key: ElasticBlock(group, c_in if j == 0 else c_out, c_out, max(kernels), tuple(ses))
                    for key, group in _share_groups(ops, sharing).items()}))
            stages.append(nn.ModuleList(layers))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self._arch: Arch | None = None
        self._path: list[ElasticBlock] = []
        self._taps: frozenset[int] = frozenset()

    @property
    def active_arch(self) -> Arch | None:
        return self._arch

    def set_active(self, arch: Arch) -> None:
        """Select the path of `arch` (ValueError if `arch` is outside the space)."""
        groups = self.space.split(arch)
        path, c_in = [], 3
        for layers, group in zip(self.stages, groups):
            for j, block in enumerate(group):
                module = layers[j][_module_key(block.op_name, self.sharing)]
                module.set_active(block, c_in)
                path.append(module)
                c_in = block.channels
        self._path, self._arch = path, arch
        self._taps = frozenset(self.space.tap_blocks(arch, self.feature_strides))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._arch is None:
            raise RuntimeError("Supernet.forward: call set_active(arch) first")
        feats = []
        for i, module in enumerate(self._path):
            x = module(x)
            if i in self._taps:
                feats.append(x)
        return feats

    def extract(self, arch: Arch) -> Backbone:
        """A standalone `blocks.Backbone` for `arch` with this supernet's weights (same device)."""
        groups = self.space.split(arch)
        backbone = Backbone(arch, tuple(self.space.tap_blocks(arch, self.feature_strides)))
        modules = iter(backbone.layers)
        for layers, group in zip(self.stages, groups):
            for j, block in enumerate(group):
                layers[j][_module_key(block.op_name, self.sharing)].copy_to(next(modules))
        param = next(self.parameters())
        return backbone.to(device=param.device, dtype=param.dtype).train(self.training)
