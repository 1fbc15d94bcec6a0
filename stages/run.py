"""A run folder: one experiment's ``runs/<name>/`` and every stage's files in it.

    >>> run = Run.create("experiments/tiny.yaml")        # runs/tiny, experiment from the YAML
    >>> run = Run.open("runs/tiny")                      # continue: the experiment saved in the run
    >>> run.supernet, run.table, run.search_dir          # doctest: +SKIP
    (PosixPath('runs/tiny/supernet.pt'), PosixPath('runs/tiny/latency.csv'), PosixPath('runs/tiny/search'))

Layout (stages, the pipeline and the report ask the run for these paths; inside its own folder
each writer names its files, e.g. the trainer's log.csv, the search's candidates.csv)::

    runs/<name>/config.yaml            the resolved experiment (space inlined), written by training
    runs/<name>/supernet.pt            supernet checkpoint (+ log.csv, evals.csv)
    runs/<name>/latency.csv            latency table (+ .json sidecar, .validation.json/.png)
    runs/<name>/search/                candidates.csv, pareto.csv, search.yaml, checkpoint.json,
                                       confirmed.csv, report.html
    runs/<name>/retrain/<arch hash>/   model.pt, metrics.json, model.onnx ...
    runs/<name>/retrain/trust.json     the trust check; comparison.json: pick vs baseline

A stage that continues a run takes its experiment from the run (``Run.open``): the checkpoint and
the table were built for that space, whatever the default YAML says today.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from core.experiment import Experiment
from core.space import Arch

RUNS = Path("runs")  # relative to the working directory, as the scripts always wrote


def packaged_config(name: str) -> Path:
    """An experiment YAML shipped with facenas (experiments/<name>.yaml), also when installed
    non-editable: the package data of `experiments`."""
    path = Path(str(resources.files("experiments") / f"{name}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"no packaged experiment {name!r} ({path})")
    return path


DEFAULT_CONFIG = packaged_config("default")


def resolve_config(config: str | Path) -> Path:
    """A YAML path as given, or the name of a packaged experiment (``tiny``, ``default``): what
    ``--config`` accepts, so an installed facenas runs its configs from any folder."""
    path = Path(config)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path  # a path: Experiment.from_yaml names it if it is missing
    try:
        return packaged_config(str(config))
    except FileNotFoundError:
        names = sorted(p.name[:-5] for p in resources.files("experiments").iterdir()
                       if p.name.endswith(".yaml"))
        raise FileNotFoundError(f"--config {config}: no such file, and not a packaged experiment "
                                f"({', '.join(names)})") from None


def arch_hash(arch: Arch | str) -> str:
    """Folder name of a retrained arch: the first 8 hex digits of sha1(arch string)."""
    return hashlib.sha1(str(arch).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunFolder:
    """The layout of runs/<name>/ (module docstring); no experiment needed (e.g. for the report)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def supernet(self) -> Path:
        return self.root / "supernet.pt"

    @property
    def table(self) -> Path:
        return self.root / "latency.csv"

    @property
    def validation(self) -> Path:
        return Path(f"{self.table}.validation.json")

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def pareto(self) -> Path:
        return self.search_dir / "pareto.csv"

    @property
    def candidates(self) -> Path:
        return self.search_dir / "candidates.csv"

    @property
    def confirmed(self) -> Path:
        return self.search_dir / "confirmed.csv"

    @property
    def report(self) -> Path:
        return self.search_dir / "report.html"

    @property
    def retrain_root(self) -> Path:
        return self.root / "retrain"

    def retrain_dir(self, arch: Arch | str) -> Path:
        return self.retrain_root / arch_hash(arch)

    @property
    def trust(self) -> Path:
        return self.retrain_root / "trust.json"

    @property
    def comparison(self) -> Path:
        return self.retrain_root / "comparison.json"


@dataclass(frozen=True)
class Run(RunFolder):
    """A run folder with its experiment: what every stage function takes."""

    exp: Experiment
    config: Path  # the YAML the experiment was read from (recorded in outputs, used in advice)
    overrides: tuple[str, ...] = field(default=())

    @classmethod
    def create(cls, config: str | Path = DEFAULT_CONFIG, overrides: list[str] | tuple = (),
               root: str | Path | None = None) -> "Run":
        """The run of the experiment in `config` (default root runs/<experiment name>)."""
        config = resolve_config(config)
        exp = Experiment.from_yaml(config, list(overrides))
        return cls(Path(root) if root else RUNS / exp.name, exp, config, tuple(overrides))

    @classmethod
    def open(cls, root: str | Path, overrides: list[str] | tuple = ()) -> "Run":
        """An existing run, with the experiment it saved (config.yaml)."""
        root = Path(root)
        saved = root / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"{root}: not a facenas run (no config.yaml; train the supernet "
                                    "first, or give --config)")
        return cls.create(saved, overrides, root)

    @classmethod
    def find(cls, config: str | Path | None, overrides: list[str] | tuple = (),
             beside: str | Path | None = None) -> "Run":
        """`config` if given; else the run holding the file `beside` (a checkpoint, a pareto.csv
        of its search folder) when it saved its experiment; else the default experiment."""
        if config is not None:
            return cls.create(config, overrides)
        if beside is not None:
            for folder in (Path(beside).parent, Path(beside).parent.parent):
                if (folder / "config.yaml").is_file():
                    return cls.open(folder, overrides)
        return cls.create(DEFAULT_CONFIG, overrides)

    def with_overrides(self, overrides: list[str] | tuple) -> "Run":
        """The same folder with more --set overrides (e.g. a retraining budget)."""
        if not overrides:
            return self
        more = (*self.overrides, *overrides)
        return replace(self, exp=Experiment.from_yaml(self.config, list(more)), overrides=more)
