"""The one checkpoint type of facenas: a torch file of tensors and plain data.

    >>> ck = load_checkpoint("runs/x/supernet.pt", kind="supernet", space=exp.space)  # doctest: +SKIP
    >>> exp = checkpoint_experiment(ck, source="runs/x/supernet.pt")                   # doctest: +SKIP

Every checkpoint holds ``kind`` ("supernet" or "standalone"), ``arch`` (a standalone's arch string,
"" for a supernet), ``space`` (the search space's fingerprint), ``config`` (the resolved experiment
as YAML, so a checkpoint alone rebuilds its model) and ``model`` (the state dict); training adds its
resume state. It loads with ``weights_only=True`` (no pickled code runs), and a wrong kind or space
is refused here, naming the file, instead of failing later on a shape mismatch.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from core.experiment import Experiment
from core.io import atomic_torch_save
from core.space import SearchSpace

KINDS = ("supernet", "standalone")
REQUIRED = ("kind", "arch", "space", "config", "model")


def make_checkpoint(kind: str, space: SearchSpace, config: dict, model_state: dict,
                    arch: str = "", **extra) -> dict:
    """The checkpoint dict (`extra`: resume state, plain data and tensors only)."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {"kind": kind, "arch": str(arch), "space": space.fingerprint(),
            "config": yaml.safe_dump(config, sort_keys=False), "model": model_state, **extra}


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write atomically: a kill leaves the previous checkpoint, never half of one."""
    atomic_torch_save(checkpoint, path)


def _load_failure(err: Exception) -> str:
    """One line on why torch.load failed; its weights-only refusal is several lines of advice
    (including "load with weights_only=False", which facenas never does) around the reason."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        reason = [line for line in lines[1:] if not line.startswith(("Please file", "Check the"))]
        return "holds more than tensors and plain data" + (f": {reason[0]}" if reason else "")
    return lines[0] if lines else type(err).__name__


def check_checkpoint(checkpoint: dict, source: str, kind: str | None = None,
                     space: SearchSpace | None = None) -> dict:
    """`checkpoint` itself if it is a facenas checkpoint of `kind` and `space` (when given);
    ValueError naming `source` otherwise."""
    if not isinstance(checkpoint, dict) or not {"kind", "space", "config", "model"} <= set(checkpoint):
        raise ValueError(f"{source}: not a facenas checkpoint (a torch file without the kind, space, "
                         "config and model entries train_supernet.py / retrain.py write)")
    if kind is not None and checkpoint["kind"] != kind:
        what = {"supernet": "a supernet checkpoint (train_supernet.py)",
                "standalone": "a standalone checkpoint (retrain.py)"}[kind]
        raise ValueError(f"{source}: needs {what}, got a {checkpoint['kind']!r} checkpoint")
    if space is not None and checkpoint["space"] != space.fingerprint():
        raise ValueError(f"{source}: {checkpoint['kind']} checkpoint from another search space (fingerprint "
                         f"{checkpoint['space']}, config {space.source} {space.fingerprint()}); "
                         "pass the --config it was trained with")
    return checkpoint


def load_checkpoint(path: str | Path, kind: str | None = None,
                    space: SearchSpace | None = None) -> dict:
    """Load a facenas checkpoint safely (tensors and plain data only) and check it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, not a checkpoint, unsafe pickle
        raise ValueError(f"{path}: not a readable facenas checkpoint ({_load_failure(err)})") from None
    return check_checkpoint(checkpoint, str(path), kind, space)


def checkpoint_experiment(checkpoint: dict, source: str = "<checkpoint>") -> Experiment:
    """The experiment a checkpoint was trained with (its saved, resolved config)."""
    config = yaml.safe_load(checkpoint["config"])
    if isinstance(config, dict):  # a standalone run records its arch in its config too (the
        config.pop("arch", None)  # checkpoint's own "arch" entry is the one that counts)
    return Experiment.from_dict(config, source=f"{source}:config")
