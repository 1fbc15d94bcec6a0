"""Shared fixtures: the tiny space (tests, seconds) and the default space (experiments/space.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supernet.experiment import Experiment
from supernet.space import SearchSpace

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# Test inputs are tiny: one intra-op thread is as fast, and on a busy machine (CI, shared cores)
# OpenMP threads waiting on each other made single forward passes 10-50x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    return Experiment.from_yaml(EXPERIMENTS / "tiny.yaml").space


@pytest.fixture(scope="session")
def default_space() -> SearchSpace:
    return Experiment.from_yaml(EXPERIMENTS / "default.yaml").space
