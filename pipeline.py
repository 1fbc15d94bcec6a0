"""The whole facenas pipeline on one experiment; re-running resumes where it stopped.

    python pipeline.py                                   # default experiment, generated data, 12 ms
    python pipeline.py --latency-budget 6ms --data /data/widerface --retrain-epochs 20

1. train the supernet (train_supernet.py)       -> runs/<name>/supernet.pt
2. measure + calibrate the latency table         -> runs/<name>/latency.csv
3. search under the budget (evolve.py)           -> runs/<name>/search/
   confirm the front: the members that could be the pick and the baseline re-scored on more
   images, paired (evolution.confirm)           -> runs/<name>/search/confirmed.csv
4. retrain the pick (default: the fastest front member whose one-shot AP is at least the
   baseline's) and the baseline, same budget      -> runs/<name>/retrain/<arch hash>/
5. trust check: retrain a few more archs; does one-shot AP rank them as retraining does?
   pick vs baseline with a paired bootstrap      -> runs/<name>/retrain/{trust,comparison}.json
6. write the report (report.py)                  -> runs/<name>/search/report.html

Each stage's own resume is used: a finished stage is skipped, an interrupted one continues,
whenever it was killed (even before its first checkpoint). Ctrl-C stops with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "experiments" / "default.yaml"
CONFIRMED = "confirmed.csv"  # the front re-scored before the pick (confirm_stage)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--latency-budget", default="12ms")
    p.add_argument("--data", help="WIDER FACE root (default: the generated dataset)")
    p.add_argument("--retrain-epochs", type=int, default=4,
                   help="retraining budget of the pick, the baseline and the trust-check archs")
    p.add_argument("--pick", default="fastest-not-worse",
                   help="fastest-not-worse (fastest front member with one-shot AP >= the "
                        "baseline's; falls back to best-under the budget), best-under, or a row")
    p.add_argument("--trust-archs", type=int, default=3,
                   help="extra archs retrained to check the one-shot ranking (0: no check)")
    return p


def confirm_stage(exp, run: Path, search: Path) -> None:
    """Re-score the front members that could be the pick and the baseline on more images
    (`evolution.confirm`) -> search/confirmed.csv; skipped when it exists or confirm.archs = 0."""
    import pandas as pd

    from detection import retrain as rt
    from detection.engine import TrainConfig
    from detection.run import load_checkpoint
    from evolution.confirm import ConfirmConfig, confirm_front
    from supernet.io import atomic_write_csv, true_rows

    cfg = exp.section("confirm", ConfirmConfig)
    out = search / CONFIRMED
    if cfg.archs == 0:
        return
    pareto = rt.read_pareto(search / "pareto.csv")
    if out.is_file():  # done, unless the search has moved on since (a resumed, longer search)
        done = pd.read_csv(out)
        if set(done.loc[~true_rows(done, "baseline"), "arch"]) <= set(pareto["arch"]):
            return
    key = rt.search_ap_key(search, pareto)
    candidates = pd.read_csv(search / "candidates.csv")
    base = candidates[true_rows(candidates, "baseline")]
    if base.empty:
        print("note: the search has no baseline row: nothing to confirm the front against", flush=True)
        return
    checkpoint = load_checkpoint(run / "supernet.pt")
    table = confirm_front(checkpoint, exp, pareto, key, base.iloc[0].to_dict(), cfg,
                          device=exp.section("train", TrainConfig).device,
                          source=str(run / "supernet.pt"))
    atomic_write_csv(table, out)
    shown = table[["latency_ms", f"search_{key}", key, "diff", "diff_lo", "diff_hi"]]
    print(f"front confirmed on {int(table['images'].iloc[0])} images (last row: the baseline):\n"
          + shown.to_string(float_format=lambda v: f"{v:.3f}"), flush=True)


def choose_pick(search: Path, rule: str, budget: str) -> dict:
    """The arch to retrain from the search's front, by `rule`; records why in the result.

    ``fastest-not-worse`` compares the re-scored APs of search/confirmed.csv when the pipeline
    confirmed the front (`confirm_stage`), else the search's own estimates."""
    import pandas as pd

    from detection import retrain as rt
    from supernet.io import true_rows

    pareto = rt.read_pareto(search / "pareto.csv")
    key = rt.search_ap_key(search, pareto)
    base = rt.baseline_one_shot(search, key)
    if rule == "best-under":
        rule = f"best-under:{budget}"
    confirmed = search / CONFIRMED
    if rule == "fastest-not-worse" and confirmed.is_file():
        table = pd.read_csv(confirmed)
        is_base = true_rows(table, "baseline")
        base_row = table[is_base].iloc[0]
        try:
            row = rt.pick_from_pareto(table[~is_base], rule, key, float(base_row[key]))
        except ValueError as err:
            print(f"note: re-scored on {int(base_row['images'])} images, {err}; picking "
                  f"best-under:{budget} instead", flush=True)
        else:
            return {"arch": row["arch"], "rule": rule, "ap_key": key, "one_shot": float(row[key]),
                    "baseline_one_shot": float(base_row[key]), "predicted_ms": float(row["latency_ms"]),
                    "search_one_shot": float(row[f"search_{key}"]),
                    "confirmed": {"images": int(row["images"]), "diff": float(row["diff"]),
                                  "diff_lo": float(row["diff_lo"]), "diff_hi": float(row["diff_hi"])}}
        rule = f"best-under:{budget}"
    try:
        row = rt.pick_from_pareto(pareto, rule, key, base)
    except ValueError as err:
        if rule != "fastest-not-worse":
            raise
        print(f"note: {err}; picking best-under:{budget} instead", flush=True)
        rule = f"best-under:{budget}"
        row = rt.pick_from_pareto(pareto, rule, key, base)
    return {"arch": row["arch"], "rule": rule, "ap_key": key, "one_shot": float(row[key]),
            "baseline_one_shot": base, "predicted_ms": float(row["latency_ms"])}


