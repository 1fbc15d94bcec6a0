"""Multi-process training and evaluation with torch.distributed (torchrun; NCCL on CUDA, gloo on CPU).

    torchrun --nproc_per_node 4 train_supernet.py --config experiments/default.yaml
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        train_supernet.py ...

How the supernet is trained across ranks:

* **Same paths everywhere.** Every rank builds the path sampler with the same seed and draws the
  same m paths per step (checked once per epoch by `check_same`), so strict fairness and the
  per-choice counts are exactly those of a single process.
* **Different data.** Each rank takes its share of the same epoch permutation
  (`detection.data.SeededSampler`); the global batch is `batch_size x world_size`.
* **Gradients.** Each rank accumulates the gradients of the m paths locally, then one averaging
  all-reduce over every parameter that has a gradient (`all_reduce_gradients`), then the same
  optimizer step everywhere, so weights stay identical (tested bitwise on 2 gloo processes).
  Why not `DistributedDataParallel`: DDP reduces in backward hooks of the *current* backward pass;
  with m different single paths accumulated under `no_sync`, the parameters used only by earlier
  paths are never reduced by the last pass (or are reduced as zeros with find_unused_parameters).
  One explicit all-reduce after the m passes is exact and costs one bucketed collective per step;
  BatchNorm buffers are then broadcast from rank 0 (DDP's ``broadcast_buffers`` behaviour).
  Standalone retraining uses the same path (m = 1), which is what DDP would do.
* **Rank 0** logs, evaluates and writes checkpoints; the others wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op in a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank on its own GPU (LOCAL_RANK); CPU ranks share the CPU device."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.enabled else device


def broadcast_parameters(model: nn.Module) -> None:
    """Start every rank from rank 0's weights and buffers."""
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def all_reduce_gradients(model: nn.Module, world_size: int) -> None:
    """Average the gradients of all parameters that have one, in one flat bucket per dtype."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def check_same(value: str, info: DistInfo, what: str) -> None:
    """Raise if ranks disagree on `value` (e.g. the sampler state): fairness depends on it."""
    if not info.enabled:
        return
    values: list[str | None] = [None] * info.world_size
    dist.all_gather_object(values, value)
    if len(set(values)) != 1:
        raise RuntimeError(f"ranks disagree on {what}: the paths would differ across ranks")


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_shards(items: list, info: DistInfo, fn) -> list:
    """`fn` on this rank's share (items[rank::world]); every rank gets all results in item order."""
    if not info.enabled:
        return fn(items)
    mine = fn(items[info.rank::info.world_size])
    shards: list[list | None] = [None] * info.world_size
    dist.all_gather_object(shards, mine)
    out = [None] * len(items)
    for r, shard in enumerate(shards):
        out[r::info.world_size] = shard
    return out


def make_sync(info: DistInfo):
    """The `sync` hook of `detection.loop.train_step` for this process group (None if single)."""
    if not info.enabled:
        return None

    def sync(model: nn.Module, bad: bool) -> bool:
        device = next(model.parameters()).device
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # any rank non-finite: all skip the step
        if flag.item() > 0:
            return True
        all_reduce_gradients(model, info.world_size)
        for buf in model.buffers():  # BN statistics: rank 0's, as DDP's broadcast_buffers does
            dist.broadcast(buf, src=0)
        return False

    return sync
