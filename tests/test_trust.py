"""Pick vs baseline and the ranking trust check: paired bootstrap AP over images, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import MINI, needs_mini  # noqa: E402  (shared test data location)
from detection.annotations import read_annotations
from detection.wider_eval import SETTINGS, bootstrap_ap, evaluate, load_ground_truth
from stages.trust import ranking_trust, trust_archs


def _degraded(anns, keep: float, jitter: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for a in anns:
        p = np.c_[a.boxes, rng.random(len(a.boxes))].astype(float)
        p = p[rng.random(len(p)) < keep]
        p[:, :2] += rng.normal(0, jitter, (len(p), 2)) * p[:, [2, 3]].clip(1)
        out[a.name[:-4]] = p
    return out


@needs_mini
def test_bootstrap_ap_is_the_official_ap_with_paired_intervals():
    gt = load_ground_truth(MINI / "ground_truth")
    anns = read_annotations(MINI / "wider_face_split/wider_face_val_bbx_gt.txt")
    good, bad = _degraded(anns, 0.9, 0.05, 0), _degraded(anns, 0.6, 0.2, 1)
    boot = bootstrap_ap({"good": good, "bad": bad, "same": good}, gt, n=200, seed=0)
    assert boot["images"] == 135
    for name, preds in (("good", good), ("bad", bad)):
        official = evaluate(preds, gt, subset=True)
        for s in SETTINGS:  # the full-sample value is exactly the official protocol's AP
            assert boot[name][s]["value"] == pytest.approx(official[s], abs=1e-12)
            assert boot[name][s]["lo"] <= official[s] <= boot[name][s]["hi"]
        assert boot[name]["mean"]["value"] == pytest.approx(np.mean(list(official.values())))
    diff = boot["bad - good"]["mean"]  # clearly worse: the whole interval below 0
    assert diff["hi"] < 0 and diff["value"] < 0
    same = boot["good - same"]["mean"]  # a model against itself: no noise left when paired
    assert same["lo"] == same["hi"] == same["value"] == 0
    # paired: the difference's interval is narrower than either AP's own interval
    width = lambda d: d["hi"] - d["lo"]  # noqa: E731
    assert width(diff) < width(boot["good"]["mean"]) + width(boot["bad"]["mean"])


def test_ranking_trust_verdicts():
    truth = np.linspace(0.1, 0.8, 8)
    rows = lambda shot: [{"arch": f"a{i}", "one_shot": s, "retrained": t}  # noqa: E731
                         for i, (s, t) in enumerate(zip(shot, truth))]
    good = ranking_trust(rows(truth + 0.01), n_boot=300)
    assert good["verdict"] == "trustworthy" and good["tau"] == 1.0 and not good["advice"]
    bad = ranking_trust(rows(truth[::-1]), n_boot=300)
    assert bad["verdict"] == "not trustworthy" and bad["tau"] == -1.0 and "train" in bad["advice"]
    rng = np.random.default_rng(0)
    weak = ranking_trust(rows(truth + rng.normal(0, 0.15, 8)), n_boot=300)
    assert weak["tau_lo"] <= weak["tau"] <= weak["tau_hi"]
    flat = ranking_trust([{"arch": "a", "one_shot": s, "retrained": 0.0} for s in (0.1, 0.2, 0.3)])
    assert flat["verdict"] == "undetermined"
    assert ranking_trust(rows(truth)[:2])["verdict"] == "too few archs"


def test_trust_archs_spread_over_front_and_candidates():
    pareto = pd.DataFrame({"arch": ["f0", "f1", "f2", "f3", "f4"], "latency_ms": [1, 2, 3, 4, 5],
                           "ap_mean": [0.1, 0.2, 0.3, 0.4, 0.5]})
    candidates = pd.concat([pareto.assign(generation=0), pd.DataFrame({
        "arch": ["c0", "c1", "c2", "base"], "latency_ms": [2, 3, 4, 3], "ap_mean": [0.05, 0.15, 0.25, 0.2],
        "generation": [1, 1, 1, -1]})])
    chosen = trust_archs(candidates, pareto, "ap_mean", exclude={"f0"}, k_front=2, k_spread=2)
    assert chosen == ["f1", "f4", "c0", "c2"]  # ends of the front's and of the others' ranges
    assert trust_archs(candidates, pareto, "ap_mean", exclude=set(), k_front=0, k_spread=0) == []
