"""experiments/ranking_seeds.py on made-up ranking runs with known seed noise."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ranking_seeds", ROOT / "experiments" / "ranking_seeds.py")
rs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rs)


def _run(folder: Path, seeds: dict[int, dict[str, float]], one_shot: dict[str, float] | None) -> None:
    for seed, values in seeds.items():
        for i, (arch, v) in enumerate(values.items()):
            out = folder / "standalone" / f"seed{seed}" / f"{i:08x}"
            out.mkdir(parents=True)
            ap = {k: v for k in rs.METRICS}
            (out / "metrics.json").write_text(json.dumps({"arch": arch, "ap": ap}))
    if one_shot is not None:
        scores = {a: {**{k: v for k in rs.METRICS}, "loss": -v} for a, v in one_shot.items()}
        (folder / "oneshot_v.json").write_text(json.dumps({"key": {}, "scores": scores}))
        pd.DataFrame({"arch": list(one_shot), "macs": np.arange(len(one_shot))}).to_csv(
            folder / "ranking.csv", index=False)


def test_noise_free_seeds_give_a_perfect_ceiling_and_one_seed_suffices(tmp_path):
    archs = [f"a{i}" for i in range(8)]
    truth = dict(zip(archs, np.linspace(0.1, 0.8, 8)))
    _run(tmp_path / "r1", {0: truth, 1: truth}, one_shot=truth)
    _run(tmp_path / "r2", {2: truth, 3: truth}, one_shot=None)
    res = rs.main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--variant", "v", "--n-boot", "200",
                   "--out", str(tmp_path / "out")])
    m = res["metrics"]["ap_mean"]
    assert res["seeds"] == [0, 1, 2, 3] and res["archs_all_seeds"] == 8
    assert m["single_seed_ceiling"]["tau_mean_over_pairs"] == pytest.approx(1.0)
    assert m["two_seed_ceiling"]["tau_mean_over_splits"] == pytest.approx(1.0)
    assert m["one_shot_vs_two_seed_mean"]["tau"] == pytest.approx(1.0)
    assert m["macs_vs_two_seed_mean"]["tau"] == pytest.approx(1.0)  # macs = rank order here
    assert m["seeds_for_ceiling_085"] == 0.0 and (tmp_path / "out" / "seeds.md").is_file()
    assert "one_shot_reproducibility" not in res  # the second run trained no supernet


def test_noisy_seeds_need_more_and_averaging_helps(tmp_path):
    rng = np.random.default_rng(0)
    archs = [f"a{i}" for i in range(30)]
    true = rng.normal(0, 1, 30)
    seeds = {s: dict(zip(archs, true + rng.normal(0, 0.8, 30))) for s in range(4)}
    _run(tmp_path / "r1", {0: seeds[0], 1: seeds[1]}, one_shot=dict(zip(archs, true)))
    _run(tmp_path / "r2", {2: seeds[2], 3: seeds[3]}, one_shot=dict(zip(archs, -true)))
    res = rs.main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--variant", "v", "--n-boot", "200",
                   "--out", str(tmp_path / "out")])
    m = res["metrics"]["ap_hard"]
    single = m["single_seed_ceiling"]["tau_mean_over_pairs"]
    assert 0.2 < single < 0.8
    assert m["two_seed_ceiling"]["tau_mean_over_splits"] > single  # averaging two seeds helps
    # Spearman-Brown from the measured tau: n seeds for a 0.85 ceiling, more than two
    r1 = math.sin(math.pi / 2 * single)
    assert m["seeds_for_ceiling_085"] == pytest.approx(rs.seeds_needed(r1)) and m["seeds_for_ceiling_085"] > 2
    # the noise-free one-shot score agrees better with a 2-seed mean than with one seed
    assert m["one_shot_vs_two_seed_mean"]["tau"] > m["one_shot_vs_one_seed"]["tau"]
    # a second supernet ranking the archs in reverse: supernet vs supernet tau is -1
    rep = res["one_shot_reproducibility"]["ap_hard"]
    assert rep["supernet_vs_supernet"]["tau"] == pytest.approx(-1.0)
