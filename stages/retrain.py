"""Retrain one searched arch stand-alone, score it, export it and time it: what `retrain.py` runs.

    >>> metrics = retrain(Run.open("runs/default"), arch, epochs=20)               # doctest: +SKIP
    >>> metrics = retrain_model(exp, arch, "runs/x/retrain/1a2b3c4d", table=table)  # doctest: +SKIP
    >>> metrics["ap"]["ap_hard"], metrics["latency"]["measured_ms"]                 # doctest: +SKIP

Steps (each artifact written atomically into `out`):

1. train with `stages.trainer.train(exp, out, arch=arch)` (the supernet's loop; `init` = a supernet
   checkpoint to start from inherited weights) -> model.pt, log.csv, evals.csv, config.yaml;
2. AP on the val split (the whole split unless `retrain.eval_images`), with the search's keys
   (``ap_easy``, ``ap_medium``, ``ap_hard``, ``ap_mean``, ``ap_min50``) so both compare directly;
3. model.onnx (`latency.export`), checked against torch within `retrain.atol` on val images and
   random inputs;
4. end-to-end onnxruntime latency with the `latency:` settings, beside the table's prediction;
5. metrics.json (+ arch.txt) last: a folder with metrics.json is a finished retrain.

The ``retrain:`` section of an experiment YAML (`RetrainConfig`) holds the evaluation settings;
training settings are the ``train:`` section, as for the supernet.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detection.config import DetectorConfig
from detection.data import DataConfig
from detection.loop import TrainConfig
from latency.export import check_onnx, export_onnx
from latency.timing import time_models
from detection.valset import ValSet
from detection.model import build_detector
from core.checkpoint import load_checkpoint
from stages.trainer import train
from latency.config import LatencyConfig
from core.device import select_device
from core.experiment import Experiment
from core.io import atomic_write_text
from core.lock import Lock, hold_lock
from core.space import Arch
from stages.run import Run, arch_hash

METRICS = "metrics.json"


@dataclass(frozen=True)
class RetrainConfig:
    """The ``retrain:`` section: how a retrained model is scored and checked."""

    eval_images: int = 0  # val images for the final AP (0 = the whole val split)
    atol: float = 1e-4  # max |onnxruntime - torch| on logits and deltas
    check_images: int = 4  # val images (plus 2 random inputs) for the ONNX check
    opset: int = 17

    def __post_init__(self) -> None:
        if self.eval_images < 0 or self.check_images < 0 or not self.atol > 0:
            raise ValueError("retrain: eval_images and check_images must be >= 0 and atol > 0")


# -- data -----------------------------------------------------------------------------------------
def val_as_train_root(root: Path) -> Path:
    """A WIDER root whose train split is `root`'s val split (symlinks; in $FACENAS_CACHE).

    For a val-only root (e.g. a val subset used to check the pipeline on real images): training
    and scoring then use the same images, so the AP is not a held-out estimate.
    """
    root = Path(root).expanduser().resolve()
    base = Path(os.environ.get("FACENAS_CACHE") or Path.home() / ".cache" / "facenas")
    link_root = base / f"val-as-train-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    if (link_root / "wider_face_split" / "wider_face_train_bbx_gt.txt").exists():
        return link_root
    split = link_root / "wider_face_split"
    split.mkdir(parents=True, exist_ok=True)
    links = {link_root / "WIDER_train": root / "WIDER_val", link_root / "WIDER_val": root / "WIDER_val",
             link_root / "ground_truth": root / "ground_truth",
             split / "wider_face_val_bbx_gt.txt": root / "wider_face_split" / "wider_face_val_bbx_gt.txt",
             split / "wider_face_train_bbx_gt.txt": root / "wider_face_split" / "wider_face_val_bbx_gt.txt"}
    for link, target in links.items():  # the train annotations last: its presence marks "complete"
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return link_root


def resolve_train_root(root: str | None, train_split: str) -> str | None:
    """The data root to train on: `root` itself, or its val split as train (`val_as_train_root`)."""
    if train_split not in ("train", "val"):
        raise ValueError(f"--train-split must be train or val, got {train_split!r}")
    if root is None:
        if train_split == "val":
            raise ValueError("--train-split val needs --data (the generated dataset has a train split)")
        return None
    path = Path(root).expanduser()
    if not (path / "WIDER_val").is_dir():
        raise FileNotFoundError(f"{path}: not a WIDER FACE root (no WIDER_val folder)")
    if train_split == "val":
        return str(val_as_train_root(path))
    if not (path / "WIDER_train").is_dir():
        raise FileNotFoundError(
            f"{path} has no WIDER_train (a val-only root?): give a full WIDER FACE root, or pass "
            "--train-split val to train on its val images (a pipeline check: AP is then measured "
            "on the training images)")
    return root


# -- measuring ------------------------------------------------------------------------------------
def count_macs(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass at 1x3xHxW (convolutions and linear layers)."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)


def _latency(exp: Experiment, arch: Arch, onnx_path: Path, table) -> dict:
    from latency.device_bench import device_info

    lat = exp.section("latency", LatencyConfig)
    # the table's own timing routine and statistic: measured and predicted are comparable
    timing = time_models([onnx_path], lat, desc="retrained model", progress=False)[0]
    out = {"measured_ms": timing.pop("median_ms"), **timing, "threads": lat.threads,
           "warmup": lat.warmup, "repeats": lat.repeats, "rounds": lat.rounds, "clock": lat.clock,
           "provider": lat.provider, "method": lat.method, "quantile": lat.quantile,
           "device": device_info(lat.threads, lat.provider),
           # other processes inflate wall-clock timings: keep the load to judge the number by
           "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if table is not None:
        predicted = float(table.predict(arch))
        table_device = table.meta.get("device", {})
        out.update(predicted_ms=predicted, raw_ms=float(table.raw(arch)), table=str(table.source),
                   error_pct=(predicted - out["measured_ms"]) / out["measured_ms"] * 100,
                   table_device=table_device,
                   same_device=all(table_device.get(k) == out["device"][k]
                                   for k in ("cpu", "threads", "provider")))
    return out


# -- the pipeline ---------------------------------------------------------------------------------
def retrain_model(exp: Experiment, arch: Arch, out: str | Path, **kwargs) -> dict:
    """`_retrain` holding `out`'s lock, from before `overwrite` deletes anything to the end."""
    lock = hold_lock(out)
    if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 writes the folder
        lock.acquire()
    try:
        return _retrain(exp, arch, Path(out), lock=lock, **kwargs)
    finally:
        lock.release()


