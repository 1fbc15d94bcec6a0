"""How many stand-alone seeds does a reproducible ranking truth need? (issue 11, the noise ceiling)

    python experiments/ranking_seeds.py runs/ranking runs/ranking_seed23 --out docs/ranking_seeds

Reads two `experiments/ranking.py` runs of the same arch sample (`ranking.seed`) whose stand-alone
trainings used different seeds (the first with train.seed 0 -> seeds 0, 1; the second with
train.seed 2 -> seeds 2, 3), so the repeated archs have four stand-alone seeds and all K archs two.
Per AP metric it reports, with 95% bootstrap intervals over archs:

* the single-seed ceiling: Kendall tau between two seeds (every pair of the four, averaged);
* the two-seed ceiling: tau between the means of two disjoint seed pairs (what averaging buys);
* the one-shot score and MACs against one seed and against the mean of two (K archs);
* with a second supernet (the second run's, trained with its train.seed): how well two supernets'
  one-shot scores agree, and their mean against the two-seed stand-alone mean;
* a Spearman-Brown projection: from the single-seed reliability r1, r_n = n r1 / (1 + (n - 1) r1)
  for a mean of n seeds, and the n for which two independent n-seed means agree at Kendall 0.85
  (tau = 2/pi asin(r) for a bivariate normal). r1 is taken from the measured single-seed Kendall
  tau (r1 = sin(pi/2 tau)); the Pearson r between seeds is shown too, but it is carried by the
  extreme archs and overstates how well the crowded middle reproduces.

Writes seeds.json and seeds.md to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from evolution.rank_stats import kendall_tau_b, rank_agreement

METRICS = ("ap_easy", "ap_medium", "ap_hard", "ap_mean")
TARGET_CEILING = 0.85


def standalone(run: Path) -> dict[int, dict[str, dict]]:
    """seed -> arch -> AP dict, from <run>/standalone/seed<k>/*/metrics.json."""
    out: dict[int, dict[str, dict]] = {}
    for folder in sorted((run / "standalone").glob("seed*")):
        seed = int(folder.name[4:])
        for path in folder.glob("*/metrics.json"):
            m = json.loads(path.read_text())
            out.setdefault(seed, {})[m["arch"]] = m["ap"]
    return out


def one_shot(run: Path, variant: str) -> dict[str, dict]:
    return json.loads((run / f"oneshot_{variant}.json").read_text())["scores"]


def seeds_needed(r1: float, ceiling: float = TARGET_CEILING) -> float:
    """Seeds per arch for two independent n-seed means to agree at Kendall `ceiling`."""
    r_target = math.sin(ceiling * math.pi / 2)
    if r1 <= 0:
        return float("inf")
    return r_target * (1 - r1) / (r1 * (1 - r_target))


def analyse(runs: list[Path], variant: str, n_boot: int) -> dict:
    seeds: dict[int, dict[str, dict]] = {}
    for run in runs:
        seeds.update(standalone(run))
    shot = one_shot(runs[0], variant)
    all_seeds = sorted(seeds)
    full = sorted(set.intersection(*(set(seeds[s]) for s in all_seeds)))  # archs with every seed
    first = [all_seeds[0], all_seeds[2]] if len(all_seeds) >= 3 else all_seeds[:2]
    common = sorted(set(seeds[first[0]]) & set(seeds[first[1]]) & set(shot))
    out: dict = {"seeds": all_seeds, "archs_all_seeds": len(full), "archs_two_seeds": len(common),
                 "two_seeds": first, "metrics": {}}
    boot = {"n_boot": n_boot, "seed": 0}
    for key in METRICS:
        mat = np.array([[seeds[s][a][key] for s in all_seeds] for a in full])  # archs x seeds
        pairs = list(itertools.combinations(range(len(all_seeds)), 2))
        single = [kendall_tau_b(mat[:, i], mat[:, j]) for i, j in pairs]
        pearson = [float(np.corrcoef(mat[:, i], mat[:, j])[0, 1]) for i, j in pairs]
        splits = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))] if len(all_seeds) >= 4 else []
        double = [rank_agreement(mat[:, list(a)].mean(1), mat[:, list(b)].mean(1), **boot)
                  for a, b in splits]
        truth1 = np.array([seeds[first[0]][a][key] for a in common])
        truth2 = np.array([(seeds[first[0]][a][key] + seeds[first[1]][a][key]) / 2 for a in common])
        score = np.array([shot[a]["ap_mean" if key == "ap_mean" else key] for a in common])
        loss = -np.array([shot[a]["loss"] for a in common])
        r1 = float(np.mean(pearson))
        # Greiner's relation: the Pearson r a bivariate normal needs for the measured Kendall tau
        # (Pearson is carried by the extremes; the ranking lives in the crowded middle)
        r1_kendall = math.sin(math.pi / 2 * float(np.mean(single)))
        out["metrics"][key] = {
            "single_seed_ceiling": {"tau_mean_over_pairs": float(np.mean(single)),
                                    "tau_pairs": [float(v) for v in single],
                                    "first_pair": rank_agreement(mat[:, 0], mat[:, 1], **boot)},
            "two_seed_ceiling": {"tau_mean_over_splits": float(np.mean([d["tau"] for d in double]))
                                 if double else None, "splits": double},
            "seed_sd": float(np.mean(np.std(mat, axis=1, ddof=1))),
            "between_arch_sd": float(np.std(mat.mean(1), ddof=1)),
            "r1_pearson": r1, "r1_from_kendall": r1_kendall,
            "seeds_for_ceiling_085": seeds_needed(r1_kendall),
            "seeds_for_ceiling_085_from_pearson": seeds_needed(r1),
            "one_shot_vs_one_seed": rank_agreement(truth1, score, **boot),
            "one_shot_vs_two_seed_mean": rank_agreement(truth2, score, **boot),
            "one_shot_loss_vs_two_seed_mean": rank_agreement(truth2, loss, **boot),
        }
    other = [r for r in runs[1:] if (r / f"oneshot_{variant}.json").is_file()]
    if other:  # a second supernet (trained with the other run's train.seed): one-shot vs one-shot
        shot2 = one_shot(other[0], variant)
        both = sorted(set(shot) & set(shot2) & set(common))
        out["one_shot_reproducibility"] = {}
        for key in (*METRICS, "loss"):
            a = np.array([shot[x][key] for x in both])
            b = np.array([shot2[x][key] for x in both])
            entry = {"supernet_vs_supernet": rank_agreement(a, b, **boot)}
            if key != "loss":
                truth2 = np.array([(seeds[first[0]][x][key] + seeds[first[1]][x][key]) / 2
                                   for x in both])
                entry["mean_of_two_supernets_vs_two_seed_mean"] = rank_agreement(
                    truth2, (a + b) / 2, **boot)
            out["one_shot_reproducibility"][key] = entry
    return out


