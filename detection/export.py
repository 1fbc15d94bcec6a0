"""Deploy a trained detector: ONNX export, onnxruntime-vs-torch check, end-to-end latency.

    >>> export_onnx(detector, "runs/x/model.onnx", (320, 320))                 # doctest: +SKIP
    >>> check_onnx(detector, "runs/x/model.onnx", (320, 320), atol=1e-4)       # doctest: +SKIP
    3.1e-06                                              # max |onnxruntime - torch| over both outputs
    >>> measure_onnx_latency("runs/x/model.onnx", threads=1)                   # doctest: +SKIP
    {'median_ms': 4.2, 'p90_ms': 4.6, 'cv': 0.03, 'round_cv': 0.01, 'rounds_ms': [...]}

The graph is the network only (backbone + laterals + head), batch 1, float32, input ``images``
(1, 3, H, W) normalised as `detection.data.normalize`; outputs ``logits`` (1, A) and ``deltas``
(1, A, 4), ordered as ``detector.anchors((H, W))``. Anchors, decoding and NMS stay outside the graph
(`detection.postprocess`), exactly as the latency table measures the detector. Timing reuses
`latency.device_bench` (the one timing implementation): same session options, IOBinding, warm-up,
and the interleaved rounds of `latency.calibrate.measure_archs` (median of round medians).
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from supernet.io import atomic_write_bytes

INPUT_NAME, OUTPUT_NAMES = "images", ("logits", "deltas")


class OnnxMismatch(ValueError):
    """onnxruntime's outputs differ from torch's by more than the tolerance."""


def _cpu_eval_copy(detector: nn.Module) -> nn.Module:
    # export and reference run on CPU in eval mode (BN in inference form), leaving the caller's
    # model (maybe on CUDA, maybe training) untouched
    return copy.deepcopy(detector).cpu().eval()


def export_onnx(detector: nn.Module, path: str | Path, input_size: tuple[int, int],
                opset: int = 17) -> Path:
    """Write `detector` as ONNX (TorchScript exporter, `dynamo=False`) at 1x3xHxW; returns path."""
    model = _cpu_eval_copy(detector)
    dummy = torch.zeros(1, 3, *input_size)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning
        torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          do_constant_folding=True)
    atomic_write_bytes(path, buf.getvalue())
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


def measure_onnx_latency(path: str | Path, threads: int, warmup: int = 10, repeats: int = 50,
                         rounds: int = 3, provider: str = "CPUExecutionProvider",
                         clock: str = "wall") -> dict:
    """End-to-end onnxruntime latency of one model: median of `rounds` round medians (ms), p90.

    Same defaults and meaning as `latency.config.LatencyConfig` (pass its fields to compare with
    the table): the table's calibration and validation time whole subnets exactly this way.
    """
    from latency.device_bench import make_session, time_session

    if rounds < 1 or repeats < 1:
        raise ValueError(f"need rounds >= 1 and repeats >= 1, got {rounds} and {repeats}")
    session = make_session(Path(path), threads, provider)
    runs = [time_session(session, warmup, repeats, clock=clock) for _ in range(rounds)]
    med = np.array([r["median_ms"] for r in runs])
    return {"median_ms": float(np.median(med)), "p90_ms": float(np.median([r["p90_ms"] for r in runs])),
            "cv": float(np.mean([r["cv"] for r in runs])), "round_cv": float(med.std() / med.mean()),
            "rounds_ms": med.tolist(), "threads": threads, "warmup": warmup, "repeats": repeats,
            "clock": clock, "provider": provider}
