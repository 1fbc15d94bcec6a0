"""The search space and the architecture notation: the one source of truth (imports no torch).

Notation
--------
An architecture is its blocks joined by ``-``, in order from the input, e.g. the default baseline::

    K3C32S2-DK3C16S1-E6K3C24S2-E6K3C24S1-E6K3C32S2-...

One block token is ``[OP]K<kernel>C<channels>S<stride>[SE[<percent>]]``:

=================  ===========================================================================
``K3C16S2``        plain conv: kernel 3, 16 output channels, stride 2 (the users' spelling)
``DK5C32S1``       depthwise-separable: depthwise k x k, then pointwise 1 x 1 to 32 channels
``E6K5C24S2``      inverted bottleneck (MobileNetV2) with expansion 6, kernel 5, 24 channels
``...SE``          squeeze-and-excite with ratio 0.25 (``SE50`` = ratio 0.5; ``SE`` is 25)
=================  ===========================================================================

Numbers have no leading zeros, so every arch has exactly one spelling and
``format_arch(parse_arch(s)) == s``. Every block is BatchNorm + ReLU after each conv (none after the
projecting 1 x 1); ``D`` and ``E`` blocks add the input back when stride is 1 and channels match.
A skipped layer (stage depth -1) is simply absent from the string.

Space
-----
The space is factorized hierarchically as in MnasNet: the baseline is a list of stages (the first is
the stem); each searchable stage chooses a width (a multiplier of the baseline channels, rounded to a
multiple of 8) and a depth (baseline depth + delta); each of its layers chooses an op, a kernel and an
SE ratio. ``SearchSpace.from_yaml("experiments/space.yaml")`` builds it; the supernet, the latency
table and the search all read the same object.

    >>> space = SearchSpace.from_yaml("experiments/space.yaml")
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.decode(space.encode(arch)) == arch
    True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from core.config import from_dict, load_yaml

_BLOCK_RE = re.compile(
    r"(?:(?P<op>D|E(?P<expand>[1-9]\d*)))?"
    r"K(?P<kernel>[1-9]\d*)C(?P<channels>[1-9]\d*)S(?P<stride>[1-9]\d*)"
    r"(?P<se>SE(?P<se_pct>[1-9]\d*)?)?"
)
_DEFAULT_SE_PCT = 25


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet channel rounding: nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def se_channels(c_mid: int, se: float) -> int:
    """Squeeze width of an SE module on `c_mid` channels (at least 8, a multiple of 8)."""
    return make_divisible(c_mid * se, 8)


@dataclass(frozen=True, order=True)
class Block:
    """One block of the backbone; ``str(block)`` is its token in the notation above."""

    op: str  # "conv" (plain), "dw" (depthwise-separable), "ir" (inverted bottleneck)
    kernel: int
    channels: int
    stride: int
    expand: int = 1  # ir only: hidden channels = input channels x expand
    se: float = 0.0  # squeeze-and-excite ratio of the hidden channels, 0 = none

    def __post_init__(self) -> None:
        if self.op not in ("conv", "dw", "ir"):
            raise ValueError(f"unknown block op {self.op!r} (expected conv, dw or ir)")
        if self.op != "ir" and self.expand != 1:
            raise ValueError(f"expansion {self.expand} given for a {self.op} block")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same padding), got {self.kernel}")
        pct = round(self.se * 100)
        if self.se < 0 or abs(pct - self.se * 100) > 1e-9:
            raise ValueError(f"SE ratio must be a whole percent >= 0, got {self.se}")

    @property
    def op_name(self) -> str:
        """The op choice as written in the space YAML: ``conv``, ``dw`` or ``ir<expand>``."""
        return f"ir{self.expand}" if self.op == "ir" else self.op

    def __str__(self) -> str:
        prefix = {"conv": "", "dw": "D", "ir": f"E{self.expand}"}[self.op]
        pct = round(self.se * 100)
        suffix = "" if pct == 0 else "SE" if pct == _DEFAULT_SE_PCT else f"SE{pct}"
        return f"{prefix}K{self.kernel}C{self.channels}S{self.stride}{suffix}"

    def mid_channels(self, c_in: int) -> int:
        """Channels the depthwise conv and SE see."""
        return c_in * self.expand if self.op == "ir" else c_in if self.op == "dw" else self.channels

    def has_residual(self, c_in: int) -> bool:
        return self.op != "conv" and self.stride == 1 and c_in == self.channels


def parse_block(token: str, position: int = 0, offset: int = 0) -> Block:
    """Parse one block token; errors name the token, its index and its character offset."""
    m = _BLOCK_RE.fullmatch(token)
    if m is None:
        raise ValueError(
            f"bad block token {token!r} (block {position}, character {offset}): expected "
            "[D|E<expand>]K<kernel>C<channels>S<stride>[SE[<percent>]], e.g. K3C16S2 or E6K5C24S2SE"
        )
    op = "dw" if m["op"] == "D" else "ir" if m["op"] else "conv"
    se = 0.0 if not m["se"] else int(m["se_pct"] or _DEFAULT_SE_PCT) / 100
    try:
        return Block(op, int(m["kernel"]), int(m["channels"]), int(m["stride"]),
                     int(m["expand"] or 1), se)
    except ValueError as err:
        raise ValueError(f"bad block token {token!r} (block {position}, character {offset}): {err}")


@dataclass(frozen=True)
class Arch:
    """A whole backbone: its blocks in order. Hashable, so usable as a cache key."""

    blocks: tuple[Block, ...]

    def __str__(self) -> str:
        return "-".join(str(b) for b in self.blocks)

    def __iter__(self) -> Iterator[Block]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)


def parse_arch(text: str) -> Arch:
    """Parse ``"K3C32S2-E6K5C24S2SE-..."`` (no space check; see `SearchSpace.parse`)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty architecture string: {text!r}")
    text = text.strip()
    blocks, offset = [], 0
    for i, token in enumerate(text.split("-")):
        blocks.append(parse_block(token, i, offset))
        offset += len(token) + 1
    return Arch(tuple(blocks))


