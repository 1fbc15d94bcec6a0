"""Ranking correlation: does a supernet's one-shot AP rank archs as stand-alone training does?

    python experiments/ranking.py --config experiments/ranking.yaml --out runs/ranking
    python experiments/ranking.py --config experiments/ranking.yaml --samplers strict_fair
    python experiments/ranking.py --config ... --pareto runs/x/search/pareto.csv   # front archs

The config is an experiment YAML plus a ``ranking:`` section (`RankingConfig`). Steps, each
skipped when already done, so re-running the same command resumes:

1. one supernet per sampler at **equal compute**: strict-fair trains E epochs with m paths per
   optimizer step (m = ``StrictFairSampler(space).m``), uniform (SPOS) trains m x E epochs (and
   m x the warm-up) with one path per step: both do the same number of forward/backward passes;
2. K archs: ``k_spread`` spread over the front (``--pareto``: evenly over its rows) or, without a
   search, over the space's FLOPs range (`latency.calibrate.spread_archs`, a cost proxy for the
   front), plus K - k_spread uniform samples;
3. each arch retrained stand-alone from scratch (`detection.retrain.retrain`, the same training
   loop) -> ``standalone/<arch hash>/metrics.json`` (a folder with it is finished);
4. its one-shot AP from each supernet (`evolution.evaluator.SupernetEvaluator`: inherited weights,
   BN recalibrated) on the same val images -> ``oneshot_<sampler>.json``;
5. Kendall tau and Spearman rho (scipy.stats) per sampler -> ``ranking.json`` + ``ranking.png``.

Anchor: FairNAS (Chu et al., 2021) reports Kendall tau 0.9487 for strict fairness vs 0.6153 for
SPOS on ImageNet. With K = 8 the standard error of tau is ~0.25: read small gaps as ties.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from detection.config import DetectorConfig
from detection.engine import TrainConfig
from detection.retrain import arch_hash, retrain
from detection.run import load_checkpoint, train
from evolution.evaluator import EvalConfig, SupernetEvaluator
from latency.calibrate import spread_archs
from supernet.config import from_dict, load_yaml
from supernet.experiment import Experiment
from supernet.io import atomic_write_bytes, atomic_write_text
from supernet.samplers import StrictFairSampler
from supernet.space import Arch

FAIRNAS_TAU = {"strict_fair": 0.9487, "uniform": 0.6153}  # ImageNet, FairNAS paper


@dataclass(frozen=True)
class RankingConfig:
    k: int = 8  # archs retrained stand-alone
    k_spread: int = 4  # of which spread over the front / the FLOPs range; the rest uniform samples
    seed: int = 0
    supernet_epochs: int = 15  # strict-fair epochs; uniform trains m x as many
    retrain_epochs: int = 15
    eval_images: int = 100  # val images for one-shot and stand-alone AP (the same first N)
    bn_batches: int = 4
    metric: str = "ap_mean"
    samplers: tuple[str, ...] = ("strict_fair", "uniform")
    pool_size: int = 2000  # candidate archs for the FLOPs spread


def load_config(path: str | Path, overrides: list[str]) -> tuple[Experiment, RankingConfig]:
    data = load_yaml(path)
    ranking = from_dict(RankingConfig, data.pop("ranking", {}) or {}, where=f"{path}:ranking")
    exp = Experiment.from_dict(data, base_dir=Path(path).parent, source=str(path), overrides=overrides)
    return exp, ranking


def pick_archs(exp: Experiment, cfg: RankingConfig, pareto: str | None) -> list[Arch]:
    space, rng = exp.space, np.random.default_rng(cfg.seed)
    if pareto:
        front = pd.read_csv(pareto)["arch"].tolist()
        idx = np.unique(np.linspace(0, len(front) - 1, min(cfg.k_spread, len(front))).round().astype(int))
        spread = [space.parse(front[i]) for i in idx]
    else:
        size = exp.section("detector", DetectorConfig).input_size
        flops = lambda archs: np.array([space.flops(a, size) for a in archs], dtype=float)  # noqa: E731
        spread = spread_archs(space, flops, cfg.k_spread, cfg.seed, cfg.pool_size, extremes=True)
    archs = list(spread)
    while len(archs) < cfg.k:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    return archs


def train_supernets(exp: Experiment, cfg: RankingConfig, out: Path, config: str,
                    overrides: list[str]) -> dict:
    m = StrictFairSampler(exp.space, cfg.seed).m
    warmup = exp.section("train", TrainConfig).warmup_steps
    runs = {}
    for sampler in cfg.samplers:
        factor = m if sampler == "uniform" else 1  # equal forward/backward passes
        run = Experiment.from_yaml(config, overrides + [
            f"train.sampler={sampler}", f"train.epochs={cfg.supernet_epochs * factor}",
            f"train.warmup_steps={warmup * factor}"])
        path = out / f"supernet_{sampler}"
        t0 = time.perf_counter()
        summary = train(run, path, resume=True, progress=False)
        log = pd.read_csv(path / "log.csv")
        runs[sampler] = {"dir": str(path), "steps": summary["steps"],
                         "passes": int(log["paths"].sum()), "epochs": cfg.supernet_epochs * factor,
                         "final_loss": float(log["loss"].iloc[-max(1, len(log) // 10):].mean()),
                         "seconds": time.perf_counter() - t0}
        print(f"supernet {sampler}: {summary['steps']} steps, {runs[sampler]['passes']} passes", flush=True)
    return {"m": m, "runs": runs}


def standalone(exp: Experiment, archs: list[Arch], out: Path, config: str, overrides: list[str],
               cfg: RankingConfig) -> list[dict]:
    run = Experiment.from_yaml(config, overrides + [f"train.epochs={cfg.retrain_epochs}",
                                                    f"retrain.eval_images={cfg.eval_images}"])
    results = []
    for i, arch in enumerate(archs):
        path = out / "standalone" / arch_hash(arch)
        if (path / "metrics.json").is_file():
            results.append(json.loads((path / "metrics.json").read_text()))
            continue
        t0 = time.perf_counter()
        results.append(retrain(run, arch, path, resume=True, progress=False))
        print(f"stand-alone {i + 1}/{len(archs)} {cfg.metric} {results[-1]['ap'][cfg.metric]:.4f} "
              f"({time.perf_counter() - t0:.0f} s): {arch}", flush=True)
    return results


def one_shot(exp: Experiment, archs: list[Arch], supernet_dir: Path, path: Path,
             cfg: RankingConfig) -> dict[str, dict]:
    done = json.loads(path.read_text()) if path.is_file() else {}
    todo = [a for a in archs if str(a) not in done]
    if todo:
        evaluator = SupernetEvaluator.from_checkpoint(
            load_checkpoint(supernet_dir / "supernet.pt"), exp,
            EvalConfig(cfg.eval_images, cfg.bn_batches, 16, cfg.seed))
        for arch, ap in zip(todo, evaluator(todo)):
            done[str(arch)] = ap
        atomic_write_text(path, json.dumps(done, indent=1) + "\n")
    return done


def correlations(standalone_ap: list[float], oneshot_ap: list[float]) -> dict:
    tau, tau_p = stats.kendalltau(standalone_ap, oneshot_ap)
    rho, rho_p = stats.spearmanr(standalone_ap, oneshot_ap)
    return {"kendall_tau": float(tau), "kendall_p": float(tau_p), "spearman_rho": float(rho),
            "spearman_p": float(rho_p)}


def plot(result: dict, metric: str, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers = list(result["samplers"])
    fig, axes = plt.subplots(1, len(samplers), figsize=(5 * len(samplers), 4.4), dpi=110, squeeze=False)
    x = [a["standalone"] for a in result["archs"]]
    for ax, sampler in zip(axes[0], samplers):
        r = result["samplers"][sampler]
        y = [a["one_shot"][sampler] for a in result["archs"]]
        ax.scatter(x, y, color="tab:blue" if sampler == "strict_fair" else "tab:orange")
        for i, (xi, yi) in enumerate(zip(x, y)):
            ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set(xlabel=f"stand-alone {metric}", ylabel=f"one-shot {metric} (inherited, BN recal.)",
               title=f"{sampler}: Kendall tau {r['kendall_tau']:.3f}, Spearman {r['spearman_rho']:.3f}\n"
                     f"(FairNAS ImageNet tau {FAIRNAS_TAU.get(sampler, float('nan')):.4f})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(Path(__file__).parent / "ranking.yaml"))
    p.add_argument("--out", default="runs/ranking")
    p.add_argument("--pareto", help="take the spread archs from this pareto.csv")
    p.add_argument("--samplers", nargs="+", choices=["strict_fair", "uniform"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment override, or ranking.<key>=value")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    t_start = time.perf_counter()
    ranking_sets = [s.split(".", 1)[1] for s in args.set if s.startswith("ranking.")]
    overrides = [s for s in args.set if not s.startswith("ranking.")]
    exp, cfg = load_config(args.config, overrides)
    if ranking_sets:
        from supernet.config import apply_overrides

        cfg = from_dict(RankingConfig, apply_overrides(asdict(cfg), ranking_sets), where="--set ranking")
    if args.samplers:
        cfg = RankingConfig(**{**asdict(cfg), "samplers": tuple(args.samplers)})
    # the experiment without its ranking section, as a file every stage can re-read with overrides
    out = Path(args.out)
    config = out / "experiment.yaml"
    base = load_yaml(args.config)
    base.pop("ranking", None)
    if isinstance(base.get("space"), str):
        base["space"] = str((Path(args.config).parent / base["space"]).resolve())
    atomic_write_text(config, yaml.safe_dump(base, sort_keys=False))

    archs = pick_archs(exp, cfg, args.pareto)
    print(f"{len(archs)} archs:\n  " + "\n  ".join(map(str, archs)), flush=True)
    t0 = time.perf_counter()
    supernets = train_supernets(exp, cfg, out, str(config), overrides)
    t1 = time.perf_counter()
    alone = standalone(exp, archs, out, str(config), overrides, cfg)
    t2 = time.perf_counter()
    shots = {s: one_shot(exp, archs, out / f"supernet_{s}", out / f"oneshot_{s}.json", cfg)
             for s in cfg.samplers}
    t3 = time.perf_counter()
    x = [m["ap"][cfg.metric] for m in alone]
    result = {
        "metric": cfg.metric, "config": asdict(cfg), "experiment": str(args.config),
        "supernets": supernets, "fairnas_imagenet_tau": FAIRNAS_TAU,
        "samplers": {s: correlations(x, [shots[s][str(a)][cfg.metric] for a in archs])
                     for s in cfg.samplers},
        "archs": [{"arch": str(a), "flops": exp.space.flops(a, exp.section("detector", DetectorConfig)
                                                            .input_size),
                   "standalone": xi, "one_shot": {s: shots[s][str(a)][cfg.metric] for s in cfg.samplers}}
                  for a, xi in zip(archs, x)],
        "seconds": {"supernets": t1 - t0, "standalone": t2 - t1, "one_shot": t3 - t2,
                    "total_this_invocation": time.perf_counter() - t_start},
    }
    previous = json.loads((out / "ranking.json").read_text()) if (out / "ranking.json").is_file() else {}
    # a resumed run only times what it still had to do: keep every invocation's times
    result["seconds_history"] = previous.get("seconds_history", []) + [result["seconds"]]
    atomic_write_text(out / "ranking.json", json.dumps(result, indent=1) + "\n")
    plot(result, cfg.metric, out / "ranking.png")
    for s, r in result["samplers"].items():
        print(f"{s}: Kendall tau {r['kendall_tau']:.3f} (p {r['kendall_p']:.3f}), "
              f"Spearman {r['spearman_rho']:.3f} (FairNAS ImageNet tau {FAIRNAS_TAU[s]})")
    print(f"written to {out}/ranking.json and ranking.png")
    return result


if __name__ == "__main__":
    main()
