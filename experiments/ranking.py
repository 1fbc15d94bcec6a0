"""Does a supernet's one-shot score rank subnets like stand-alone training? With intervals.

    python experiments/ranking.py --config experiments/ranking.yaml --out runs/ranking
    python experiments/ranking.py --variants strict_fair uniform --set ranking.jobs=2
    python experiments/ranking.py --set ranking.k=30 --set train.seed=1 --out runs/ranking-s1

The config is an experiment YAML plus a ``ranking:`` section (`RankingConfig`). Stages, each
resumable (re-running the same command continues; finished work is read back):

1. archs (``ranking.seed``): the space's smallest and largest, ``k_spread`` spread evenly over
   MACs (`latency.calibrate.spread_archs`), the rest uniform samples; each timed end to end with
   onnxruntime once (`latency.calibrate.measure_archs`) -> ``latency.json``;
2. baseline rankers: backbone params, MACs, SynFlow on the fresh stand-alone detector
   (`evolution.zero_cost.synflow`);
3. training, ``jobs`` processes at a time: one supernet per ``ranking.variants`` entry (a list of
   ``key=value`` experiment overrides; equal compute is the config's job, a >5% gap in
   forward/backward passes is reported) -> ``supernet_<variant>/``, and every arch stand-alone
   from scratch for ``retrain_epochs`` at seed ``train.seed`` (``k_repeat`` of them, spread over
   MACs, again at ``train.seed + 1``) -> ``standalone/seed<s>/<arch hash>/metrics.json``;
4. one-shot scores per variant (`evolution.evaluator.SupernetEvaluator`: inherited weights, BN
   recalibrated, AP and held-out loss on the same ``eval_images`` val images as the stand-alone
   AP) -> ``oneshot_<variant>.json``;
5. statistics (`evolution.rank_stats`): the truth is seed-``train.seed`` stand-alone ``metric``
   over all K archs; per ranker Kendall tau-b / Spearman rho with bootstrap intervals, paired
   bootstrap against the baselines, the seed-to-seed noise ceiling, regret of picking under the
   median latency -> ``ranking.csv``, ``ranking.json``, ``ranking.md``, ``ranking.png``.

Target (issue 11): the best variant reaches tau >= 0.8 with interval lower bound >= 0.65, beats
every baseline ranker (paired bootstrap share <= 0.05) and reaches >= 0.9 x the noise ceiling.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from detection.config import DetectorConfig
from detection.data import DataConfig, resolve_root
from detection.loop import TrainConfig
from detection.model import build_detector
from stages.retrain import retrain_model
from stages.run import arch_hash
from core.checkpoint import load_checkpoint
from stages.trainer import train
from evolution.evaluator import EvalConfig, SupernetEvaluator
from evolution.rank_stats import budget_regret, noise_ceiling, paired_tau_difference, rank_agreement
from evolution.zero_cost import synflow
from latency.calibrate import measure_archs, spread_archs
from latency.config import LatencyConfig
from core.config import apply_overrides, from_dict, load_yaml
from core.experiment import Experiment
from core.io import atomic_write_bytes, atomic_write_csv, atomic_write_text
from core.space import Arch

BASELINES = ("params", "macs", "synflow")
METRICS = ("ap_easy", "ap_medium", "ap_hard", "ap_mean", "ap_min50")
TARGET = {"tau": 0.8, "tau_lo": 0.65, "share_le_0": 0.05, "of_ceiling": 0.9}
PASSES_TOLERANCE = 0.05  # relative gap in forward/backward passes that counts as unequal compute


@dataclass(frozen=True)
class RankingConfig:
    k: int = 20  # archs trained stand-alone
    k_spread: int = 8  # of which spread over MACs besides smallest and largest; the rest uniform
    k_repeat: int | None = None  # archs trained again at train.seed + 1 (None: k // 2)
    seed: int = 0  # arch sample, BN-recalibration batches, bootstrap resamples
    retrain_epochs: int = 15  # stand-alone training budget (train.epochs), the same for every arch
    eval_images: int = 200  # val images for one-shot and stand-alone scores (the same first N)
    bn_batches: int = 4  # BN recalibration batches (of 16) per one-shot evaluation
    metric: str = "ap_mean"  # ap_easy | ap_medium | ap_hard | ap_mean | ap_min50
    budget_quantile: float = 0.5  # latency budget for the regret: this quantile of the K latencies
    n_boot: int = 2000  # bootstrap resamples
    jobs: int = 2  # trainings run in parallel processes
    pool_size: int = 2000  # candidate archs for the MACs spread
    variants: dict[str, list[str]] = field(default_factory=lambda: {
        "strict_fair": ["train.sampler=strict_fair"], "uniform": ["train.sampler=uniform"]})

    def __post_init__(self) -> None:
        if self.k < 2 or not 0 <= self.k_spread <= self.k - 2:
            raise ValueError(f"ranking: need k >= 2 and 0 <= k_spread <= k - 2 (got k {self.k}, "
                             f"k_spread {self.k_spread})")
        if self.k_repeat is not None and not 0 <= self.k_repeat <= self.k:
            raise ValueError(f"ranking.k_repeat must be in 0..k, got {self.k_repeat}")
        if self.jobs < 1 or self.n_boot < 1 or self.eval_images < 1 or self.retrain_epochs < 1:
            raise ValueError("ranking: jobs, n_boot, eval_images and retrain_epochs must be >= 1")
        if self.metric not in METRICS:
            raise ValueError(f"ranking.metric must be one of {METRICS}, got {self.metric!r}")
        if not 0 <= self.budget_quantile <= 1:
            raise ValueError(f"ranking.budget_quantile must be in [0, 1], got {self.budget_quantile}")
        if not self.variants:
            raise ValueError("ranking.variants: give at least one supernet variant")
        for name, sets in self.variants.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
                raise ValueError(f"ranking.variants: {name!r} is not a usable folder name")
            if not isinstance(sets, (list, tuple)) or not all(isinstance(s, str) and "=" in s
                                                              for s in sets):
                raise ValueError(f"ranking.variants.{name}: expected a list of key=value strings")

    @property
    def repeats(self) -> int:
        return self.k // 2 if self.k_repeat is None else self.k_repeat


def load_config(path: str | Path, overrides: list[str]) -> tuple[Experiment, RankingConfig]:
    """The experiment (`overrides` that are not ``ranking.*``) and its ranking settings."""
    data = load_yaml(path)
    section = data.pop("ranking", None) or {}
    ranking_sets = [s.split(".", 1)[1] for s in overrides if s.startswith("ranking.")]
    cfg = from_dict(RankingConfig, apply_overrides(section, ranking_sets, where="--set ranking"),
                    where=f"{path}:ranking")
    exp = Experiment.from_dict(data, base_dir=Path(path).parent, source=str(path),
                               overrides=[s for s in overrides if not s.startswith("ranking.")])
    return exp, cfg


# -- stage 1-2: archs, latency, baseline rankers --------------------------------------------------
def pick_archs(exp: Experiment, cfg: RankingConfig) -> list[Arch]:
    """Smallest, largest, `k_spread` spread over MACs, then distinct uniform samples up to `k`."""
    space, size = exp.space, exp.section("detector", DetectorConfig).input_size
    macs = lambda archs: np.array([space.macs(a, size) for a in archs], dtype=float)  # noqa: E731
    archs = spread_archs(space, macs, cfg.k_spread + 2, cfg.seed, cfg.pool_size, extremes=True)
    rng = np.random.default_rng(cfg.seed)
    while len(archs) < cfg.k:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    return archs


def repeat_indices(macs: np.ndarray, n: int) -> list[int]:
    """`n` arch indices evenly spaced in MACs order (both ends included): the seed-repeat subset."""
    order = np.argsort(macs, kind="stable")
    if n <= 0:
        return []
    positions = np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))
    return sorted(int(order[p]) for p in positions)


def measure_latency(exp: Experiment, archs: list[Arch], path: Path) -> np.ndarray:
    """End-to-end onnxruntime median ms per arch, cached in `path` (only new archs are timed)."""
    lat = exp.section("latency", LatencyConfig)
    cache = json.loads(path.read_text()) if path.is_file() else {}
    if cache.get("latency") != asdict(lat):  # other timing settings: time everything again
        cache = {"latency": asdict(lat), "archs": {}}
    todo = [a for a in archs if str(a) not in cache["archs"]]
    if todo:
        det = exp.section("detector", DetectorConfig)
        for arch, timing in zip(todo, measure_archs(exp.space, todo, det, lat)):
            cache["archs"][str(arch)] = timing
        atomic_write_text(path, json.dumps(cache, indent=1) + "\n")
    return np.array([cache["archs"][str(a)]["median_ms"] for a in archs])


def baseline_scores(exp: Experiment, archs: list[Arch]) -> dict[str, np.ndarray]:
    """Higher-is-better baseline rankers: backbone params, MACs, SynFlow at the eval resolution
    on the detector initialised as stand-alone training initialises it (seed ``train.seed``)."""
    det = exp.section("detector", DetectorConfig)
    seed = exp.section("train", TrainConfig).seed
    syn = []
    for arch in archs:
        torch.manual_seed(seed)
        syn.append(synflow(build_detector(exp.space, arch, det), det.input_size))
    return {"params": np.array([exp.space.params(a) for a in archs], dtype=float),
            "macs": np.array([exp.space.macs(a, det.input_size) for a in archs], dtype=float),
            "synflow": np.array(syn)}


# -- stage 3: training jobs -----------------------------------------------------------------------
def _init_worker() -> None:
    torch.set_num_threads(1)  # `jobs` single-threaded trainings share the cores


def run_job(job: dict) -> dict:
    """Train one supernet (``arch`` None) or one stand-alone arch; returns the job with seconds."""
    exp = Experiment.from_yaml(job["config"], job["overrides"])
    t0 = time.perf_counter()
    if job["arch"] is None:
        summary = train(exp, Path(job["out"]), resume=True, progress=False)
        job = {**job, "steps": summary["steps"], "weights_sha256": summary["weights_sha256"]}
    else:
        retrain_model(exp, exp.space.parse(job["arch"]), job["out"], resume=True, progress=False,
                export=False)
    return {**job, "seconds": time.perf_counter() - t0}


def _supernet_done(job: dict) -> bool:
    """Finished by an earlier invocation with the same experiment and overrides."""
    path = Path(job["out"]) / "ranking_job.json"
    if not path.is_file():
        return False
    marker = json.loads(path.read_text())
    return all(marker.get(k) == job[k] for k in ("overrides", "experiment_sha1"))


def training_jobs(exp: Experiment, cfg: RankingConfig, archs: list[Arch], repeat: list[int],
                  variants: list[str], config: Path, overrides: list[str], out: Path) -> list[dict]:
    """Every training still to do, longest first (supernets, then archs by decreasing MACs)."""
    seed = exp.section("train", TrainConfig).seed
    size = exp.section("detector", DetectorConfig).input_size
    digest = hashlib.sha1(config.read_bytes()).hexdigest()
    jobs = [{"label": f"supernet {v}", "arch": None, "config": str(config), "experiment_sha1": digest,
             "overrides": overrides + list(cfg.variants[v]), "out": str(out / f"supernet_{v}")}
            for v in variants]
    jobs = [j for j in jobs if not _supernet_done(j)]
    standalone = [(i, s) for s in (seed, seed + 1) for i in range(len(archs))
                  if s == seed or i in repeat]
    standalone.sort(key=lambda item: -exp.space.macs(archs[item[0]], size))
    for i, s in standalone:
        folder = standalone_dir(out, s, archs[i])
        if not (folder / "metrics.json").is_file():
            jobs.append({"label": f"stand-alone seed {s} #{i}", "arch": str(archs[i]),
                         "config": str(config), "out": str(folder), "overrides": overrides + [
                             f"train.epochs={cfg.retrain_epochs}", f"train.seed={s}",
                             f"retrain.eval_images={cfg.eval_images}"]})
    return jobs


def standalone_dir(out: Path, seed: int, arch: Arch) -> Path:
    return out / "standalone" / f"seed{seed}" / arch_hash(arch)


def run_jobs(jobs: list[dict], n_jobs: int) -> list[dict]:
    """Run `jobs` in `n_jobs` spawned processes (in this process when 1); a progress bar counts
    finished jobs. A failure cancels the jobs not yet started and is re-raised."""
    done = []
    with tqdm(total=len(jobs), desc="training", unit="job", disable=not jobs) as bar:
        if n_jobs == 1 or len(jobs) <= 1:
            for job in jobs:
                done.append(_finish(run_job(job), bar))
            return done
        pool = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker)
        try:
            futures = [pool.submit(run_job, job) for job in jobs]
            for future in as_completed(futures):
                done.append(_finish(future.result(), bar))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    return done


def _finish(result: dict, bar: tqdm) -> dict:
    if result["arch"] is None:  # the marker that lets a re-run skip this supernet
        atomic_write_text(Path(result["out"]) / "ranking_job.json", json.dumps(result, indent=1) + "\n")
    bar.update(1)
    bar.write(f"{result['label']}: {result['seconds']:.0f} s")
    return result


def variant_compute(folder: Path) -> dict:
    """Optimizer steps, forward/backward passes and summed step seconds from a run's log.csv."""
    log = pd.read_csv(folder / "log.csv")
    marker = json.loads((folder / "ranking_job.json").read_text())
    return {"steps": int(len(log)), "passes": int(log["paths"].sum()),
            "train_seconds": float(log["seconds"].sum()),
            "final_loss": float(log["loss"].iloc[-max(1, len(log) // 10):].mean()),
            "wall_seconds": marker["seconds"],  # of the invocation that finished the training
            "weights_sha256": marker["weights_sha256"], "overrides": marker["overrides"]}


# -- stage 4: one-shot scores ---------------------------------------------------------------------
def one_shot(exp: Experiment, archs: list[Arch], folder: Path, path: Path, cfg: RankingConfig,
             weights: str) -> tuple[dict[str, dict], int]:
    """{arch: scores} from the supernet in `folder`, cached in `path` (valid for these weights
    and evaluation settings; saved after every arch). Returns the scores and how many were new."""
    key = {"weights_sha256": weights, "eval_images": cfg.eval_images, "bn_batches": cfg.bn_batches,
           "seed": cfg.seed}
    cache = json.loads(path.read_text()) if path.is_file() else {}
    scores = cache.get("scores", {}) if cache.get("key") == key else {}
    todo = [a for a in archs if str(a) not in scores]
    if todo:
        ckpt = folder / "supernet.pt"
        evaluator = SupernetEvaluator.from_checkpoint(
            load_checkpoint(ckpt), exp, EvalConfig(eval_images=cfg.eval_images,
                                                   bn_batches=cfg.bn_batches, batch_size=16),
            source=str(ckpt))
        for arch in tqdm(todo, desc=f"one-shot {folder.name}", unit="arch"):
            result = evaluator.evaluate_one(arch)
            scores[str(arch)] = {**result, "loss": float(result.get("loss", float("nan")))}
            atomic_write_text(path, json.dumps({"key": key, "scores": scores}, indent=1) + "\n")
    return scores, len(todo)


# -- stage 5: statistics and outputs --------------------------------------------------------------
def rankers(frame: pd.DataFrame, variants: list[str]) -> dict[str, np.ndarray]:
    """name -> higher-is-better score per arch: one-shot AP and -loss per variant, baselines."""
    out = {}
    for v in variants:
        out[f"{v}/ap"] = frame[f"oneshot_{v}_ap"].to_numpy(float)
        out[f"{v}/loss"] = -frame[f"oneshot_{v}_loss"].to_numpy(float)
    for b in BASELINES:
        out[b] = frame[b].to_numpy(float)
    return out


def analyse(frame: pd.DataFrame, variants: list[str], repeat: list[int], cfg: RankingConfig,
            compute: dict) -> dict:
    """Every ranker's agreement with the truth, the ceiling, paired tests, regrets, the verdict."""
    boot = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    truth = frame["standalone_seed0"].to_numpy(float)
    latency = frame["latency_ms"].to_numpy(float)
    budget = float(np.quantile(latency, cfg.budget_quantile))
    seed1 = frame["standalone_seed1"].to_numpy(float)
    truth_mean = (truth[repeat] + seed1[repeat]) / 2
    ceiling = (noise_ceiling(truth[repeat], seed1[repeat], **boot) if len(repeat) >= 2
               else rank_agreement([], [], **boot))
    scores = rankers(frame, variants)
    base_tau = {b: rank_agreement(truth, scores[b], **boot)["tau"] for b in BASELINES}
    finite = {b: t for b, t in base_tau.items() if np.isfinite(t)}
    best_baseline = max(finite, key=finite.get) if finite else BASELINES[0]
    result = {}
    for name, score in scores.items():
        r = {**rank_agreement(truth, score, **boot),
             "repeat_subset": rank_agreement(truth_mean, score[repeat], **boot),
             "regret": budget_regret(truth, score, latency, budget)}
        r["tau_over_ceiling"] = r["tau"] / ceiling["tau"] if ceiling["tau"] else float("nan")
        if name not in BASELINES:
            r["variant"], r["score"] = name.split("/")
            r["compute"] = compute[r["variant"]]
            r["vs_baseline"] = {b: paired_tau_difference(truth, score, scores[b], **boot)
                                for b in BASELINES}
            r["vs_best_baseline"] = {"baseline": best_baseline, **r["vs_baseline"][best_baseline]}
        result[name] = r
    # columns standalone_seed0 / standalone_seed1 hold train.seed and train.seed + 1
    return {"truth": f"stand-alone {cfg.metric} at the first seed (train.seed)", "budget_ms": budget,
            "truth_distinct": int(np.unique(truth[np.isfinite(truth)]).size),
            "ceiling": {**ceiling, "archs": repeat}, "best_baseline": best_baseline,
            "rankers": result, "verdict": verdict(result, ceiling)}


def verdict(result: dict, ceiling: dict) -> dict:
    """Does the best one-shot ranker (highest tau) meet the issue's target on every count?"""
    oneshot = {n: r for n, r in result.items() if "variant" in r and np.isfinite(r["tau"])}
    if not oneshot:
        return {"best": None, "holds": False, "checks": {}}
    best = max(oneshot, key=lambda n: oneshot[n]["tau"])
    r = oneshot[best]
    checks = {
        f"tau >= {TARGET['tau']}": bool(r["tau"] >= TARGET["tau"]),
        f"interval lower bound >= {TARGET['tau_lo']}": bool(r["tau_lo"] >= TARGET["tau_lo"]),
        f"above every baseline (share <= {TARGET['share_le_0']})": all(
            p["share_le_0"] <= TARGET["share_le_0"] for p in r["vs_baseline"].values()),
        f">= {TARGET['of_ceiling']} x ceiling": bool(np.isfinite(ceiling["tau"]) and r["tau"]
                                                     >= TARGET["of_ceiling"] * ceiling["tau"]),
    }
    return {"best": best, "holds": all(checks.values()), "checks": checks}


def markdown(stats: dict, cfg: RankingConfig, k: int) -> str:
    """The ablation table (one row per variant x score, then the baselines), ceiling, verdict."""
    def num(x, fmt=".3f"):
        return "n/a" if x is None or not np.isfinite(x) else format(x, fmt)

    c = stats["ceiling"]
    lines = [f"Truth: {stats['truth']} over K = {k} archs. Noise ceiling (seed vs seed, "
             f"{len(c['archs'])} archs): tau {num(c['tau'])} [{num(c['tau_lo'])}, {num(c['tau_hi'])}]. "
             f"Regret: picking under {stats['budget_ms']:.3f} ms (latency quantile "
             f"{cfg.budget_quantile:g}). Intervals: 95% bootstrap over archs, {cfg.n_boot} resamples.",
             "", "| ranker | tau [95% CI] | rho | tau/ceiling | tau vs seed mean (repeat) "
             f"| P(not above {stats['best_baseline']}) | top-1 regret | top-3 regret | passes "
             "| train s |", "|---" * 10 + "|"]
    for name, r in stats["rankers"].items():
        comp = r.get("compute", {})
        vs = r.get("vs_best_baseline", {}).get("share_le_0")
        lines.append(
            f"| {name} | {num(r['tau'])} [{num(r['tau_lo'])}, {num(r['tau_hi'])}] | {num(r['rho'])} "
            f"| {num(r['tau_over_ceiling'], '.2f')} | {num(r['repeat_subset']['tau'])} "
            f"| {num(vs, '.3f') if vs is not None else '-'} | {num(r['regret']['top1'], '.4f')} "
            f"| {num(r['regret']['top3'], '.4f')} | {comp.get('passes', '-')} "
            f"| {num(comp['train_seconds'], '.0f') if comp else '-'} |")
    if stats["truth_distinct"] < 2:
        lines += ["", f"The stand-alone {cfg.metric} is the same for every arch: no ranking to "
                  "agree with (train them longer: ranking.retrain_epochs)."]
    v = stats["verdict"]
    if v["best"] is None:
        lines += ["", "**Verdict:** no one-shot ranker has a defined tau."]
    else:
        failed = [name for name, ok in v["checks"].items() if not ok]
        lines += ["", f"**Verdict ({v['best']}):** the target "
                  + ("holds." if v["holds"] else "does not hold: fails " + "; ".join(failed) + ".")]
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, stats: dict, metric: str, path: Path) -> None:
    """Left: stand-alone vs one-shot for the best variant (arch indices); right: tau per ranker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    best = stats["verdict"]["best"]
    if best is not None:
        variant, score = best.split("/")
        y = frame[f"oneshot_{variant}_{score}"].to_numpy(float)
        x = frame["standalone_seed0"].to_numpy(float)
        left.scatter(x, y, color="tab:blue")
        for i, (xi, yi) in enumerate(zip(x, y)):
            left.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=8)
        r = stats["rankers"][best]
        left.set(xlabel=f"stand-alone {metric} (seed 0)",
                 ylabel=f"one-shot {'AP' if score == 'ap' else 'loss (lower is better)'}",
                 title=f"{best}: tau {r['tau']:.3f} [{r['tau_lo']:.3f}, {r['tau_hi']:.3f}]")
        left.grid(alpha=0.3)
    names = list(stats["rankers"])
    tau = np.array([stats["rankers"][n]["tau"] for n in names], dtype=float)
    lo = np.array([stats["rankers"][n]["tau_lo"] for n in names], dtype=float)
    hi = np.array([stats["rankers"][n]["tau_hi"] for n in names], dtype=float)
    err = np.nan_to_num(np.vstack([tau - lo, hi - tau]))
    colors = ["tab:gray" if n in BASELINES else "tab:blue" for n in names]
    right.barh(range(len(names)), np.nan_to_num(tau), xerr=err, color=colors, capsize=3)
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    ceiling = stats["ceiling"]["tau"]
    if ceiling is not None and np.isfinite(ceiling):
        right.axvline(ceiling, color="tab:red", ls="--", label=f"noise ceiling {ceiling:.3f}")
        right.legend(loc="lower right", fontsize=8)
    right.set(xlabel="Kendall tau vs stand-alone (95% bootstrap CI)", xlim=(-1, 1))
    right.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _standalone_metric(out: Path, seed: int, arch: Arch, metric: str) -> float:
    path = standalone_dir(out, seed, arch) / "metrics.json"
    return float(json.loads(path.read_text())["ap"][metric]) if path.is_file() else float("nan")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(Path(__file__).parent / "ranking.yaml"))
    p.add_argument("--out", default="runs/ranking")
    p.add_argument("--variants", nargs="+", help="run only these ranking.variants")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment override, or ranking.<key>=value")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    t_start = time.perf_counter()
    exp, cfg = load_config(args.config, args.set)
    overrides = [s for s in args.set if not s.startswith("ranking.")]
    variants = list(args.variants or cfg.variants)
    unknown = [v for v in variants if v not in cfg.variants]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown} (ranking.variants: {', '.join(cfg.variants)})")
    data_cfg = exp.section("data", DataConfig)
    if data_cfg.root is None and data_cfg.synth_val_images < cfg.eval_images:
        raise SystemExit(f"ranking.eval_images {cfg.eval_images} > data.synth_val_images "
                         f"{data_cfg.synth_val_images}: raise data.synth_val_images")
    resolve_root(data_cfg)  # generate the dataset once, before parallel jobs would each build it
    train_cfg = exp.section("train", TrainConfig)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    out = Path(args.out)
    # the experiment without its ranking section, as a file every job re-reads with its overrides
    config = out / "experiment.yaml"
    base = load_yaml(args.config)
    base.pop("ranking", None)
    if isinstance(base.get("space"), str):
        base["space"] = str((Path(args.config).parent / base["space"]).resolve())
    atomic_write_text(config, yaml.safe_dump(base, sort_keys=False))
    seconds, clock = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = time.perf_counter() - clock
        clock = time.perf_counter()

    archs = pick_archs(exp, cfg)
    print(f"{len(archs)} archs:\n" + "\n".join(f"  {i:2d} {a}" for i, a in enumerate(archs)), flush=True)
    lap("archs")
    latency = measure_latency(exp, archs, out / "latency.json")
    lap("latency")
    base_scores = baseline_scores(exp, archs)
    repeat = repeat_indices(base_scores["macs"], cfg.repeats)
    lap("baselines")
    jobs = training_jobs(exp, cfg, archs, repeat, variants, config, overrides, out)
    finished = run_jobs(jobs, cfg.jobs)
    lap("training")
    compute = {v: variant_compute(out / f"supernet_{v}") for v in variants}
    ref = compute[variants[0]]["passes"]
    warnings = [f"variant {v}: {c['passes']} forward/backward passes vs {ref} for {variants[0]} "
                "(unequal compute)" for v, c in compute.items()
                if abs(c["passes"] - ref) > PASSES_TOLERANCE * ref]
    for w in warnings:
        print(f"warning: {w}", flush=True)
    shots, n_new = {}, 0
    for v in variants:
        run = Experiment.from_yaml(config, overrides + list(cfg.variants[v]))
        shots[v], n = one_shot(run, archs, out / f"supernet_{v}", out / f"oneshot_{v}.json", cfg,
                               compute[v]["weights_sha256"])
        n_new += n
    lap("one_shot")

    seed = train_cfg.seed
    frame = pd.DataFrame({"index": range(len(archs)), "arch": [str(a) for a in archs],
                          "macs": base_scores["macs"].astype(int),
                          "params": base_scores["params"].astype(int), "latency_ms": latency,
                          "synflow": base_scores["synflow"],
                          "standalone_seed0": [_standalone_metric(out, seed, a, cfg.metric) for a in archs],
                          "standalone_seed1": [_standalone_metric(out, seed + 1, a, cfg.metric)
                                               if i in repeat else float("nan")
                                               for i, a in enumerate(archs)]})
    for v in variants:
        frame[f"oneshot_{v}_ap"] = [shots[v][str(a)][cfg.metric] for a in archs]
        frame[f"oneshot_{v}_loss"] = [shots[v][str(a)]["loss"] for a in archs]
    stats = analyse(frame, variants, repeat, cfg, compute)
    lap("stats")
    table = markdown(stats, cfg, len(archs))
    seconds["total_this_invocation"] = time.perf_counter() - t_start
    seconds["training_jobs"] = {kind: sum(j["seconds"] for j in finished if (j["arch"] is None) == sup)
                                for kind, sup in (("supernet", True), ("standalone", False))}
    previous = json.loads((out / "ranking.json").read_text()) if (out / "ranking.json").is_file() else {}
    result = {"config": {"ranking": asdict(cfg), "experiment": str(args.config), "overrides": args.set,
                         "variants_run": variants, "train_seed": seed},
              **stats, "compute": compute, "warnings": warnings,
              "jobs_run": [j["label"] for j in finished], "one_shot_evaluated": n_new,
              "archs": frame.to_dict(orient="records"), "seconds": seconds,
              # a resumed run only times what it still had to do: keep every invocation's times
              "seconds_history": previous.get("seconds_history", []) + [seconds]}
    atomic_write_csv(frame, out / "ranking.csv")
    atomic_write_text(out / "ranking.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "ranking.md", table)
    plot(frame, stats, cfg.metric, out / "ranking.png")
    print(table + f"written to {out}/ranking.{{csv,json,md,png}}", flush=True)
    return result


if __name__ == "__main__":
    main()
