"""A training run on disk: run folder, checkpoints, logs, per-epoch subnet evaluation, resume.

Used by `train_supernet.py` (arch=None: the supernet, paths from the configured sampler) and by
`retrain.py` (one arch, standalone); both go through `detection.loop.train_one_epoch`.

Run folder::

    runs/<name>/config.yaml   resolved experiment (space inlined), written first
    runs/<name>/supernet.pt   (or model.pt) latest checkpoint, written atomically every N steps
    runs/<name>/log.csv       one row per optimizer step: loss, lr, images/s ...
    runs/<name>/evals.csv     per epoch: AP of the evaluated subnets (BN recalibrated)

Checkpoints hold the model, optimizer, schedule, sampler and RNG states, the position in the
epoch, the arch (if standalone), the space fingerprint and the resolved config, so `--resume`
continues exactly and `retrain.py` needs nothing else. They load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from detection.config import DetectorConfig
from detection.data import DataConfig, build_loader, check_readable
from detection.distributed import (barrier, broadcast_parameters, check_same, gather_shards,
                                   init_distributed, local_device, make_sync)
from detection.loop import TrainConfig, TrainState, build_optimizer, build_scheduler, train_one_epoch
from detection.scoring import SubnetScorer
from detection.loss import DetectionLoss
from detection.model import build_detector, build_supernet_detector
from supernet.net import SupernetConfig
from core.config import load_yaml
from core.device import flush_denormals, select_device
from core.experiment import Experiment
from core.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from core.io import atomic_write_csv, atomic_write_text
from core.lock import LOCK_NAME, Lock, LockError, hold_lock
from supernet.samplers import PathSchedule, StrictFairSampler, UniformSampler
from core.space import Arch

SAMPLERS = {"strict_fair": StrictFairSampler, "uniform": UniformSampler}


class RunDirError(RuntimeError):
    pass


RESUME_MAY_CHANGE = ("train.lr",)  # lowered to --resume after non-finite losses


def _config_diff(saved: dict, resolved: dict) -> list[str]:
    """Keys (``section.key`` inside sections) whose values differ between two resolved configs."""
    diff = []
    for key in sorted(set(saved) | set(resolved)):
        a, b = saved.get(key), resolved.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diff.append(key)
    return diff


def prepare_run_dir(out: Path, resolved: dict, checkpoint_name: str, resume: bool,
                    overwrite: bool) -> None:
    """Refuse to mix runs: an existing run needs --resume (same config; only train.lr may change)
    or --overwrite."""
    config_path = out / "config.yaml"
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()) and not overwrite:
        if not resume:
            raise RunDirError(f"{out} already holds a run; pass --resume to continue it or "
                              f"--overwrite to replace it (or choose another --out)")
        if config_path.exists():
            saved = load_yaml(config_path)  # errors name the file
            # later stages' sections (search, latency, retrain) do not change a training run
            diff = [k for k in _config_diff(saved, resolved) if k not in RESUME_MAY_CHANGE
                    and k.split(".")[0] not in ("search", "latency", "retrain")]
            if diff:
                raise RunDirError(f"{out}: --resume with a different config (differs: "
                                  f"{', '.join(diff)}); use the same --config/--set or --overwrite")
    elif overwrite and out.exists():
        for name in (checkpoint_name, "log.csv", "evals.csv", "config.yaml"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, yaml.safe_dump(resolved, sort_keys=False))


def _rescale_lr(optimizer, scheduler, lr: float) -> None:
    """Resumed with another train.lr: the same schedule, scaled to the new peak `lr`."""
    if all(base == lr for base in scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = lr, lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _write_logs(out: Path, log: list[dict], evals: list[dict]) -> None:
    """log.csv and evals.csv: derived from the checkpoint, rewritten after it."""
    atomic_write_csv(pd.DataFrame(log), out / "log.csv")
    if evals:
        atomic_write_csv(pd.DataFrame(evals), out / "evals.csv")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": json.dumps(np.random.get_state()[1].tolist()),
            "numpy_pos": int(np.random.get_state()[2]), "python": json.dumps(random.getstate()[1])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(json.loads(state["numpy"]), dtype=np.uint32),
                         state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(json.loads(state["python"])), None))


def _eval_subnets(exp: Experiment, cfg: TrainConfig, epoch: int) -> list[tuple[str, Arch]]:
    space = exp.space
    rng = np.random.default_rng([cfg.seed, 7, epoch])
    archs = [("smallest", space.smallest()), ("largest", space.largest()), ("baseline", space.baseline)]
    archs += [(f"random{i}", space.sample(rng)) for i in range(cfg.eval_random_subnets)]
    return archs


def evaluate_subnets(scorer: SubnetScorer, archs: list[tuple[str, Arch]]) -> list[dict]:
    """Official Easy/Medium/Hard AP of each arch (`SubnetScorer`); BN buffers are restored."""
    rows = []
    with scorer.keeping_bn():
        for label, arch in archs:
            ap = scorer.score(arch)
            rows.append({"subnet": label, "arch": str(arch),
                         **{k: ap[f"ap_{k}"] for k in ("easy", "medium", "hard")}})
    return rows


def train(exp: Experiment, out: Path, *, lock: Lock | None = None, **kwargs) -> dict:
    """`_train` holding the run folder's lock: a second writer of `out` is refused naming this
    process. `lock`: the caller's lock of `out`, still held when this returns (retraining keeps
    it through scoring and export); by default one released on return."""
    own = hold_lock(out) if lock is None else None
    try:
        return _train(exp, Path(out), lock=lock or own, **kwargs)
    finally:
        if own is not None:
            own.release()


def _train(exp: Experiment, out: Path, *, lock: Lock, arch: Arch | None = None,
           resume: bool = False, overwrite: bool = False, init: dict | None = None,
           progress: bool = True) -> dict:
    """Train the supernet (arch None) or one standalone arch; returns a summary dict.

    `init`: a checkpoint dict of a supernet to inherit weights from (retraining `--init supernet`).
    """
    out = Path(out)
    cfg = exp.section("train", TrainConfig)
    det_cfg = exp.section("detector", DetectorConfig)
    data_cfg = exp.section("data", DataConfig)
    resolved = exp.resolved()
    if arch is not None:
        resolved["arch"] = str(arch)
    ckpt_name = "supernet.pt" if arch is None else "model.pt"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    flush_denormals()
    device = select_device(cfg.device)
    info = init_distributed(device)
    device = local_device(device, info)
    error = None
    if info.is_main:  # one rank owns the folder; the others learn whether it was accepted
        try:
            lock.acquire()
            prepare_run_dir(out, resolved, ckpt_name, resume, overwrite)
        except (RunDirError, LockError) as err:
            error = str(err)
    error = gather_shards([error] * info.world_size, info, lambda mine: mine)[0]
    if error is not None:
        raise RunDirError(error)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    space = exp.space
    if arch is None:
        model = build_supernet_detector(space, det_cfg, exp.section("supernet", SupernetConfig).sharing)
        sampler = SAMPLERS[cfg.sampler](space, cfg.seed)
    else:
        sampler, sample_paths = None, None
        if init is None:
            model = build_detector(space, arch, det_cfg)
        else:  # inherit the supernet's weights for this arch
            sup = build_supernet_detector(space, det_cfg, exp.section("supernet", SupernetConfig).sharing)
            sup.load_state_dict(init["model"])
            model = sup.extract(arch)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
    loss_fn = DetectionLoss(det_cfg)

    loader = build_loader(data_cfg, "train", train=True, seed=cfg.seed, rank=info.rank,
                          world_size=info.world_size)
    check_readable(loader.dataset)  # all images unreadable: stop rather than train 0 steps
    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader),
                                                                          cfg.max_steps_per_epoch)
    total = steps_per_epoch * cfg.epochs
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total)
    if sampler is not None:
        schedule = PathSchedule(sampler, total, cfg.warm_fraction, cfg.shrink_fraction,
                                cfg.sandwich, own_batches=cfg.path_batches == "own")

        def sample_paths() -> list[Arch]:
            return schedule.paths(state.step)
    state = TrainState()
    evals: list[dict] = []

    ckpt_path = out / ckpt_name
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, kind="supernet" if arch is None else "standalone",
                             space=space)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _rescale_lr(optimizer, scheduler, cfg.lr)
        if sampler is not None:
            sampler.load_state_dict(json.loads(ck["sampler"]))
        state = TrainState(**{k: ck["state"][k] for k in ("step", "epoch", "batch")},
                           log=json.loads(ck["log"]))
        evals = json.loads(ck["evals"])
        _set_rng_state(ck["rng"])
        if info.is_main:  # a kill between the checkpoint and the log writes left the logs behind it
            _write_logs(out, state.log, evals)
    if info.enabled:
        broadcast_parameters(model)

    def save() -> None:
        if not info.is_main:
            return
        save_checkpoint(make_checkpoint(
            "supernet" if arch is None else "standalone", space, resolved, model.state_dict(),
            arch=str(arch) if arch is not None else "",
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if scaler is not None else {},
            sampler=json.dumps(sampler.state_dict()) if sampler is not None else "",
            state={"step": state.step, "epoch": state.epoch, "batch": state.batch},
            log=json.dumps(state.log), evals=json.dumps(evals), rng=_rng_state()), ckpt_path)
        _write_logs(out, state.log, evals)

    scorer = None
    if cfg.eval_images > 0 and info.is_main:
        scorer = SubnetScorer.build(model, data_cfg, det_cfg, cfg.eval_images, cfg.bn_batches,
                                    data_cfg.batch_size)

    bar = tqdm(total=total, initial=state.step, desc=f"train {exp.name}", unit="step",
               disable=not (progress and info.is_main), dynamic_ncols=True)

    def on_step(st: TrainState, row: dict) -> None:
        bar.update(1)
        bar.set_postfix(epoch=st.epoch, loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}")
        if st.step % cfg.checkpoint_every == 0:
            save()

    try:
        while state.epoch < cfg.epochs:
            loader.sampler.epoch = state.epoch
            loader.sampler.start = state.batch * data_cfg.batch_size
            train_one_epoch(model, loader, optimizer, scheduler, loss_fn, state, cfg,
                            sample_paths=sample_paths, max_steps=steps_per_epoch, on_step=on_step,
                            sync=make_sync(info), scaler=scaler)
            if sampler is not None:
                check_same(json.dumps(sampler.state_dict()), info, "the path sampler state")
            due = (state.epoch + 1) % cfg.eval_every == 0 or state.epoch + 1 == cfg.epochs
            if scorer is not None and due:
                archs = _eval_subnets(exp, cfg, state.epoch) if arch is None else [("model", arch)]
                rows = evaluate_subnets(scorer, archs)
                for r in rows:
                    r.update(epoch=state.epoch, step=state.step)
                evals.extend(rows)
                bar.write(f"epoch {state.epoch}: " + ", ".join(
                    f"{r['subnet']} easy {r['easy']:.3f}" for r in rows))
            state.epoch, state.batch = state.epoch + 1, 0
            save()
            barrier(info)  # the others wait for rank 0's evaluation and checkpoint
    finally:
        bar.close()
    return {"out": str(out), "steps": state.step, "evals": evals, "rank": info.rank,
            "skipped_images": loader.dataset.n_skipped,
            "world_size": info.world_size, "weights_sha256": weights_digest(model),
            "sampler_counts": {k: list(map(int, v)) for k, v in sampler.counts.items()}
            if sampler is not None else {},
            "final_loss": state.log[-1]["loss"] if state.log else float("nan")}


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer: equal digests mean bitwise-equal models."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_supernet(run, *, resume: bool = False, overwrite: bool = False,
                   progress: bool = True) -> dict:
    """Stage 2: train `run`'s supernet into run.root (config.yaml, supernet.pt, log.csv, evals.csv);
    `resume` continues it (also one killed before its first checkpoint). Returns the summary."""
    return train(run.exp, run.root, resume=resume, overwrite=overwrite, progress=progress)
