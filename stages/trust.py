"""Can the search's answer be trusted? Pick vs baseline after retraining, and a ranking check.

A one-shot search answers "which subnet is faster at AP not lower?" with estimates. Two checks
turn that into something a user can act on, both run by `trust_check` (the pipeline's stage after
retraining the pick and the baseline):

* `compare_retrained`: the pick and the baseline, retrained with the same budget, scored on the
  same val images; AP of each and of their difference with intervals from a paired bootstrap over
  images (`detection.wider_eval.bootstrap_ap`), beside their measured latencies and the speed-up.
  The pick is "not worse" when the interval of pick - baseline reaches 0 or above.
* `ranking_trust`: a few more archs (front members and others spread over the one-shot AP range,
  `trust_archs`) retrained with the same budget; Kendall tau between their one-shot AP and their
  retrained AP with a bootstrap interval (`evolution.rank_stats`). A ranking whose interval does
  not clear 0 is flagged, with what to do about it.

    >>> trust = ranking_trust([{"arch": a, "one_shot": o, "retrained": r} for ...])  # doctest: +SKIP
    >>> trust["verdict"], trust["tau"], trust["tau_lo"]                                # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.io import atomic_write_text
from evolution.rank_stats import rank_agreement
from stages.pick import read_pareto
from stages.retrain import retrain
from stages.run import Run

TRUSTED_TAU = 0.6  # a ranking this consistent (and clear of 0) is called trustworthy


def trust_archs(candidates: pd.DataFrame, pareto: pd.DataFrame, ap_key: str, exclude: set[str],
                k_front: int = 2, k_spread: int = 2) -> list[str]:
    """Archs to retrain for the trust check: `k_front` front members evenly over the front's
    latency range and `k_spread` other candidates evenly over the one-shot AP range, none in
    `exclude` (already retrained); deterministic for given inputs."""
    chosen: list[str] = []

    def take(frame: pd.DataFrame, k: int, key: str) -> None:
        rows = frame[~frame["arch"].isin(exclude | set(chosen))].sort_values(key)
        if k <= 0 or rows.empty:
            return
        for i in np.unique(np.linspace(0, len(rows) - 1, min(k, len(rows))).round().astype(int)):
            chosen.append(str(rows["arch"].iloc[i]))

    take(pareto, k_front, "latency_ms")
    others = candidates[~candidates["arch"].isin(set(pareto["arch"]))]
    if "generation" in others:
        others = others[others["generation"] >= 0]
    take(others.drop_duplicates("arch"), k_spread, ap_key)
    return chosen


def ranking_trust(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """rows: {"arch", "one_shot", "retrained"} (APs). Kendall tau / Spearman with intervals, a
    verdict (trustworthy / weak / not trustworthy) and advice."""
    one_shot = np.array([r["one_shot"] for r in rows], dtype=float)
    retrained = np.array([r["retrained"] for r in rows], dtype=float)
    out = {"n": len(rows), "rows": rows}
    if len(rows) < 3:
        return {**out, "verdict": "too few archs",
                "advice": "retrain at least 3 archs (pipeline.py --trust-archs) to check the ranking"}
    if np.ptp(retrained) == 0 or np.ptp(one_shot) == 0:
        which = "retrained" if np.ptp(retrained) == 0 else "one-shot"
        return {**out, "verdict": "undetermined",
                "advice": f"every {which} AP is the same ({(retrained if which == 'retrained' else one_shot)[0]:.4f}): "
                          "nothing to rank; retrain longer (--retrain-epochs) or train the supernet "
                          "longer (train.epochs)"}
    agree = rank_agreement(retrained, one_shot, n_boot=n_boot, seed=seed)
    out.update(agree)
    tau, lo = agree["tau"], agree["tau_lo"]
    if np.isfinite(tau) and tau >= TRUSTED_TAU and lo > 0:
        out["verdict"], out["advice"] = "trustworthy", ""
    elif np.isfinite(tau) and tau > 0:
        out["verdict"] = "weak"
        out["advice"] = (f"one-shot AP agreed with retrained AP only loosely (Kendall tau {tau:.2f}, "
                         f"95% interval [{lo:.2f}, {agree['tau_hi']:.2f}] over {len(rows)} archs): "
                         "confirm the pick by retraining more front members, or train the supernet "
                         "longer (train.epochs) / on more data (--data) before trusting the front")
    else:
        out["verdict"] = "not trustworthy"
        out["advice"] = (f"one-shot AP did not predict retrained AP here (Kendall tau {tau:.2f} over "
                         f"{len(rows)} archs): the front is no better supported than a choice by "
                         "MACs. Train the supernet longer (train.epochs), on real data (--data), "
                         "or retrain longer (--retrain-epochs) before relying on the search")
    return out


def compare_retrained(exp, pick_dir: str | Path, baseline_dir: str | Path, eval_images: int = 0,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """Pick vs baseline, both retrained: paired-bootstrap AP intervals and measured latency."""
    import torch

    from detection.config import DetectorConfig
    from detection.data import DataConfig
    from detection.wider_eval import bootstrap_ap, paired_difference
    from detection.valset import ValSet
    from detection.model import build_detector
    from core.checkpoint import load_checkpoint

    det_cfg = exp.section("detector", DetectorConfig)
    val = ValSet.load(exp.section("data", DataConfig), size=max(det_cfg.input_size),
                      limit=eval_images or None)
    preds, metrics = {}, {}
    for name, folder in (("pick", Path(pick_dir)), ("baseline", Path(baseline_dir))):
        metrics[name] = json.loads((folder / "metrics.json").read_text())
        model = build_detector(exp.space, metrics[name]["arch"], det_cfg)
        model.load_state_dict(load_checkpoint(folder / "model.pt")["model"])
        with torch.no_grad():
            preds[name] = val.predict(model.eval())
    boot = bootstrap_ap(preds, val.gt, n=n_boot, seed=seed)
    diff = paired_difference(boot, "pick", "baseline")
    ms = {k: float(m["latency"]["measured_ms"]) for k, m in metrics.items()}
    speedup = ms["baseline"] / ms["pick"]
    not_worse = diff["mean"]["hi"] >= 0
    return {"images": boot["images"], "resamples": n_boot,
            "pick": {"arch": metrics["pick"]["arch"], "measured_ms": ms["pick"], "ap": boot["pick"]},
            "baseline": {"arch": metrics["baseline"]["arch"], "measured_ms": ms["baseline"],
                         "ap": boot["baseline"]},
            "pick_minus_baseline": diff, "speedup": speedup, "ap_not_lower": bool(not_worse),
            "verdict": (f"pick {speedup:.2f}x {'faster' if speedup >= 1 else 'slower'} than the "
                        f"baseline (measured), AP mean {diff['mean']['value']:+.4f} "
                        f"[{diff['mean']['lo']:+.4f}, {diff['mean']['hi']:+.4f}]: "
                        + ("not lower beyond noise" if not_worse else "LOWER beyond noise"))}


def trust_check(run: Run, picked: dict, extra_archs: int, epochs: int, progress: bool = True) -> dict:
    """Retrain `extra_archs` more archs with `epochs`, then write run.trust (one-shot vs retrained
    ranking over them, the pick and the baseline) and run.comparison (pick vs baseline, paired
    bootstrap over images); returns the trust record. The pick and the baseline must be retrained
    already (same `epochs`)."""
    pareto = read_pareto(run.pareto)
    candidates = pd.read_csv(run.candidates)
    key = picked["ap_key"]
    baseline = str(run.exp.space.baseline)
    done = {picked["arch"], baseline}
    extra = trust_archs(candidates, pareto, key, done, k_front=(extra_archs + 1) // 2,
                        k_spread=extra_archs // 2) if extra_archs > 0 else []
    for arch in extra:
        retrain(run, arch, epochs=epochs, resume=True, progress=progress)
    one_shot = dict(zip(candidates["arch"], candidates[key]))
    rows = []
    for arch in [picked["arch"], baseline, *extra]:
        metrics = json.loads((run.retrain_dir(arch) / "metrics.json").read_text())
        rows.append({"arch": arch, "one_shot": float(one_shot[arch]),
                     "retrained": float(metrics["ap"][key]),
                     "measured_ms": float(metrics["latency"]["measured_ms"])})
    result = {"ap_key": key, "retrain_epochs": epochs, "pick": picked, **ranking_trust(rows)}
    atomic_write_text(run.trust, json.dumps(result, indent=1) + "\n")
    print(f"trust check ({len(rows)} archs): {result['verdict']}"
          + (f", Kendall tau {result['tau']:.2f} [{result['tau_lo']:.2f}, {result['tau_hi']:.2f}]"
             if "tau" in result else "") + (f"\nwarning: {result['advice']}" if result["advice"] else ""),
          flush=True)
    cmp = compare_retrained(run.exp, run.retrain_dir(picked["arch"]), run.retrain_dir(baseline))
    cmp["pick_rule"] = picked
    atomic_write_text(run.comparison, json.dumps(cmp, indent=1) + "\n")
    print(cmp["verdict"], flush=True)
    return result
