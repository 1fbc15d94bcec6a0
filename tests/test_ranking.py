"""experiments/ranking.py end to end on the tiny experiment: outputs, then a resume that trains nothing."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    """The script as module ``ranking``, importable by the spawned training processes too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACENAS_CACHE", str(tmp_path_factory.mktemp("facenas-cache")))
        mp.syspath_prepend(str(EXPERIMENTS))
        spec = importlib.util.spec_from_file_location("ranking", EXPERIMENTS / "ranking.py")
        module = importlib.util.module_from_spec(spec)
        mp.setitem(sys.modules, "ranking", module)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture
def config(tmp_path) -> Path:
    data = yaml.safe_load((EXPERIMENTS / "tiny.yaml").read_text())
    data["train"].update(eval_images=0, epochs=1)  # no per-epoch evaluation
    data["ranking"] = {
        "k": 4, "k_spread": 1, "k_repeat": 2, "retrain_epochs": 1, "eval_images": 8, "bn_batches": 1,
        "n_boot": 200, "pool_size": 40, "jobs": 2,
        "variants": {"strict_fair": ["train.sampler=strict_fair"],
                     "uniform": ["train.sampler=uniform", "train.max_steps_per_epoch=1"]}}
    path = tmp_path / "ranking.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_ranking_end_to_end_and_resume(ranking, config, tmp_path):
    out = tmp_path / "out"
    argv = ["--config", str(config), "--out", str(out)]
    first = ranking.main(argv)

    assert len(first["jobs_run"]) == 2 + 4 + 2  # 2 supernets, 4 archs at seed 0, 2 again at seed 1
    assert first["one_shot_evaluated"] == 2 * 4
    assert any("uniform" in w for w in first["warnings"])  # half the passes of strict_fair
    frame = pd.read_csv(out / "ranking.csv")
    assert list(frame.columns) == [
        "index", "arch", "macs", "params", "latency_ms", "synflow", "standalone_seed0",
        "standalone_seed1", "oneshot_strict_fair_ap", "oneshot_strict_fair_loss", "oneshot_uniform_ap",
        "oneshot_uniform_loss"]
    assert len(frame) == 4 and frame["arch"].is_unique
    assert frame["standalone_seed1"].notna().sum() == 2
    assert frame[["latency_ms", "synflow", "standalone_seed0"]].notna().all().all()

    result = json.loads((out / "ranking.json").read_text())
    for key in ("config", "truth", "budget_ms", "ceiling", "best_baseline", "rankers", "verdict",
                "compute", "seconds", "archs"):
        assert key in result
    assert set(result["rankers"]) == {"strict_fair/ap", "strict_fair/loss", "uniform/ap",
                                      "uniform/loss", "params", "macs", "synflow"}
    # a few steps leave every stand-alone AP at 0 here: tau is then undefined (NaN), not 0
    defined = frame["standalone_seed0"].nunique() > 1
    for name in ("params", "macs", "synflow"):  # distinct archs: these scores have no ties
        r = result["rankers"][name]
        assert math.isfinite(r["tau"]) == defined and math.isfinite(r["rho"]) == defined
        assert r["regret"]["n_feasible"] >= 1
    sf = result["rankers"]["strict_fair/ap"]
    assert set(sf["vs_baseline"]) == {"params", "macs", "synflow"} and "vs_best_baseline" in sf
    assert result["compute"]["strict_fair"]["passes"] > result["compute"]["uniform"]["passes"] > 0
    assert set(result["seconds"]) >= {"archs", "latency", "baselines", "training", "one_shot", "stats"}
    md = (out / "ranking.md").read_text()
    assert "| strict_fair/ap |" in md and "| synflow |" in md and "**Verdict" in md
    assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "standalone" / "seed0" / frame["arch"].map(ranking.arch_hash)[0]
                / "model.onnx").exists()  # stand-alone runs skip the ONNX export

    models = sorted(out.glob("**/*.pt"))
    stamps = [p.stat().st_mtime_ns for p in models]
    second = ranking.main(argv)
    assert second["jobs_run"] == [] and second["one_shot_evaluated"] == 0
    assert [p.stat().st_mtime_ns for p in models] == stamps
    assert pd.read_csv(out / "ranking.csv").equals(frame)  # the same numbers, read back
    assert len(second["seconds_history"]) == 2


def test_analysis_on_a_made_up_table(ranking, tmp_path):
    """A one-shot ranker equal to the truth meets the target; a baseline as good as it does not."""
    rng = np.random.default_rng(0)
    k = 30
    truth = rng.uniform(0.2, 0.8, k)
    repeat = list(range(0, k, 2))
    frame = pd.DataFrame({
        "latency_ms": rng.uniform(1, 10, k), "standalone_seed0": truth,
        "standalone_seed1": np.where(np.isin(np.arange(k), repeat), truth + rng.normal(0, 0.05, k), np.nan),
        "params": rng.normal(size=k), "macs": rng.normal(size=k), "synflow": rng.normal(size=k),
        "oneshot_good_ap": truth, "oneshot_good_loss": -truth + rng.normal(0, 0.1, k),
        "oneshot_bad_ap": rng.normal(size=k), "oneshot_bad_loss": np.full(k, np.nan)})
    cfg = ranking.RankingConfig(k=k, n_boot=300, variants={"good": ["a=1"], "bad": ["a=2"]})
    compute = {v: {"passes": 100, "train_seconds": 5.0} for v in ("good", "bad")}
    stats = ranking.analyse(frame, ["good", "bad"], repeat, cfg, compute)
    good = stats["rankers"]["good/ap"]
    assert good["tau"] == 1.0 and good["regret"]["top1"] == 0.0 and 0.5 < stats["ceiling"]["tau"] < 1
    assert good["tau_over_ceiling"] == pytest.approx(1 / stats["ceiling"]["tau"])
    assert good["vs_best_baseline"]["share_le_0"] == 0.0
    assert np.isnan(stats["rankers"]["bad/loss"]["tau"])  # no loss recorded
    assert stats["verdict"]["best"] == "good/ap" and stats["verdict"]["holds"]
    md = ranking.markdown(stats, cfg, k)
    assert "the target holds" in md
    assert md.count("\n| ") == 1 + 4 + 3  # header, 2 variants x 2 scores, 3 baselines
    ranking.plot(frame.assign(index=range(k)), stats, "ap_mean", tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0

    stats = ranking.analyse(frame.assign(macs=truth), ["good", "bad"], repeat, cfg, compute)
    assert stats["best_baseline"] == "macs" and not stats["verdict"]["holds"]
    assert [ok for ok in stats["verdict"]["checks"].values()] == [True, True, False, True]


def test_bad_ranking_settings(ranking, config):
    with pytest.raises(ValueError, match="unknown key 'kk'"):
        ranking.load_config(config, ["ranking.kk=3"])
    with pytest.raises(ValueError, match="k_spread"):
        ranking.load_config(config, ["ranking.k_spread=3"])
    with pytest.raises(ValueError, match="key=value"):
        ranking.load_config(config, ["ranking.variants={a: [sampler]}"])
    _, cfg = ranking.load_config(config, ["ranking.k=6", "train.seed=3"])
    assert cfg.k == 6 and cfg.repeats == 2
