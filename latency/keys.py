"""Table keys (torch-free): the entries a latency table holds and the keys an arch sums over.

Every entry is one small ONNX model with fixed input shapes. Keys (the table's `key` column):

==========================================  ================================================
``E6K5C24S2SE@16x160x160``                  a block (`str(LayerKey)`: c_in x height x width)
``lateral:K1C64@96x20x20``                  1x1 ConvBNAct 96 -> neck channels at a tap
``head:C64A2@40x40,20x20,10x10``            FPN merge + smoothing + class/box convs (one entry)
``context:16x160x160``                      the producer every entry of that input is timed after
``reorder:C24@160x160``                     NCHW <-> NCHWc layout reorder pair (isolated tables)
==========================================  ================================================

A block timed alone is not the block inside the network. On x86 onnxruntime's ORT_ENABLE_ALL
runs convs in the blocked NCHWc layout and converts at the *graph* boundary, so a block alone pays
a reorder on its input and output that the network does not, and what it pays depends on rules
inside onnxruntime (measured with the optimized graphs, tiny config: an inverted residual on 8
channels takes its input in NCHW and so has no input reorder; a residual block alone reorders its
conv output back to NCHW and adds the shortcut there, while in the network the add is fused into
the conv). Two ways to account for that:

* **In context** (`latency.context: true`, the default). Every entry that does not take the image
  is timed after a depthwise 1x1 conv producing each of its inputs (``context:`` entry), and the
  context alone is timed too; an arch sums ``entry - context`` per entry. That difference is the
  entry as the network runs it: its input arrives from a conv, in whatever layout onnxruntime
  picks, so the input reorder, the fused shortcut and any other graph rewrite at the input are
  exactly the network's. It still reorders its output, which the next entry's difference takes
  off again: along the chain the boundary terms telescope, and no layout rule is hand-coded (on a
  build without NCHWc there is simply nothing to cancel). Left out: a tap tensor feeds two entries
  (the next stage and the lateral), so one output reorder at each of the 3 taps is taken off twice
  (<1 us each on the tiny config; the affine calibration absorbs it). Measured (tiny config,
  50 archs, 20 calibrate / 30 score, four tables against four end-to-end timings, 2026-12-05;
  docs/latency_context): calibrated MAPE 0.85-1.36% in context against 2.26-2.39% isolated, all
  30 within +-5% against 90-97%; two builds of one kind agree within 0.3-0.5%. At 320x320
  (default config) both kinds score 0.8-1.4%, the noise of the end-to-end timings themselves.
* **Isolated** (`latency.context: false`, tables built before it). Every entry alone, and raw
  latency = sum(entries) - 1/2 reorder-pair time at each endpoint of an internal edge
  (`arch_terms`), where channels % 4 == 0 is taken to mean NCHWc: without it cheap
  high-resolution archs were over-predicted by ~30% (smallest arch at 320x320, 1.88 ms summed vs
  1.45 ms end to end); with it the remaining error is the rule's misses above. Where NCHWc is not
  used the reorder entries time as 0 (model fails to load) and nothing is subtracted.

    >>> entries = build_entries(space, DetectorConfig(input_size=(64, 64)))   # doctest: +SKIP
    >>> arch_keys(space, space.baseline, cfg)[-1]                             # doctest: +SKIP
    'head:C64A2@8x8,4x4,2x2'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from detection.config import DetectorConfig
from core.space import Arch, LayerKey, SearchSpace

COLUMNS = ("key", "kind", "op", "kernel", "c_in", "c_out", "stride", "expand", "se", "height",
           "width")


@dataclass(frozen=True)
class Entry:
    """One row of the table before timing; `inputs` are the NCHW input shapes of its ONNX model."""

    key: str
    kind: str  # "block", "lateral", "head", "context" or "reorder"
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

    def boundaries(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) of the tensors this entry shares with neighbours in the network
        (block/lateral input and output, head inputs), where NCHWc applies (channels % 4 == 0)."""
        if self.kind == "head":
            shapes = [s[1:] for s in self.inputs]
        elif self.kind in ("block", "lateral"):
            h, w = (self.height - 1) // self.stride + 1, (self.width - 1) // self.stride + 1
            shapes = [(self.c_in, self.height, self.width), (self.c_out, h, w)]
        else:
            shapes = []
        return [tuple(s) for s in shapes if s[0] % 4 == 0]

    def row(self) -> dict:
        """The descriptive columns (everything but the input shapes)."""
        d = asdict(self)
        del d["inputs"]
        return d


