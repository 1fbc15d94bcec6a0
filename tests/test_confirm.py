"""Confirming the front before the pick: which members are re-scored, the table, the pick rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.pick import CONFIRMED, choose_pick
from core.checkpoint import make_checkpoint
from detection.config import DetectorConfig
from detection.model import build_supernet_detector
from stages.confirm import ConfirmConfig, confirm_front, front_to_confirm
from core.experiment import Experiment

TINY = Path(__file__).resolve().parents[1] / "experiments" / "tiny.yaml"
BASE = {"arch": "base", "latency_ms": 10.0, "ap_mean": 0.50}


def _front() -> pd.DataFrame:
    return pd.DataFrame({"arch": [f"a{i}" for i in range(8)],
                         "latency_ms": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 9.0, 11.0],
                         "ap_mean": [0.30, 0.44, 0.46, 0.47, 0.49, 0.52, 0.55, 0.60]})


def test_front_to_confirm_keeps_faster_members_near_the_baseline_spread_over_latency():
    rows = front_to_confirm(_front(), "ap_mean", BASE, ConfirmConfig(archs=8, slack=0.05))
    # a0 and a1 are more than 0.05 below the baseline, a7 is slower than it; the rest qualify
    assert list(rows["arch"]) == ["a2", "a3", "a4", "a5", "a6"]
    rows = front_to_confirm(_front(), "ap_mean", BASE, ConfirmConfig(archs=3, slack=0.05))
    assert list(rows["arch"]) == ["a2", "a4", "a6"]  # both ends kept, one between
    assert front_to_confirm(_front(), "ap_mean", BASE, ConfirmConfig(archs=8, slack=0.0)
                            )["arch"].tolist() == ["a5", "a6"]


def test_confirm_config_rejects_bad_values():
    with pytest.raises(ValueError, match="slack"):
        ConfirmConfig(slack=-0.1)
    with pytest.raises(ValueError, match="bn_batches"):
        ConfirmConfig(bn_batches=0)


def test_confirm_front_rescores_members_and_baseline_on_the_same_images():
    exp = Experiment.from_yaml(TINY)
    model = build_supernet_detector(exp.space, exp.section("detector", DetectorConfig))
    checkpoint = make_checkpoint("supernet", exp.space, exp.resolved(), model.state_dict())
    base = str(exp.space.baseline)
    smallest = str(exp.space.smallest())
    sampled = str(exp.space.sample(np.random.default_rng(0)))
    pareto = pd.DataFrame({"arch": [smallest, sampled, base], "latency_ms": [1.0, 2.0, 2.5],
                           "ap_mean": [0.40, 0.42, 0.43]})  # the baseline's own row is not re-scored
    table = confirm_front(checkpoint, exp, pareto, "ap_mean",
                          {"arch": base, "latency_ms": 3.0, "ap_mean": 0.41},
                          ConfirmConfig(archs=4, images=0, bn_batches=1, resamples=50),
                          progress=False)
    assert table["baseline"].tolist() == [False, False, True]  # the baseline last
    assert table["latency_ms"].tolist() == [1.0, 2.0, 3.0]
    assert table["search_ap_mean"].tolist() == [0.40, 0.42, 0.41]
    assert (table["images"] == 8).all() and (table["bn_images"] == 16).all()  # all tiny val images
    assert table["arch"].tolist() == [smallest, sampled, base]
    assert ((table["ap_lo"] <= table["ap_mean"]) & (table["ap_mean"] <= table["ap_hi"])).all()
    assert ((table["diff_lo"] <= table["diff"]) & (table["diff"] <= table["diff_hi"])).all()
    assert table.iloc[2][["diff", "diff_lo", "diff_hi"]].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="min50"):
        confirm_front(checkpoint, exp, pareto.rename(columns={"ap_mean": "ap_min50"}), "ap_min50",
                      {"arch": base, "latency_ms": 3.0, "ap_min50": 0.41}, ConfirmConfig())


def _search_dir(tmp_path: Path, confirmed: pd.DataFrame | None) -> Path:
    search = tmp_path / "search"
    search.mkdir()
    front = _front()
    front.to_csv(search / "pareto.csv", index=False)
    cands = pd.concat([front.assign(baseline=False),
                       pd.DataFrame([{**BASE, "baseline": True}])])
    cands.to_csv(search / "candidates.csv", index=False)
    if confirmed is not None:
        confirmed.to_csv(search / CONFIRMED, index=False)
    return search


def _confirmed(aps: dict[str, float], base_ap: float) -> pd.DataFrame:
    front = _front().set_index("arch")
    rows = [{"arch": a, "latency_ms": front.loc[a, "latency_ms"], "search_ap_mean": front.loc[a, "ap_mean"],
             "ap_mean": ap, "diff": ap - base_ap, "diff_lo": ap - base_ap - 0.02,
             "diff_hi": ap - base_ap + 0.02, "baseline": False, "images": 200} for a, ap in aps.items()]
    rows.append({"arch": "base", "latency_ms": 10.0, "search_ap_mean": 0.5, "ap_mean": base_ap,
                 "diff": 0.0, "diff_lo": 0.0, "diff_hi": 0.0, "baseline": True, "images": 200})
    return pd.DataFrame(rows)


def test_pick_uses_the_rescored_front(tmp_path):
    # the search says a4 (0.49 + noise) ... a5 reach the baseline; re-scored, only a6 does
    search = _search_dir(tmp_path, _confirmed({"a4": 0.45, "a5": 0.47, "a6": 0.53}, 0.50))
    picked = choose_pick(search, "fastest-not-worse", "12ms")
    assert picked["arch"] == "a6" and picked["rule"] == "fastest-not-worse"
    assert picked["one_shot"] == 0.53 and picked["baseline_one_shot"] == 0.50
    assert picked["search_one_shot"] == 0.55
    assert picked["confirmed"]["diff"] == pytest.approx(0.03)


def test_pick_without_confirmation_uses_the_search_estimates(tmp_path):
    picked = choose_pick(_search_dir(tmp_path, None), "fastest-not-worse", "12ms")
    assert picked["arch"] == "a5" and "confirmed" not in picked  # first search AP >= 0.50


def test_pick_falls_back_to_best_under_budget_when_no_rescored_member_reaches_the_baseline(tmp_path, capsys):
    search = _search_dir(tmp_path, _confirmed({"a5": 0.40, "a6": 0.45}, 0.50))
    picked = choose_pick(search, "fastest-not-worse", "8ms")
    assert picked["rule"] == "best-under:8ms" and picked["arch"] == "a5"  # best search AP under 8 ms
    assert "re-scored on 200 images" in capsys.readouterr().out
