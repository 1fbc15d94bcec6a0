"""The one training loop: supernet training (FairNAS / SPOS paths) and standalone retraining.

    >>> train_one_epoch(model, loader, optimizer, scheduler, loss_fn, state, sample_paths=sampler.step)
    ...                                                            # doctest: +SKIP

`sample_paths` returns the archs to train in one optimizer step (m strict-fair paths, one uniform
path); their gradients are accumulated and one update is taken. Retraining passes None: the
model's own (single) arch. `stages.trainer.train` wraps this with checkpoints, logs and resume.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from core.space import Arch


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """The `train:` section of an experiment YAML."""

    epochs: int = 8
    sampler: str = "strict_fair"  # supernet path sampling: strict_fair (FairNAS) | uniform (SPOS)
    lr: float = 3e-3  # AdamW peak learning rate (after warm-up), cosine-decayed to 0
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 5.0  # max gradient norm per optimizer step
    seed: int = 0
    checkpoint_every: int = 20  # optimizer steps between checkpoints (also written at epoch end)
    max_steps_per_epoch: int = 0  # 0 = a full pass over the training images
    eval_images: int = 100  # val images for the per-epoch subnet evaluation (0 = none)
    eval_random_subnets: int = 1  # random subnets evaluated each epoch besides smallest/largest
    eval_every: int = 1  # epochs between those evaluations (the last epoch is always evaluated)
    bn_batches: int = 4  # training batches for BatchNorm recalibration before evaluating a subnet
    max_nonfinite: int = 3  # consecutive non-finite losses before the run stops
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a gradient scaler, for CUDA)
    channels_last: bool = False  # NHWC memory format (faster convs on recent GPUs and some CPUs)
    # supernet training (supernet.samplers.PathSchedule; fractions of all optimizer steps)
    # defaults chosen by the ablation of experiments/ranking.py (README, "Ranking correlation")
    path_batches: str = "own"  # strict_fair: "own" = each of the m paths on its own batch with its
    #                             own update; "shared" = the m paths on one batch, one update
    warm_fraction: float = 0.2  # largest path only (warm start, OFA)
    shrink_fraction: float = 0.3  # progressive shrinking: kernel, depth, width, then op/SE elastic
    sandwich: bool = False  # largest + smallest + 2 sampled paths per batch (BigNAS)
    distill: float = 0.0  # weight of in-place distillation from the largest path (with sandwich)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {sorted(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.sampler not in ("strict_fair", "uniform"):
            raise ValueError(f"train.sampler must be strict_fair or uniform, got {self.sampler!r}")
        if self.path_batches not in ("shared", "own"):
            raise ValueError(f"train.path_batches must be shared or own, got {self.path_batches!r}")
        if not (0 <= self.warm_fraction and 0 <= self.shrink_fraction
                and self.warm_fraction + self.shrink_fraction <= 1):
            raise ValueError("train.warm_fraction and train.shrink_fraction must be >= 0 with a sum <= 1")
        if self.distill < 0 or (self.distill > 0 and not self.sandwich):
            raise ValueError("train.distill must be >= 0 and needs train.sandwich: true (the largest "
                             "path of each batch is the teacher)")
        if self.epochs < 1 or self.checkpoint_every < 1 or self.eval_every < 1:
            raise ValueError(f"train.epochs, train.checkpoint_every and train.eval_every must be "
                             f">= 1, got {self.epochs}, {self.checkpoint_every} and {self.eval_every}")


@dataclass
class TrainState:
    """Where the run is: enough, with the checkpointed objects, to resume exactly."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches consumed in the current epoch
    nonfinite: int = 0  # consecutive non-finite steps
    log: list[dict] = field(default_factory=list)


