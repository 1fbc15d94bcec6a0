"""BatchNorm recalibration for one arch (SPOS): re-estimate the active path's running statistics.

Running stats accumulated during supernet training mix many paths, so before evaluating an arch its
BN stats are re-estimated on a few training batches:

    >>> recalibrate_bn(detector, arch, itertools.islice(train_loader, 20))  # doctest: +SKIP

`model` is any module with ``set_active(arch)`` and ``forward(images)``: the `Supernet` itself, or a
detector whose backbone is one. Only the BN layers the active path actually runs are reset (found
with forward pre-hooks at their first use), and of a sliced BN only the active channels, so the
stats of other ops and wider widths are left as they were.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from core.space import Arch


def recalibrate_bn(model: nn.Module, arch: Arch, batches: Iterable,
                   device: torch.device | str | None = None) -> int:
    """Reset and re-estimate the BN running stats of `arch`'s path; return the number of batches.

    `batches` yields image tensors, or tuples/lists whose first element is the image tensor; they
    are moved to `device` (default: the model's). Stats are the cumulative average over all batches
    (``momentum=None``); the model is left in eval mode with every BN's momentum restored.
    """
    model.set_active(arch)
    if device is None:
        device = next(model.parameters()).device
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = {m: m.momentum for m in bns}
    seen: set[nn.Module] = set()

    def reset_on_first_use(bn: _BatchNorm, inputs: tuple) -> None:
        if bn in seen:
            return
        seen.add(bn)
        c = inputs[0].shape[1]  # a sliced BN uses its first c channels
        bn.running_mean[:c].zero_()
        bn.running_var[:c].fill_(1.0)
        bn.num_batches_tracked.zero_()
        bn.momentum = None  # cumulative moving average over the batches

    handles = [m.register_forward_pre_hook(reset_on_first_use) for m in bns]
    n = 0
    try:
        model.train()
        with torch.no_grad():
            for batch in batches:
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(images.to(device))
                n += 1
    finally:
        for h in handles:
            h.remove()
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.eval()
    if n == 0:
        raise ValueError("recalibrate_bn: `batches` yielded no batch")
    return n
