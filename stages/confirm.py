"""Confirm the front before picking: re-score the candidates for the pick and the baseline.

The search scores ~100 candidates on a small val subset (``search.eval_images``, BatchNorm
recalibrated on ``search.bn_batches`` batches) so that it stays affordable. "The fastest front
member whose estimate reaches the baseline's" is then chosen among many noisy estimates, which
favours members whose noise happened to be positive (the winner's curse): on the default CPU run
the pick's search estimate was 0.748 against the baseline's 0.720, a gap inside the noise of a
50-image score (about +-0.03 per arch, experiments/bench_bn_recal.py).

`confirm_front` re-scores, with the same inherited weights, the front members that could be the
pick (faster than the baseline, search estimate within ``slack`` of the baseline's; at most
``archs`` of them, spread over their latency range, the fastest always included) and the
baseline itself, on more val images (``images``) after BatchNorm recalibration on more batches
(``bn_batches``), every arch on the same images and batches. Each member's AP difference to the
baseline comes with a paired bootstrap interval over images (`detection.wider_eval.bootstrap_ap`),
so the pick rule compares like with like and the report can say how sure the estimate is.

    >>> table = confirm_front(checkpoint, exp, pareto, "ap_mean", baseline_row)   # doctest: +SKIP
    >>> table[["arch", "latency_ms", "search_ap_mean", "ap_mean", "diff_lo", "diff_hi"]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from detection.wider_eval import bootstrap_ap, paired_difference
from evolution.evaluator import EvalConfig, SupernetEvaluator
from core.experiment import Experiment

BASELINE = "baseline"


@dataclass(frozen=True)
class ConfirmConfig:
    """The experiment's ``confirm:`` section (read by pipeline.py before it picks)."""

    archs: int = 8  # front members re-scored at most (plus the baseline); 0 = no confirmation
    images: int = 200  # val images each is scored on (0 = the whole val split)
    bn_batches: int = 8  # BN recalibration batches of 16 training images at the eval resolution
    slack: float = 0.05  # members whose search estimate is this far below the baseline's qualify
    resamples: int = 1000  # paired bootstrap resamples over images
    seed: int = 0

    def __post_init__(self) -> None:
        if self.archs < 0 or self.images < 0 or self.bn_batches < 1 or self.resamples < 1:
            raise ValueError("confirm: archs and images must be >= 0, bn_batches and resamples >= 1")
        if not np.isfinite(self.slack) or self.slack < 0:
            raise ValueError(f"confirm.slack must be a finite number >= 0, got {self.slack}")


def front_to_confirm(pareto: pd.DataFrame, ap_key: str, baseline: dict, cfg: ConfirmConfig
                     ) -> pd.DataFrame:
    """The front rows worth re-scoring: faster than the baseline, search `ap_key` at least the
    baseline's minus ``slack``; at most ``archs`` spread evenly over their latency order."""
    rows = pareto[(pareto["latency_ms"].astype(float) < float(baseline["latency_ms"]))
                  & (pareto[ap_key].astype(float) >= float(baseline[ap_key]) - cfg.slack)]
    rows = rows[rows["arch"] != baseline["arch"]].drop_duplicates("arch").sort_values("latency_ms")
    if len(rows) > cfg.archs:
        keep = np.unique(np.linspace(0, len(rows) - 1, cfg.archs).round().astype(int))
        rows = rows.iloc[keep]
    return rows.reset_index(drop=True)


def confirm_front(checkpoint: dict, exp: Experiment, pareto: pd.DataFrame, ap_key: str,
                  baseline: dict, cfg: ConfirmConfig, device: str = "auto",
                  source: str = "supernet checkpoint", progress: bool = True) -> pd.DataFrame:
    """Re-score `front_to_confirm` rows and the baseline (its candidates.csv row) with the
    supernet's inherited weights; one row per arch, the baseline last, with ``latency_ms``,
    ``search_<ap_key>``, ``<ap_key>`` (re-scored), ``diff`` / ``diff_lo`` / ``diff_hi`` (AP minus the
    baseline's with its paired bootstrap interval) and ``baseline``."""
    metric = ap_key.removeprefix("ap_")
    if metric not in ("easy", "medium", "hard", "mean"):
        raise ValueError(f"confirm: the paired bootstrap covers easy/medium/hard/mean AP, not {ap_key!r}")
    rows = front_to_confirm(pareto, ap_key, baseline, cfg)
    ev_cfg = EvalConfig(eval_images=cfg.images or None, bn_batches=cfg.bn_batches, loss=False)
    ev = SupernetEvaluator.from_checkpoint(checkpoint, exp, ev_cfg, device=device, source=source)
    archs = {f"{i}": a for i, a in enumerate(rows["arch"])}
    archs[BASELINE] = baseline["arch"]
    preds = {}
    for name, text in tqdm(archs.items(), desc="confirm front", unit="arch", disable=not progress):
        preds[name] = ev.predict(exp.space.parse(text))[0]
    boot = bootstrap_ap(preds, ev.scorer.val.gt, n=cfg.resamples, seed=cfg.seed)
    out = []
    for name, text in archs.items():
        row = rows.iloc[int(name)] if name != BASELINE else pd.Series(baseline)
        diff = (paired_difference(boot, name, BASELINE)[metric] if name != BASELINE
                else {"value": 0.0, "lo": 0.0, "hi": 0.0})
        out.append({"arch": text, "latency_ms": float(row["latency_ms"]),
                    f"search_{ap_key}": float(row[ap_key]), ap_key: boot[name][metric]["value"],
                    "ap_lo": boot[name][metric]["lo"], "ap_hi": boot[name][metric]["hi"],
                    "diff": diff["value"], "diff_lo": diff["lo"], "diff_hi": diff["hi"],
                    "baseline": name == BASELINE, "images": boot["images"],
                    "bn_images": cfg.bn_batches * ev_cfg.batch_size})
    return pd.DataFrame(out)
