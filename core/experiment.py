"""One experiment = one YAML file in `experiments/`: a name, a search space and per-concern sections.

    name: default
    space: space.yaml          # path relative to this file, or an inline space mapping
    supernet: {...}            # supernet.net.SupernetConfig (weight sharing)
    detector: {...}            # detection.config.DetectorConfig
    data: {...}                # detection.config.DataConfig
    train: {...}               # detection.config.TrainConfig
    latency: {...}             # latency.config.LatencyConfig
    search: {...}              # evolution.config.SearchConfig

Defaults live in each section's dataclass; the YAML overrides them. Each package parses its own
section with `Experiment.section(name, cls)`, which rejects unknown keys and wrong types.

    >>> exp = Experiment.from_yaml("experiments/default.yaml")  # doctest: +SKIP
    >>> train = exp.section("train", TrainConfig)                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.config import apply_overrides, from_dict, load_yaml
from core.space import SearchSpace

T = TypeVar("T")
SECTIONS = ("supernet", "detector", "data", "train", "latency", "search", "confirm", "retrain")


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # the YAML path, for error messages
    base_dir: Path  # relative paths in the YAML are relative to this
    space: SearchSpace
    raw: dict  # the resolved mapping (after --set overrides), saved into run folders

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Experiment":
        path = Path(path)
        return cls.from_dict(load_yaml(path), base_dir=path.parent, source=str(path),
                             overrides=overrides)

    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path = ".", source: str = "<experiment>",
                  overrides: list[str] | None = None) -> "Experiment":
        data = apply_overrides(data, overrides or [])
        unknown = sorted(set(data) - {"name", "space", *SECTIONS})
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r} (known: name, space, "
                             f"{', '.join(SECTIONS)})")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise TypeError(f"{source}.name: expected a string, got {name!r}")
        space_spec = data.get("space", "space.yaml")
        base_dir = Path(base_dir)
        if isinstance(space_spec, str):
            space = SearchSpace.from_yaml(base_dir / space_spec)
        elif isinstance(space_spec, dict):
            space = SearchSpace.from_dict(space_spec, base_dir=base_dir, source=f"{source}:space")
        else:
            raise TypeError(f"{source}.space: expected a path or a mapping, got {space_spec!r}")
        for key in SECTIONS:
            if key in data and not isinstance(data[key], dict):
                raise TypeError(f"{source}.{key}: expected a mapping, got {data[key]!r}")
        return cls(name, source, base_dir, space, data)

    def section(self, key: str, cls_: type[T]) -> T:
        if key not in SECTIONS:
            raise KeyError(f"unknown config section {key!r}")
        return from_dict(cls_, self.raw.get(key) or {}, where=f"{self.source}:{key}")

    def resolved(self) -> dict:
        """The mapping to save as the run's config.yaml (space inlined so the run is self-contained)."""
        out = dict(self.raw)
        cfg = self.space.config
        out["space"] = {
            "baseline": {"name": self.space.baseline_config.name,
                         "stages": [{"block": s.block, "depth": s.depth, "fixed": s.fixed}
                                    for s in self.space.baseline_config.stages]},
            "ops": list(cfg.ops), "kernels": list(cfg.kernels), "se": list(cfg.se),
            "widths": list(cfg.widths), "depth_deltas": list(cfg.depth_deltas),
            "channel_divisor": cfg.channel_divisor,
        }
        return out