def _retrain(exp: Experiment, arch: Arch, out: Path, *, lock: Lock, init: dict | None = None,
            init_source: str | None = None, table=None, one_shot: dict | None = None,
            resume: bool = False, overwrite: bool = False, progress: bool = True,
            extra: dict | None = None, export: bool = True) -> dict:
    """Train, score, export and time `arch`; writes and returns metrics.json (module docstring).

    `table`: a `latency.table.LatencyTable` for the predicted latency (None: not predicted).
    `one_shot`: the arch's row from the search (its one-shot AP estimates), recorded for reports.
    `resume` with a finished run (metrics.json present, training complete) returns the saved
    metrics without recomputing them. `export=False` skips steps 3-4 (no model.onnx; ``onnx`` and
    ``latency`` are None): for experiments that only need the AP.
    """
    out = Path(out)
    cfg = exp.section("retrain", RetrainConfig)
    det_cfg = exp.section("detector", DetectorConfig)
    data_cfg = exp.section("data", DataConfig)
    metrics_path = out / METRICS
    if overwrite:
        for name in (METRICS, "model.onnx", "arch.txt"):
            (out / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    summary = train(exp, out, arch=arch, resume=resume, overwrite=overwrite, init=init,
                    progress=progress, lock=lock)
    if resume and metrics_path.is_file():
        saved = json.loads(metrics_path.read_text())
        if saved.get("train", {}).get("steps") == summary["steps"]:
            return saved
    train_seconds = time.perf_counter() - t0
    atomic_write_text(out / "arch.txt", f"{arch}\n")

    model = build_detector(exp.space, arch, det_cfg)
    model.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    model.to(select_device(exp.section("train", TrainConfig).device)).eval()  # AP on the GPU if any
    size = max(det_cfg.input_size)
    val = ValSet.load(data_cfg, size=size, limit=cfg.eval_images or None)
    model.eval()
    ap = val.scores(val.predict(model))

    onnx = latency = None
    if export:
        onnx_path = export_onnx(model, out / "model.onnx", det_cfg.input_size, cfg.opset)
        square = tuple(det_cfg.input_size) == (size, size)  # ValSet images are padded to size x size
        check = val.images[:cfg.check_images] if square else None
        diff = check_onnx(model, onnx_path, det_cfg.input_size, cfg.atol, inputs=check)
        onnx = {"path": "model.onnx", "opset": cfg.opset, "max_abs_diff": diff, "atol": cfg.atol,
                "inputs_checked": (len(check) if check is not None else 0) + 2}
        latency = _latency(exp, arch, onnx_path, table)

    metrics = {
        "arch": str(arch), "arch_hash": arch_hash(arch), "experiment": exp.name,
        "baseline": arch == exp.space.baseline,
        "ap": ap, "eval": {"split": "val", "images": len(val), "input_size": size},
        "one_shot": one_shot,
        "onnx": onnx, "latency": latency,
        "params": int(sum(p.numel() for p in model.parameters())),
        "params_backbone": exp.space.params(arch),
        "macs": count_macs(model, det_cfg.input_size),
        "macs_backbone": exp.space.macs(arch, det_cfg.input_size),
        "input_size": list(det_cfg.input_size),
        "train": {"steps": summary["steps"], "final_loss": summary["final_loss"],
                  "epochs": exp.section("train", TrainConfig).epochs, "init": init_source or "scratch",
                  "seconds": train_seconds, "data_root": data_cfg.root},
        "retrain_config": asdict(cfg), **(extra or {}),
    }
    atomic_write_text(metrics_path, json.dumps(metrics, indent=1, default=_json_default) + "\n")
    return metrics


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# -- the stage ----------------------------------------------------------------------------------
def retrain(run: Run, arch: Arch | str, *, epochs: int | None = None, init: str = "scratch",
            supernet: Path | None = None, table: Path | None = None, out: Path | None = None,
            one_shot: dict | None = None, resume: bool = False, overwrite: bool = False,
            progress: bool = True, extra: dict | None = None) -> dict:
    """Retrain `arch` ('baseline' or an arch string) of `run` into run.retrain_dir(arch) (or
    `out`) with `epochs` (default train.epochs); `init` 'supernet' starts from the run's (or
    `supernet`'s) inherited weights. The table (default the run's, when it matches) predicts the
    latency beside the measured one. Returns metrics.json's content."""
    if init not in ("scratch", "supernet"):
        raise ValueError(f"init must be 'scratch' or 'supernet', got {init!r}")
    if epochs is not None:
        run = run.with_overrides([f"train.epochs={epochs}"])
    exp = run.exp
    if isinstance(arch, str):
        arch = exp.space.baseline if arch == "baseline" else exp.space.parse(arch)
    source = Path(supernet or run.supernet) if init == "supernet" else None
    init_ck = load_supernet(source, exp) if source else None
    lut = open_table(Path(table or run.table), exp, required=table is not None)
    out = Path(out or run.retrain_dir(arch))
    print(f"retraining {arch}\n  config {run.config}\n  out {out}", flush=True)
    return retrain_model(exp, arch, out, init=init_ck, init_source=source and f"supernet:{source}",
                         table=lut, one_shot=one_shot, resume=resume, overwrite=overwrite,
                         progress=progress, extra={"config": str(run.config), **(extra or {})})


# -- locating a run's files (for the CLI) ---------------------------------------------------------
def find_run_dir(pareto: Path | None = None, supernet: Path | None = None) -> Path | None:
    """The supernet run folder (holding config.yaml) of a search's pareto.csv or a supernet.pt:
    the supernet recorded in search.yaml (``resolved.supernet``) if any, else the layout
    ``runs/<name>/search/pareto.csv`` -> ``runs/<name>``; ``runs/<name>/supernet.pt`` -> same."""
    folders = [Path(supernet).parent] if supernet else []
    if pareto:
        search_yaml = Path(pareto).parent / "search.yaml"
        if search_yaml.is_file():
            import yaml

            recorded = ((yaml.safe_load(search_yaml.read_text()) or {}).get("resolved") or {})
            if recorded.get("supernet"):
                folders.append(Path(recorded["supernet"]).parent)
        folders.append(Path(pareto).parent.parent)
    for folder in folders:
        if (folder / "config.yaml").is_file():
            return folder
    return None


def open_table(path: Path, exp: Experiment, required: bool):
    """The latency table at `path` for `exp`, or None (with a note) when it is optional and
    missing or built for another space/detector; errors when `required` (given explicitly)."""
    from latency.table import LatencyTable

    try:
        return LatencyTable.load(path, exp.space, exp.section("detector", DetectorConfig))
    except (FileNotFoundError, ValueError) as err:
        if required:
            raise
        print(f"note: no predicted latency ({err})")
        return None


def load_supernet(path: Path, exp: Experiment) -> dict:
    """A supernet checkpoint of `exp`'s space (for `init`); ValueError otherwise."""
    return load_checkpoint(Path(path), kind="supernet", space=exp.space)


def summary_text(metrics: dict) -> str:
    """Three lines for logs: AP, ONNX check, measured (and predicted) latency."""
    lat, onnx = metrics["latency"], metrics["onnx"]
    ap = ", ".join(f"{k[3:]} {v:.4f}" for k, v in metrics["ap"].items())
    predicted = f", {lat['predicted_ms']:.3f} ms predicted" if "predicted_ms" in lat else ""
    load, cpus = lat.get("load_avg_1min"), lat.get("device", {}).get("logical_cpus") or 1
    if load is not None and lat.get("clock") == "wall" and load > cpus:
        predicted += (f"\nwarning: load average {load:.1f} on {cpus} CPUs while timing: the wall-clock "
                      "latency is inflated (re-time on an idle machine, or --set latency.clock=cpu "
                      "with latency.threads=1)")
    return (f"AP ({metrics['eval']['images']} val images): {ap}\n"
            f"ONNX max |onnxruntime - torch| {onnx['max_abs_diff']:.2e} (atol {onnx['atol']:g})\n"
            f"latency {lat['measured_ms']:.3f} ms measured{predicted}")