class NonFiniteLoss(RuntimeError):
    pass


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # no weight decay on BN and biases (1-d parameters), as is usual for MobileNet-style nets
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warm-up then cosine decay to 0, stepped once per optimizer step."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model: nn.Module, loss_fn: nn.Module, images: torch.Tensor, targets: list,
               paths: list[Arch | None], optimizer, scheduler, cfg: TrainConfig,
               sync: Callable[[nn.Module, bool], bool] | None = None,
               scaler: torch.amp.GradScaler | None = None) -> dict | None:
    """One optimizer step over `paths` (gradients accumulated); None if the loss was not finite.

    Mixed precision (`cfg.precision`): the forward runs under autocast, the loss in float32; with
    fp16 `scaler` scales the loss and skips steps whose gradients overflowed (normal early on).

    `sync(model, bad) -> any_bad` (multi-process training) averages the gradients across ranks and
    tells whether any rank saw a non-finite loss, so all ranks skip or step together.
    """
    optimizer.zero_grad(set_to_none=True)
    anchors = model.anchors(tuple(images.shape[-2:]))
    totals = {"loss": 0.0, "cls": 0.0, "box": 0.0, "num_pos": 0.0}
    bad = False
    teacher = None
    for i, arch in enumerate(paths):
        if arch is not None:
            model.set_active(arch)
        dtype = PRECISIONS[cfg.precision]
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            cls, box = model(images)
        out = loss_fn(cls.float(), box.float(), anchors, targets,
                      teacher=teacher if i > 0 else None, distill=cfg.distill)
        if i == 0 and cfg.distill > 0:  # sandwich: the largest path comes first and teaches
            teacher = (cls.detach().float(), box.detach().float())
        if not torch.isfinite(out["loss"]):
            bad = True
            break
        loss = out["loss"] / len(paths)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        for k in totals:
            totals[k] += float(out[k].detach()) / len(paths)
    if sync is not None:
        bad = sync(model, bad)
    if bad:
        optimizer.zero_grad(set_to_none=True)
        return None
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)  # skipped by the scaler itself if the gradients overflowed
        scaler.update()
    elif not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return None
    else:
        optimizer.step()
    scheduler.step()
    totals["grad_norm"] = float(grad_norm)
    return totals


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer, scheduler, loss_fn: nn.Module,
                    state: TrainState, cfg: TrainConfig, *,
                    sample_paths: Callable[[], list[Arch]] | None = None,
                    max_steps: int | None = None,
                    on_step: Callable[[TrainState, dict], None] | None = None,
                    sync: Callable[[nn.Module, bool], bool] | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """Train over `loader` (already positioned at `state.batch`), updating `state` in place.

    `on_step(state, row)` runs after every optimizer step (checkpointing, progress). A non-finite
    loss skips the step with a warning; `cfg.max_nonfinite` in a row raises `NonFiniteLoss`.
    """
    device = next(model.parameters()).device
    model.train()
    for images, targets in loader:
        if max_steps is not None and state.batch >= max_steps:
            break
        state.batch += 1
        if images.shape[0] == 0:  # every image of the batch was unreadable
            continue
        t0 = time.perf_counter()
        images = images.to(device, non_blocking=True,
                           memory_format=torch.channels_last if cfg.channels_last
                           else torch.contiguous_format)
        targets = [t.to(device) for t in targets]
        paths = sample_paths() if sample_paths is not None else [None]
        row = train_step(model, loss_fn, images, targets, paths, optimizer, scheduler, cfg, sync,
                         scaler)
        if row is None:
            state.nonfinite += 1
            warnings.warn(f"step {state.step}: non-finite loss, step skipped "
                          f"({state.nonfinite} in a row)", RuntimeWarning, stacklevel=2)
            if state.nonfinite >= cfg.max_nonfinite:
                raise NonFiniteLoss(
                    f"{state.nonfinite} non-finite losses in a row at step {state.step}: the "
                    f"learning rate (train.lr = {cfg.lr}) is probably too high; lower it with "
                    f"--set train.lr=... and --resume from the last good checkpoint")
            continue
        state.nonfinite = 0
        seconds = time.perf_counter() - t0
        row.update(step=state.step, epoch=state.epoch, lr=scheduler.get_last_lr()[0],
                   paths=len(paths), seconds=seconds,
                   images_per_s_per_path=images.shape[0] * len(paths) / seconds)
        state.step += 1
        state.log.append(row)
        if on_step is not None:
            on_step(state, row)