def lateral_key(c_in: int, channels: int, size: tuple[int, int]) -> str:
    return f"lateral:K1C{channels}@{c_in}x{size[0]}x{size[1]}"


def reorder_key(channels: int, height: int, width: int) -> str:
    return f"reorder:C{channels}@{height}x{width}"


def context_key(inputs: tuple[tuple[int, ...], ...]) -> str:
    """Key of the context (a depthwise 1x1 conv per input) of an entry with these input shapes."""
    return "context:" + "+".join("x".join(map(str, s[1:])) for s in inputs)


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


def reorder_entry(channels: int, height: int, width: int) -> Entry:
    return Entry(reorder_key(channels, height, width), "reorder", "reorder", 1, channels, channels,
                 1, 1, 0.0, height, width, ((1, channels, height, width),))


def context_entry(inputs: tuple[tuple[int, ...], ...]) -> Entry:
    _, c, h, w = inputs[0]
    return Entry(context_key(inputs), "context", "context", 1, c, c, 1, 1, 0.0, h, w, tuple(inputs))


def takes_image(entry: Entry, cfg: DetectorConfig) -> bool:
    """The stem: its input is the network's own input, so it is timed without a context."""
    return entry.inputs == ((1, 3, *cfg.input_size),)


def in_context(entry: Entry, cfg: DetectorConfig, context: bool) -> bool:
    """Whether `entry` is timed after its context (module docstring)."""
    return context and entry.kind in ("block", "lateral", "head") and not takes_image(entry, cfg)


def build_entries(space: SearchSpace, cfg: DetectorConfig, context: bool = False) -> list[Entry]:
    """Every entry the table needs: `space.blocks`, laterals per tap width, the head, then a
    context per input shape (`context`), else a layout reorder per tensor shape those share with
    their neighbours."""
    entries = [block_entry(k) for k in space.blocks(tuple(cfg.input_size))]
    sizes = tap_sizes(space, cfg)
    for stage, size in zip(space.tap_stages(cfg.feature_strides), sizes):
        entries += [lateral_entry(c, cfg.neck_channels, size) for c in space.stages[stage].widths]
    entries.append(head_entry(cfg, sizes))
    if context:
        inputs = dict.fromkeys(e.inputs for e in entries if in_context(e, cfg, context))
        return entries + [context_entry(i) for i in inputs]
    shapes = sorted({s for e in entries for s in e.boundaries()}, key=lambda s: (-s[1], s))
    return entries + [reorder_entry(*s) for s in shapes]


def arch_entries(space: SearchSpace, arch: Arch, cfg: DetectorConfig) -> list[Entry]:
    """The block, lateral and head entries `arch`'s detector is made of, in network order."""
    out = [block_entry(k) for k in space.layers(arch, tuple(cfg.input_size))]
    groups, sizes = space.split(arch), tap_sizes(space, cfg)
    for stage, size in zip(space.tap_stages(cfg.feature_strides), sizes):
        out.append(lateral_entry(groups[stage][-1].channels, cfg.neck_channels, size))
    out.append(head_entry(cfg, sizes))
    return out


def arch_keys(space: SearchSpace, arch: Arch, cfg: DetectorConfig) -> list[str]:
    """Keys of the blocks, laterals and head of `arch` (without the reorder corrections)."""
    return [e.key for e in arch_entries(space, arch, cfg)]


def arch_term_entries(space: SearchSpace, arch: Arch, cfg: DetectorConfig,
                      context: bool = False) -> list[tuple[Entry, float]]:
    """(entry, weight) pairs: raw latency = sum(weight * median). Weight 1 for every block, lateral
    and head entry; in context, -1 for the context of each entry timed after one, else -1/2 for
    the reorder at each of their boundaries (see the module docstring)."""
    terms = []
    for e in arch_entries(space, arch, cfg):
        terms.append((e, 1.0))
        if context:
            if in_context(e, cfg, context):
                terms.append((context_entry(e.inputs), -1.0))
        else:
            terms += [(reorder_entry(*s), -0.5) for s in e.boundaries()]
    return terms


def arch_terms(space: SearchSpace, arch: Arch, cfg: DetectorConfig,
               context: bool = False) -> list[tuple[str, float]]:
    """(key, weight) pairs of `arch_term_entries`."""
    return [(e.key, w) for e, w in arch_term_entries(space, arch, cfg, context)]
