"""The one ONNX export of facenas: table entries, whole subnets and deployed detectors.

    >>> onnx_bytes(block, ((1, 16, 40, 40),))                                  # doctest: +SKIP
    >>> export_onnx(detector, "runs/x/model.onnx", (320, 320))                 # doctest: +SKIP
    >>> check_onnx(detector, "runs/x/model.onnx", (320, 320), atol=1e-4)       # doctest: +SKIP
    3.1e-06                                              # max |onnxruntime - torch| over both outputs

The graph is the network only (backbone + laterals + head), batch 1, float32, input ``images``
(1, 3, H, W) normalised as `detection.data.normalize`; outputs ``logits`` (1, A) and ``deltas``
(1, A, 4), ordered as ``detector.anchors((H, W))``. Anchors, decoding and NMS stay outside the graph
(`detection.postprocess`), exactly as the latency table measures the detector (whose entries and
calibration subnets are exported by the same `onnx_bytes`). Timing is `latency.timing.time_models`.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.io import atomic_write_bytes

INPUT_NAME, OUTPUT_NAMES = "images", ("logits", "deltas")


class OnnxMismatch(ValueError):
    """onnxruntime's outputs differ from torch's by more than the tolerance."""


def _cpu_eval_copy(detector: nn.Module) -> nn.Module:
    # export and reference run on CPU in eval mode (BN in inference form), leaving the caller's
    # model (maybe on CUDA, maybe training) untouched
    return copy.deepcopy(detector).cpu().eval()


def onnx_bytes(module: nn.Module, input_shapes: tuple[tuple[int, ...], ...], opset: int = 17,
               input_names: list[str] | None = None, output_names: list[str] | None = None) -> bytes:
    """Serialized ONNX of `module` (a CPU eval-mode copy: BN in inference form) at fixed input
    shapes. The TorchScript exporter (`dynamo=False`): ~0.05 s per block, no onnxscript needed.
    Inputs are named x0, x1, ... unless `input_names` are given."""
    model = _cpu_eval_copy(module)
    args = tuple(torch.zeros(*shape) for shape in input_shapes)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning, once per model
        torch.onnx.export(model, args, buf, dynamo=False, opset_version=opset,
                          input_names=input_names or [f"x{i}" for i in range(len(args))],
                          output_names=output_names, do_constant_folding=True)
    return buf.getvalue()


def export_onnx(detector: nn.Module, path: str | Path, input_size: tuple[int, int],
                opset: int = 17) -> Path:
    """Write `detector` as ONNX at 1x3xHxW with the deployed input/output names; returns path."""
    atomic_write_bytes(path, onnx_bytes(detector, ((1, 3, *input_size),), opset,
                                        [INPUT_NAME], list(OUTPUT_NAMES)))
    return Path(path)


def check_onnx(detector: nn.Module, path: str | Path, input_size: tuple[int, int],
               atol: float = 1e-4, inputs: torch.Tensor | None = None, n_random: int = 2,
               seed: int = 0) -> float:
    """Max |onnxruntime - torch| over logits and deltas; `OnnxMismatch` (with the numbers) if > atol.

    Compared on `inputs` (N, 3, H, W), e.g. real normalised images, one at a time, plus `n_random`
    standard-normal images. onnxruntime runs with all graph optimisations (Conv+BN fusion), as timed.
    """
    from latency.device_bench import make_session

    model = _cpu_eval_copy(detector)
    session = make_session(Path(path), threads=1)
    gen = torch.Generator().manual_seed(seed)
    batches = [] if inputs is None else list(inputs.detach().cpu().float())
    batches += [torch.randn(3, *input_size, generator=gen) for _ in range(n_random)]
    if not batches:
        raise ValueError("check_onnx needs inputs or n_random > 0")
    worst = {name: 0.0 for name in OUTPUT_NAMES}
    with torch.no_grad():
        for image in batches:
            x = image[None]
            if tuple(x.shape[-2:]) != tuple(input_size):
                raise ValueError(f"check input is {tuple(x.shape[-2:])}, the model was exported "
                                 f"at {tuple(input_size)}")
            ref = [t.numpy() for t in model(x)]
            got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
            for name, r, g in zip(OUTPUT_NAMES, ref, got):
                if r.shape != g.shape:
                    raise OnnxMismatch(f"{path}: {name} shape {g.shape} != torch {r.shape}")
                worst[name] = max(worst[name], float(np.max(np.abs(r - g))))
    diff = max(worst.values())
    if not diff <= atol:  # also catches NaN
        raise OnnxMismatch(f"{path}: onnxruntime differs from torch by up to {diff:.3g} "
                           f"(logits {worst['logits']:.3g}, deltas {worst['deltas']:.3g}) > atol "
                           f"{atol:g} over {len(batches)} inputs")
    return diff
