"""Shared fixtures: the tiny space (tests, seconds) and the default space (experiments/space.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.experiment import Experiment
from core.space import SearchSpace

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


# The 135-image real WIDER FACE val subset that ships beside the checkout (../shared); tests that
# read it are skipped, with the reason, where it is absent.
MINI = Path(__file__).resolve().parents[2] / "shared/data/widerface-val-mini"
needs_mini = pytest.mark.skipif(
    not (MINI / "wider_face_split/wider_face_val_bbx_gt.txt").is_file()
    or not (MINI / "ground_truth/wider_face_val.mat").is_file(),
    reason=f"real WIDER FACE mini val set not found at {MINI}")
