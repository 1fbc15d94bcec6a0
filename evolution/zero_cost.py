"""Zero-cost proxies: score an untrained network without data, as a baseline ranker.

SynFlow (Tanaka et al., 2020, "Pruning neural networks without any data by iteratively conserving
synaptic flow"): replace every parameter by its absolute value, feed an all-ones input, take
R = the sum of all outputs, and sum |theta * dR/dtheta| over the parameters. With non-negative
weights and input the ReLU network is a positive multilinear map, so R grows with the number and
the magnitude of paths through it: a data-free measure of capacity.

    >>> model = build_detector(space, arch, det_cfg)              # doctest: +SKIP
    >>> synflow(model, det_cfg.input_size)                        # doctest: +SKIP
    3.1e+21

Computed in float64 (products over ~20 layers overflow float32 for wide nets), with BatchNorm in
eval mode (running statistics, not the batch of identical ones inputs) on a copy of the model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def synflow(model: nn.Module, input_size: tuple[int, int]) -> float:
    """SynFlow score of `model` (any module returning a tensor or a tuple of tensors) at a
    1x3xHxW all-ones input; the model itself is left unchanged."""
    net = copy.deepcopy(model).to("cpu", torch.float64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    for p in net.parameters():
        p.grad = None
    outputs = net(torch.ones(1, 3, *input_size, dtype=torch.float64))
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    sum(o.sum() for o in outputs).backward()
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))