def format_arch(arch: Arch) -> str:
    return str(arch)


@dataclass(frozen=True)
class LayerKey:
    """A block placed in the network: what its latency and cost depend on."""

    block: Block
    c_in: int
    height: int  # input feature-map height
    width: int  # input feature-map width

    def __str__(self) -> str:
        return f"{self.block}@{self.c_in}x{self.height}x{self.width}"

    @property
    def out_size(self) -> tuple[int, int]:
        s = self.block.stride
        return (self.height - 1) // s + 1, (self.width - 1) // s + 1

    def params(self) -> int:
        """Trainable parameters (conv weights, BN affine, SE weights+biases) of this block."""
        b, c_in, c_out = self.block, self.c_in, self.block.channels
        mid, k = b.mid_channels(c_in), b.kernel
        if b.op == "conv":
            total = k * k * c_in * c_out + 2 * c_out
        elif b.op == "dw":
            total = k * k * c_in + 2 * c_in + c_in * c_out + 2 * c_out
        else:
            total = (c_in * mid + 2 * mid if b.expand != 1 else 0) + k * k * mid + 2 * mid
            total += mid * c_out + 2 * c_out
        if b.se > 0:
            sq = se_channels(mid, b.se)
            total += 2 * mid * sq + sq + mid
        return total

    def macs(self) -> int:
        """Multiply-accumulates of the convs and SE layers (MACs; pooling and adds not counted)."""
        b, c_in, c_out = self.block, self.c_in, self.block.channels
        mid, k = b.mid_channels(c_in), b.kernel
        h_out, w_out = self.out_size
        hw_in, hw_out = self.height * self.width, h_out * w_out
        if b.op == "conv":
            total = k * k * c_in * c_out * hw_out
        elif b.op == "dw":
            total = k * k * c_in * hw_out + c_in * c_out * hw_out
        else:
            total = (c_in * mid * hw_in if b.expand != 1 else 0) + k * k * mid * hw_out
            total += mid * c_out * hw_out
        if b.se > 0:
            total += 2 * mid * se_channels(mid, b.se)
        return total


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class StageConfig:
    """One stage of the baseline: `block` repeated `depth` times, the first layer taking its stride."""

    block: str
    depth: int = 1
    fixed: bool = False  # not searched (the stem, the first MobileNetV2 block)


@dataclass(frozen=True)
class BaselineConfig:
    name: str = "baseline"
    stages: tuple[StageConfig, ...] = ()