def markdown(res: dict, macs_tau: dict) -> str:
    lines = [f"Seeds {res['seeds']}: {res['archs_all_seeds']} archs with all of them, "
             f"{res['archs_two_seeds']} with seeds {res['two_seeds']}. Kendall tau, 95% bootstrap "
             "interval over archs.", "",
             "| metric | seed sd | between-arch sd | 1-seed ceiling (mean of 6 pairs) | 2-seed ceiling "
             "(mean of 3 splits) | r1 (Pearson / from tau) | seeds for a 0.85 ceiling (from tau / Pearson) | one-shot vs 1 seed | one-shot vs "
             "2-seed mean | one-shot loss vs 2-seed mean | MACs vs 2-seed mean |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, m in res["metrics"].items():
        fmt = lambda d: f"{d['tau']:.2f} [{d['tau_lo']:.2f}, {d['tau_hi']:.2f}]"  # noqa: E731
        two = m["two_seed_ceiling"]["tau_mean_over_splits"]
        lines.append(f"| {key} | {m['seed_sd']:.3f} | {m['between_arch_sd']:.3f} | "
                     f"{m['single_seed_ceiling']['tau_mean_over_pairs']:.2f} | "
                     f"{'-' if two is None else f'{two:.2f}'} | {m['r1_pearson']:.2f} / "
                     f"{m['r1_from_kendall']:.2f} | {m['seeds_for_ceiling_085']:.1f} / "
                     f"{m['seeds_for_ceiling_085_from_pearson']:.1f} | {fmt(m['one_shot_vs_one_seed'])} | "
                     f"{fmt(m['one_shot_vs_two_seed_mean'])} | "
                     f"{fmt(m['one_shot_loss_vs_two_seed_mean'])} | {fmt(macs_tau[key])} |")
    rep = res.get("one_shot_reproducibility")
    if rep:
        lines += ["", "One-shot scores of two supernets trained with different seeds (same variant, "
                  "same budget):", "", "| score | supernet vs supernet | mean of both vs 2-seed "
                  "stand-alone mean |", "|---|---|---|"]
        for key, e in rep.items():
            fmt = lambda d: f"{d['tau']:.2f} [{d['tau_lo']:.2f}, {d['tau_hi']:.2f}]"  # noqa: E731
            vs = e.get("mean_of_two_supernets_vs_two_seed_mean")
            lines.append(f"| {key} | {fmt(e['supernet_vs_supernet'])} | {fmt(vs) if vs else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="ranking.py output folders (same arch sample)")
    p.add_argument("--variant", default="fair_own_nested_shrink", help="one-shot scores of this variant")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    res = analyse(args.runs, args.variant, args.n_boot)
    seeds = {}
    for run in args.runs:
        seeds.update(standalone(run))
    first = res["two_seeds"]
    frame = pd.read_csv(args.runs[0] / "ranking.csv")  # arch, macs, ... of the K archs
    macs = dict(zip(frame["arch"], frame["macs"].astype(float)))
    macs_tau = {}
    common = sorted(set(seeds[first[0]]) & set(seeds[first[1]]))
    for key in METRICS:
        truth2 = np.array([(seeds[first[0]][a][key] + seeds[first[1]][a][key]) / 2 for a in common])
        macs_tau[key] = rank_agreement(truth2, np.array([macs[a] for a in common]), n_boot=args.n_boot)
        res["metrics"][key]["macs_vs_two_seed_mean"] = macs_tau[key]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "seeds.md").write_text(markdown(res, macs_tau))
    print(markdown(res, macs_tau))
    return res


if __name__ == "__main__":
    main()