def trust_stage(exp, run: Path, search: Path, picked: dict, args, retrain_args: list[str]) -> None:
    """Retrain `--trust-archs` more archs, then write retrain/trust.json (one-shot vs retrained
    ranking) and retrain/comparison.json (pick vs baseline, paired bootstrap over images)."""
    import pandas as pd

    import retrain
    from detection import retrain as rt
    from evolution.trust import compare_retrained, ranking_trust, trust_archs
    from supernet.io import atomic_write_text

    pareto = rt.read_pareto(search / "pareto.csv")
    candidates = pd.read_csv(search / "candidates.csv")
    key = picked["ap_key"]
    done = {picked["arch"], str(exp.space.baseline)}
    extra = trust_archs(candidates, pareto, key, done, k_front=(args.trust_archs + 1) // 2,
                        k_spread=args.trust_archs // 2) if args.trust_archs > 0 else []
    for arch in extra:
        retrain.main(["--arch", arch, *retrain_args])
    one_shot = dict(zip(candidates["arch"], candidates[key]))
    rows = []
    for arch in [picked["arch"], str(exp.space.baseline), *extra]:
        metrics = json.loads((run / "retrain" / rt.arch_hash(arch) / "metrics.json").read_text())
        rows.append({"arch": arch, "one_shot": float(one_shot[arch]),
                     "retrained": float(metrics["ap"][key]),
                     "measured_ms": float(metrics["latency"]["measured_ms"])})
    result = {"ap_key": key, "retrain_epochs": args.retrain_epochs, "pick": picked,
              **ranking_trust(rows)}
    atomic_write_text(run / "retrain" / "trust.json", json.dumps(result, indent=1) + "\n")
    print(f"trust check ({len(rows)} archs): {result['verdict']}"
          + (f", Kendall tau {result['tau']:.2f} [{result['tau_lo']:.2f}, {result['tau_hi']:.2f}]"
             if "tau" in result else "") + (f"\nwarning: {result['advice']}" if result["advice"] else ""))
    cmp = compare_retrained(exp, run / "retrain" / rt.arch_hash(picked["arch"]),
                            run / "retrain" / rt.arch_hash(exp.space.baseline))
    cmp["pick_rule"] = picked
    atomic_write_text(run / "retrain" / "comparison.json", json.dumps(cmp, indent=1) + "\n")
    print(cmp["verdict"], flush=True)


def _stage(name: str, fn, timings: dict) -> None:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    fn()
    timings[name] = round(time.perf_counter() - start, 1)
    print(f"== {name}: {timings[name]} s", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    import evolve
    import report
    import retrain
    import train_supernet
    from latency.measure import main as measure
    from latency.table import read_meta
    from supernet.experiment import Experiment
    from supernet.lock import LockError, hold_lock

    # with --data, later stages score on the user's val split, as retraining does
    exp = Experiment.from_yaml(args.config, [f"data.root={args.data}"] if args.data else None)
    run = Path("runs") / exp.name
    data = ["--data", args.data] if args.data else []
    common = ["--config", args.config, *data]
    table = run / "latency.csv"
    search = run / "search"
    timings: dict[str, float] = {}

    def train() -> None:  # --resume also continues a run killed before its first checkpoint
        train_supernet.main([*common, "--out", str(run), "--resume"])

    def latency() -> None:
        measure(["--config", args.config, "--out", str(table)])  # resumes measured entries
        if not read_meta(table).get("calibration", {}).get("fitted"):
            from latency.calibrate import main as calibrate

            calibrate(["--table", str(table), "--config", args.config])
        if not Path(f"{table}.validation.json").is_file():  # a few subnets timed end to end
            from latency.validate import main as validate

            validate(["--table", str(table), "--config", args.config, "--n", "8"])

    def search_() -> None:  # --resume also reuses a candidates.csv written before checkpoint.json
        evolve.main([*common, "--latency-budget", args.latency_budget, "--out", str(search),
                     "--resume"])

    def confirm() -> None:
        confirm_stage(exp, run, search)

    retrain_args = ["--epochs", str(args.retrain_epochs), "--config", args.config, *data, "--resume"]
    picked: dict = {}

    def retrain_() -> None:  # the pick and the baseline, same budget
        picked.update(choose_pick(search, args.pick, args.latency_budget))
        print(f"pick ({picked['rule']}): {picked['arch']}", flush=True)
        retrain.main(["--arch", picked["arch"], *retrain_args])
        retrain.main(["--arch", "baseline", *retrain_args])

    def trust() -> None:  # more archs retrained: does one-shot AP rank them as retraining does?
        trust_stage(exp, run, search, picked, args, retrain_args)

    try:
        with hold_lock(run):  # one pipeline per run folder (its stages take the same lock again)
            _stage("train supernet", train, timings)
            _stage("latency table", latency, timings)
            _stage("search", search_, timings)
            _stage("confirm front", confirm, timings)
            _stage("retrain pick and baseline", retrain_, timings)
            _stage("trust check", trust, timings)
            _stage("report", lambda: report.main([str(search)]), timings)
    except LockError as err:
        sys.exit(f"error: {err}")
    timings["total"] = round(sum(timings.values()), 1)
    print(json.dumps({"seconds": timings, "report": str(search / "report.html")}, indent=1))
    return timings


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every artifact is written atomically: the state on disk resumes
        print("interrupted: run the same python pipeline.py command again to resume",
              file=sys.stderr)
        sys.exit(130)