@dataclass(frozen=True)
class SpaceConfig:
    baseline: str | BaselineConfig = "baseline.yaml"  # path (relative to the space YAML) or inline
    ops: tuple[str, ...] = ("ir3", "ir6", "dw")
    kernels: tuple[int, ...] = (3, 5, 7)
    se: tuple[float, ...] = (0.0, 0.25)
    widths: tuple[float, ...] = (0.75, 1.0, 1.25)
    depth_deltas: tuple[int, ...] = (-1, 0, 1)
    channel_divisor: int = 8


def _parse_op(name: str, where: str) -> tuple[str, int]:
    m = re.fullmatch(r"conv|dw|ir([1-9]\d*)", name)
    if m is None:
        raise ValueError(f"{where}: unknown op {name!r} (expected conv, dw or ir<expansion> e.g. ir6)")
    return ("ir", int(m[1])) if m[1] else (name, 1)


@dataclass(frozen=True)
class Stage:
    """A resolved stage: the concrete choices the space offers for it."""

    index: int
    base: Block  # baseline template; first layer uses base.stride, later ones stride 1
    base_depth: int
    fixed: bool
    widths: tuple[int, ...]  # channel choices
    depths: tuple[int, ...]  # depth choices

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class Variable:
    name: str
    n_choices: int


@dataclass(frozen=True)
class _Where:
    """Position of a block in an arch being checked; formats lazily (parse is on the hot path)."""

    pos: int
    block: Block
    stage: int
    layer: int

    def __str__(self) -> str:
        return f"block {self.pos} {str(self.block)!r} (stage {self.stage}, layer {self.layer})"


