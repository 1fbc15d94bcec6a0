"""Torch side of the latency table: a module per entry and the small ONNX models of a build.

    >>> entries = build_entries(space, cfg)                                       # doctest: +SKIP
    >>> onnx_bytes = export_entry(entries[0], cfg)                                # doctest: +SKIP

The whole network that the sum of an arch's entries stands for is `detection.model.build_detector`
(what gets trained and deployed); calibration and validation export and time exactly that.
"""

from __future__ import annotations

import torch
from torch import nn

from detection.config import DetectorConfig
from detection.neck import FPNHead
from latency.export import onnx_bytes
from latency.keys import Entry, in_context
from supernet.blocks import ConvBNAct, build_block
from core.space import Block, LayerKey


class _Head(nn.Module):
    """FPNHead taking its levels as separate inputs (ONNX wants positional tensors, not a list)."""

    def __init__(self, head: FPNHead):
        super().__init__()
        self.head = head

    def forward(self, *feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(list(feats))


def build_module(entry: Entry, cfg: DetectorConfig) -> nn.Module:
    """Random-weight torch module of one entry (weights do not change latency)."""
    if entry.kind == "block":
        block = Block(entry.op, entry.kernel, entry.c_out, entry.stride, entry.expand, entry.se)
        return build_block(LayerKey(block, entry.c_in, entry.height, entry.width))
    if entry.kind == "lateral":
        return ConvBNAct(entry.c_in, entry.c_out, 1)
    if entry.kind == "head":
        return _Head(FPNHead(entry.c_in, len(entry.inputs), cfg.n_anchors))
    raise ValueError(f"unknown entry kind {entry.kind!r} for {entry.key}")


class _InContext(nn.Module):
    """`inner` (or nothing) after a depthwise 1x1 conv per input: the producer an entry in context
    is timed after (`latency.keys`: the input arrives from a conv, in the layout the runtime picks,
    as inside the network; a depthwise 1x1 is the cheapest conv that does it)."""

    def __init__(self, inputs: tuple[tuple[int, ...], ...], inner: nn.Module | None = None):
        super().__init__()
        self.pre = nn.ModuleList(nn.Conv2d(s[1], s[1], 1, groups=s[1], bias=False) for s in inputs)
        self.inner = inner

    def forward(self, *xs: torch.Tensor):
        ys = [pre(x) for pre, x in zip(self.pre, xs)]
        if self.inner is not None:
            return self.inner(*ys)
        return tuple(ys) if len(ys) > 1 else ys[0]


def reorder_onnx(channels: int, height: int, width: int) -> bytes:
    """NCHW -> NCHWc -> NCHW of one tensor with onnxruntime's own layout ops (x86 MLAS builds):
    what a block timed alone pays at each boundary and the whole network does not."""
    from onnx import TensorProto, helper

    domain = "com.microsoft.nchwc"
    nodes = [helper.make_node("ReorderInput", ["x0"], ["t"], domain=domain),
             helper.make_node("ReorderOutput", ["t"], ["y"], domain=domain, channels=channels)]
    shape = [1, channels, height, width]
    graph = helper.make_graph(nodes, "reorder",
                              [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(domain, 1)])
    return model.SerializeToString()


def reference_onnx(channels: int = 32, size: int = 24, seed: int = 0) -> bytes:
    """The reference workload re-timed every round (`latency.robust`): a fixed 3x3 conv + ReLU,
    ~5 M MACs, a fraction of a millisecond; any change here changes every table's drift baseline."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(
        (rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x0", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "reference",
                              [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def empty_onnx() -> bytes:
    """A ReLU on 64 floats: timing it is timing onnxruntime's fixed cost of one call (~4 us here),
    which every entry timed alone pays once and a whole network pays once in all (`LatencyTable`
    subtracts it from each entry and adds it back once per arch)."""
    from onnx import TensorProto, helper

    shape = [1, 4, 4, 4]
    graph = helper.make_graph([helper.make_node("Relu", ["x0"], ["y"])], "empty",
                              [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def export_entry(entry: Entry, cfg: DetectorConfig, opset: int = 17, context: bool = False) -> bytes:
    """The ONNX model timed for one table entry; `context`: a table timed in context, where every
    entry that does not take the image runs after its context (`latency.keys`)."""
    if entry.kind == "reorder":
        return reorder_onnx(entry.c_in, entry.height, entry.width)
    if entry.kind == "context":
        return onnx_bytes(_InContext(entry.inputs), entry.inputs, opset)
    module = build_module(entry, cfg)
    if in_context(entry, cfg, context):
        module = _InContext(entry.inputs, module)
    return onnx_bytes(module, entry.inputs, opset)