class SearchSpace:
    """MnasNet-style factorized space around a baseline; see the module docstring."""

    def __init__(self, config: SpaceConfig, baseline: BaselineConfig, source: str = "<space>"):
        self.config, self.baseline_config, self.source = config, baseline, source
        if not baseline.stages:
            raise ValueError(f"{source}: the baseline has no stages")
        self.ops = tuple(_parse_op(o, f"{source}: ops") for o in config.ops)
        for name, values in (("ops", config.ops), ("kernels", config.kernels), ("se", config.se),
                             ("widths", config.widths), ("depth_deltas", config.depth_deltas)):
            if not values:
                raise ValueError(f"{source}: {name} must list at least one choice")
            if len(set(values)) != len(values):
                raise ValueError(f"{source}: {name} lists a choice twice: {list(values)}")
        for k in config.kernels:
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{source}: kernels: {k} is not an odd positive size")
        for w in config.widths:
            if w <= 0:
                raise ValueError(f"{source}: widths: {w} is not positive")
        self.kernels, self.se_ratios = tuple(config.kernels), tuple(config.se)
        stages = []
        for i, sc in enumerate(baseline.stages):
            where = f"{source}: baseline stage {i}"
            try:
                block = parse_block(sc.block, i)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            if sc.depth < 1:
                raise ValueError(f"{where}: depth must be >= 1, got {sc.depth}")
            if sc.fixed or i == 0:
                widths, depths = (block.channels,), (sc.depth,)
            else:
                widths = tuple(sorted({make_divisible(block.channels * w, config.channel_divisor)
                                       for w in config.widths}))
                depths = tuple(sorted({max(1, sc.depth + d) for d in config.depth_deltas}))
            stages.append(Stage(i, block, sc.depth, sc.fixed or i == 0, widths, depths))
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.baseline = Arch(tuple(b for i, st in enumerate(self.stages)
                                   for b in self._stage_layers(st, st.base.channels, st.base_depth,
                                                               None)))
        self.variables: tuple[Variable, ...] = tuple(self._variables())

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        return cls.from_dict(load_yaml(path), base_dir=path.parent, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path = ".", source: str = "<space>") -> "SearchSpace":
        config = from_dict(SpaceConfig, data, where=source)
        if isinstance(config.baseline, str):
            bpath = Path(base_dir) / config.baseline
            baseline = from_dict(BaselineConfig, load_yaml(bpath), where=str(bpath))
        else:
            baseline = config.baseline
        return cls(config, baseline, source)

    def fingerprint(self) -> str:
        """Short hash of everything that defines the space (tables and checkpoints record it)."""
        text = repr((self.config.ops, self.kernels, self.se_ratios,
                     [(str(s.base), s.base_depth, s.fixed, s.widths, s.depths) for s in self.stages]))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _variables(self) -> Iterator[Variable]:
        for st in self.searchable_stages:
            if len(st.widths) > 1:
                yield Variable(f"s{st.index}.width", len(st.widths))
            if len(st.depths) > 1:
                yield Variable(f"s{st.index}.depth", len(st.depths))
            for j in range(st.max_depth):
                for name, n in (("op", len(self.ops)), ("kernel", len(self.kernels)),
                                ("se", len(self.se_ratios))):
                    if n > 1:
                        yield Variable(f"s{st.index}.l{j}.{name}", n)

    @property
    def searchable_stages(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if not s.fixed)

    @property
    def n_var(self) -> int:
        return len(self.variables)

    @property
    def choices(self) -> np.ndarray:
        """Number of choices per variable of the encoding."""
        return np.array([v.n_choices for v in self.variables], dtype=np.int64)

    @property
    def xl(self) -> np.ndarray:
        return np.zeros(self.n_var, dtype=np.int64)

    @property
    def xu(self) -> np.ndarray:
        return self.choices - 1

    def layer_choices(self) -> list[tuple[str, int, float]]:
        """Every (op, expand, kernel, se) a searchable layer may take, as (op_name, kernel, se)."""
        return [(f"ir{e}" if op == "ir" else op, k, se)
                for (op, e), k, se in itertools.product(self.ops, self.kernels, self.se_ratios)]

    # -- stage helpers ------------------------------------------------------------------------
    def _stage_layers(self, st: Stage, channels: int, depth: int,
                      layer_choices: list[tuple[int, int, int]] | None) -> list[Block]:
        """Blocks of stage `st` at the given width/depth; `layer_choices` = (op, kernel, se) indices."""
        blocks = []
        for j in range(depth):
            stride = st.base.stride if j == 0 else 1
            if layer_choices is None:
                blocks.append(dataclasses.replace(st.base, channels=channels, stride=stride))
            else:
                oi, ki, si = layer_choices[j]
                op, expand = self.ops[oi]
                blocks.append(Block(op, self.kernels[ki], channels, stride, expand, self.se_ratios[si]))
        return blocks

    def _choice_index(self, st: Stage, j: int, block: Block) -> tuple[int, int, int] | None:
        try:
            return (self.ops.index((block.op, block.expand)), self.kernels.index(block.kernel),
                    self.se_ratios.index(block.se))
        except ValueError:
            return None

    # -- arch <-> encoding --------------------------------------------------------------------
    def split(self, arch: Arch) -> tuple[tuple[Block, ...], ...]:
        """The blocks of `arch` grouped by stage; ValueError if `arch` is outside the space."""
        return self._assign(arch)[0]

    @functools.lru_cache(maxsize=65536)
    def _assign(self, arch: Arch) -> tuple[tuple[tuple[Block, ...], ...], tuple]:
        blocks = arch.blocks
        best_error = [0, "it has fewer blocks than the space's shallowest arch"]

        def fail(pos: int, msg: str) -> None:
            if pos >= best_error[0]:
                best_error[:] = [pos, msg]

        def walk(si: int, pos: int):
            if si == len(self.stages):
                if pos == len(blocks):
                    return []
                fail(pos, f"block {pos} {str(blocks[pos])!r} is past the last stage")
                return None
            st = self.stages[si]
            for depth in st.depths:
                group = blocks[pos:pos + depth]
                if len(group) < depth:
                    fail(pos + len(group), f"stage {si} needs {depth} blocks, the arch ends first")
                    continue
                ok = True
                for j, b in enumerate(group):
                    stride = st.base.stride if j == 0 else 1
                    where = _Where(pos + j, b, si, j)  # formatted only if an error is reported
                    if b.stride != stride:
                        fail(pos + j, f"{where}: stride must be {stride}")
                        ok = False
                    elif b.channels not in st.widths or b.channels != group[0].channels:
                        fail(pos + j, f"{where}: channels must be one of {list(st.widths)} "
                                      "and equal across the stage")
                        ok = False
                    elif st.fixed and dataclasses.replace(st.base, stride=stride) != b:
                        fail(pos + j, f"{where}: this stage is fixed to "
                                      f"{dataclasses.replace(st.base, stride=stride)}")
                        ok = False
                    elif not st.fixed and self._choice_index(st, j, b) is None:
                        fail(pos + j, f"{where}: op/kernel/SE not among ops {list(self.config.ops)}, "
                                      f"kernels {list(self.kernels)}, se {list(self.se_ratios)}")
                        ok = False
                    if not ok:
                        break
                if ok:
                    rest = walk(si + 1, pos + depth)
                    if rest is not None:
                        return [tuple(group)] + rest
            return None

        groups = walk(0, 0)
        if groups is None:
            raise ValueError(f"arch outside the space {self.source}: {best_error[1]}: {arch}")
        return tuple(groups), ()

    def parse(self, text: str) -> Arch:
        """Parse an arch string and check it belongs to this space (errors say where it does not)."""
        arch = parse_arch(text)
        self.split(arch)
        return arch

    def encode(self, arch: Arch) -> np.ndarray:
        """Integer vector (one entry per `variables`); layers past the depth are encoded 0."""
        groups = self.split(arch)
        x = []
        for st in self.searchable_stages:
            group = groups[st.index]
            if len(st.widths) > 1:
                x.append(st.widths.index(group[0].channels))
            if len(st.depths) > 1:
                x.append(st.depths.index(len(group)))
            for j in range(st.max_depth):
                idx = self._choice_index(st, j, group[j]) if j < len(group) else (0, 0, 0)
                for value, n in zip(idx, (len(self.ops), len(self.kernels), len(self.se_ratios))):
                    if n > 1:
                        x.append(value)
        return np.array(x, dtype=np.int64)

    def decode(self, x) -> Arch:
        """Arch of an integer vector; entries of layers past the chosen depth are ignored."""
        x = np.asarray(x)
        if x.shape != (self.n_var,):
            raise ValueError(f"encoding must have shape ({self.n_var},), got {x.shape}")
        xi = np.rint(x).astype(np.int64)
        bad = np.flatnonzero((xi < 0) | (xi >= self.choices))
        if bad.size:
            v = self.variables[bad[0]]
            raise ValueError(f"encoding value {x[bad[0]]} out of range for {v.name} "
                             f"(0..{v.n_choices - 1})")
        it = iter(xi.tolist())
        blocks: list[Block] = []
        for st in self.stages:
            if st.fixed:
                blocks += self._stage_layers(st, st.base.channels, st.base_depth, None)
                continue
            width = st.widths[next(it)] if len(st.widths) > 1 else st.widths[0]
            depth = st.depths[next(it)] if len(st.depths) > 1 else st.depths[0]
            layer_choices = []
            for j in range(st.max_depth):
                idx = tuple(next(it) if n > 1 else 0 for n in
                            (len(self.ops), len(self.kernels), len(self.se_ratios)))
                layer_choices.append(idx)
            blocks += self._stage_layers(st, width, depth, layer_choices)
        return Arch(tuple(blocks))

    def canonical(self, x) -> np.ndarray:
        """`encode(decode(x))`: zeroes the don't-care entries so equal archs have equal vectors."""
        return self.encode(self.decode(x))

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random arch (each variable uniform)."""
        return self.decode(rng.integers(0, self.choices))

    def _extreme(self, pick) -> Arch:
        blocks: list[Block] = []
        c_prev = None
        for st in self.stages:
            if st.fixed:
                layers = self._stage_layers(st, st.base.channels, st.base_depth, None)
            else:
                width, depth = pick(st.widths), pick(st.depths)
                layers = []
                for j in range(depth):
                    c_in = c_prev if j == 0 else width
                    stride = st.base.stride if j == 0 else 1
                    options = [Block(op, k, width, stride, e, se)
                               for (op, e), k, se in itertools.product(self.ops, self.kernels,
                                                                       self.se_ratios)]
                    layers.append(pick(options, key=lambda b: (LayerKey(b, c_in, 64, 64).macs(),
                                                               LayerKey(b, c_in, 64, 64).params())))
            blocks += layers
            c_prev = layers[-1].channels
        return Arch(tuple(blocks))

    def smallest(self) -> Arch:
        """Fewest channels, fewest layers, cheapest op/kernel/SE per layer."""
        return self._extreme(min)

    def largest(self) -> Arch:
        """Most channels, most layers, costliest op/kernel/SE per layer."""
        return self._extreme(max)

    def size(self) -> int:
        """Number of distinct archs in the space."""
        per_layer = len(self.ops) * len(self.kernels) * len(self.se_ratios)
        total = 1
        for st in self.searchable_stages:
            total *= len(st.widths) * sum(per_layer ** d for d in st.depths)
        return total

    # -- walking an arch ----------------------------------------------------------------------
    def layers(self, arch: Arch, input_size: tuple[int, int]) -> list[LayerKey]:
        """The placed blocks of `arch` for an input of `input_size` = (height, width)."""
        self.split(arch)
        h, w = input_size
        c_in, out = 3, []
        for b in arch.blocks:
            key = LayerKey(b, c_in, h, w)
            out.append(key)
            (h, w), c_in = key.out_size, b.channels
        return out

    def params(self, arch: Arch) -> int:
        """Backbone parameters (matches `sum(p.numel())` of the extracted torch module)."""
        return sum(k.params() for k in self.layers(arch, (32, 32)))

    def macs(self, arch: Arch, input_size: tuple[int, int]) -> int:
        """Backbone multiply-accumulates at `input_size` (see `LayerKey.macs`)."""
        return sum(k.macs() for k in self.layers(arch, input_size))

    def stage_strides(self) -> list[int]:
        """Output stride of each stage (the detector taps features by stride)."""
        strides, s = [], 1
        for st in self.stages:
            s *= st.base.stride
            strides.append(s)
        return strides

    def tap_stages(self, feature_strides: tuple[int, ...]) -> list[int]:
        """Index of the last stage ending at each requested stride (the detector's feature taps)."""
        strides, out = self.stage_strides(), []
        for s in feature_strides:
            found = [i for i, st in enumerate(strides) if st == s]
            if not found:
                raise ValueError(f"feature stride {s} not produced by the space {self.source} "
                                 f"(stage strides {strides})")
            out.append(found[-1])
        return out

    def tap_blocks(self, arch: Arch, feature_strides: tuple[int, ...]) -> list[int]:
        """Block indices in `arch` whose outputs are the detector's features at `feature_strides`."""
        groups, ends, n = self.split(arch), [], 0
        for g in groups:
            n += len(g)
            ends.append(n - 1)
        return [ends[i] for i in self.tap_stages(feature_strides)]

    def blocks(self, input_size: tuple[int, int]) -> list[LayerKey]:
        """Every distinct placed block any arch of the space contains at `input_size` (sorted)."""
        keys: set[LayerKey] = set()
        h, w = input_size
        prev_widths: tuple[int, ...] = (3,)
        for st in self.stages:
            if st.fixed:
                for c_in in prev_widths:
                    hh, ww, c = h, w, c_in
                    for b in self._stage_layers(st, st.base.channels, st.base_depth, None):
                        key = LayerKey(b, c, hh, ww)
                        keys.add(key)
                        (hh, ww), c = key.out_size, b.channels
            else:
                choices = list(itertools.product(range(len(self.ops)), range(len(self.kernels)),
                                                 range(len(self.se_ratios))))
                h2, w2 = LayerKey(dataclasses.replace(st.base), 1, h, w).out_size
                for width in st.widths:
                    for idx in choices:
                        first = self._stage_layers(st, width, 1, [idx])[0]
                        for c_in in prev_widths:
                            keys.add(LayerKey(first, c_in, h, w))
                        if st.max_depth > 1:
                            later = self._stage_layers(st, width, 2, [idx, idx])[1]
                            keys.add(LayerKey(later, width, h2, w2))
            h, w = LayerKey(st.base, 1, h, w).out_size
            prev_widths = st.widths
        return sorted(keys, key=lambda k: (k.height * -1, str(k)))

    def describe(self) -> str:
        """Human summary: stages, choices, size."""
        lines = [f"search space {self.source} (fingerprint {self.fingerprint()})",
                 f"  ops {list(self.config.ops)}, kernels {list(self.kernels)}, se {list(self.se_ratios)}"]
        for st, stride in zip(self.stages, self.stage_strides()):
            kind = "fixed" if st.fixed else f"widths {list(st.widths)}, depths {list(st.depths)}"
            lines.append(f"  stage {st.index}: {st.base} x{st.base_depth} (stride {stride}) {kind}")
        lines.append(f"  {self.n_var} variables, {self.size():.3e} archs")
        return "\n".join(lines)
