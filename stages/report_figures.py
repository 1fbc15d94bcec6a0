"""The search report's figures, each a PNG (bytes) drawn from `stages.report_inputs.Inputs`, or
None when its inputs are missing."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.report_inputs import SETTINGS, Inputs  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def model_label(metrics: dict) -> str:
    return "baseline" if metrics.get("baseline") else metrics.get("arch_hash", metrics["arch"][:8])


def one_shot_ap(inp: Inputs, metrics: dict) -> float | None:
    """The search's AP estimate of a retrained arch: from its metrics, else candidates.csv."""
    shot = (metrics.get("one_shot") or {}).get(inp.ap_key)
    if shot is None and inp.candidates is not None and inp.ap_key in inp.candidates:
        hit = inp.candidates[inp.candidates["arch"] == metrics["arch"]]
        shot = float(hit[inp.ap_key].iloc[0]) if len(hit) else None
    return shot


def plot_pareto_retrained(inp: Inputs) -> bytes | None:
    """AP vs latency: candidates, front, baseline (one-shot, predicted latency) and each retrained
    model as an arrow from (predicted, one-shot AP) to (measured, retrained AP); + a latency panel."""
    if inp.candidates is None and not inp.retrained:
        return None
    key, budget = inp.ap_key, (inp.search.get("resolved") or {}).get("budget_ms")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    if inp.candidates is not None and key in inp.candidates:
        searched = inp.candidates[inp.candidates["generation"] >= 0]
        ax.scatter(searched["latency_ms"], searched[key], s=10, color="0.7", label="candidates")
    if inp.pareto is not None and len(inp.pareto) and key in inp.pareto:
        front = inp.pareto.sort_values("latency_ms")
        ax.step(front["latency_ms"], np.maximum.accumulate(front[key].to_numpy(float)), where="post",
                color="tab:red", lw=1.5, label=f"front, one-shot ({len(front)})")
        ax.scatter(front["latency_ms"], front[key], s=24, facecolors="none", edgecolors="tab:red")
    base = inp.baseline
    if base is not None and key in base:
        ax.scatter([base["latency_ms"]], [base[key]], marker="*", s=200, color="tab:orange",
                   edgecolors="k", zorder=5, label="baseline, one-shot")
    xs = [x for c in ax.collections for x in np.asarray(c.get_offsets())[:, 0]]
    xs += [m["latency"][k] for m in inp.retrained for k in ("measured_ms", "predicted_ms")
           if k in m["latency"]]
    x_max = max(xs) * 1.15 if xs else None
    if budget and x_max and budget > 1.5 * x_max:  # off scale: say so rather than squash the data
        ax.plot([], [], " ", label=f"budget {budget:g} ms (off scale)")
    elif budget:
        ax.axvline(budget, color="k", ls="--", lw=1, label=f"budget {budget:g} ms")
        x_max = max(x_max or 0, budget * 1.05)
    if x_max:
        ax.set_xlim(0, x_max)
    for i, m in enumerate(inp.retrained):  # after the x range is set: arrows do not count
        lat, ap = m["latency"], m["ap"].get(key, np.nan)
        shot = one_shot_ap(inp, m)
        color = plt.cm.tab10(i % 10)
        ax.scatter([lat["measured_ms"]], [ap], marker="D", s=46, color=color, edgecolors="k", zorder=6,
                   label=f"{model_label(m)} retrained (measured ms)")
        if shot is not None and "predicted_ms" in lat:
            ax.annotate("", (lat["measured_ms"], ap), (lat["predicted_ms"], shot),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
    ax.set(xlabel="latency (ms): predicted for the search, measured for retrained",
           ylabel=f"{key} (AP)", title="Pareto front and retrained subnets")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    pairs = [(m["latency"]["predicted_ms"], m["latency"]["measured_ms"], model_label(m))
             for m in inp.retrained if "predicted_ms" in m["latency"]]
    if pairs:
        p, q, labels = map(list, zip(*pairs))
        hi = max(p + q) * 1.1
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="y = x")
        ax.scatter(q, p, color="tab:blue")
        for x, y, t in zip(q, p, labels):
            ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="measured end to end (ms)",
               ylabel="table prediction (ms)", title="retrained: predicted vs measured")
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no retrained model with a\ntable prediction", ha="center", va="center")
    return _png(fig)


def plot_training(inp: Inputs) -> bytes | None:
    """Supernet loss and learning rate vs step (log.csv), subnet AP per epoch (evals.csv)."""
    if inp.log is None and inp.evals is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=110)
    log = inp.log
    if log is not None and {"step", "loss", "lr"} <= set(log.columns) and len(log):
        axes[0].plot(log["step"], log["loss"], color="tab:blue", alpha=0.3, lw=0.8, label="loss")
        window = max(1, len(log) // 50)
        axes[0].plot(log["step"], log["loss"].rolling(window, min_periods=1).mean(), color="tab:blue",
                     label=f"mean of {window}")
        axes[0].set(xlabel="optimizer step", ylabel="loss", title="supernet training loss")
        axes[0].legend(fontsize=8)
        axes[1].plot(log["step"], log["lr"], color="tab:green")
        axes[1].set(xlabel="optimizer step", ylabel="learning rate", title="learning rate")
    else:
        for ax in axes[:2]:
            ax.axis("off")
            ax.text(0.5, 0.5, "no log.csv", ha="center")
    ev = inp.evals
    if ev is not None and set(SETTINGS) <= set(ev.columns) and len(ev):
        ev = ev.assign(ap_mean=ev[list(SETTINGS)].mean(axis=1),
                       group=ev["subnet"].str.replace(r"\d+$", "", regex=True))
        for name, rows in ev.groupby("group", sort=False):
            style = "o" if name == "random" else "-o"
            axes[2].plot(rows["epoch"], rows["ap_mean"], style, ms=4, label=name)
        axes[2].set(xlabel="epoch", ylabel="AP mean(easy, medium, hard)",
                    title="subnet AP per epoch (BN recalibrated)")
        axes[2].legend(fontsize=8)
    else:
        axes[2].axis("off")
        axes[2].text(0.5, 0.5, "no evals.csv", ha="center")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _png(fig)


def _comparison_rows(inp: Inputs) -> tuple[list[dict], str]:
    """Models for the baseline-vs-chosen chart: retrained if any, else one-shot estimates."""
    if inp.retrained:
        rows = [{"label": model_label(m) + " (retrained)", "baseline": bool(m.get("baseline")),
                 **{s: m["ap"].get(f"ap_{s}", np.nan) for s in SETTINGS},
                 "latency": m["latency"]["measured_ms"]} for m in inp.retrained]
        return sorted(rows, key=lambda r: (not r["baseline"], r["latency"])), "retrained, measured latency"
    rows = []
    if inp.baseline is not None:
        rows.append({"label": "baseline", "baseline": True, **{s: inp.baseline.get(f"ap_{s}", np.nan)
                                                              for s in SETTINGS},
                     "latency": inp.baseline["latency_ms"]})
    if inp.pareto is not None and len(inp.pareto) and inp.ap_key in inp.pareto:
        front = inp.pareto.reset_index(drop=True)
        picks = {"fastest": 0, "best": int(front[inp.ap_key].astype(float).idxmax())}
        if inp.baseline is not None:  # the best front arch no slower than the baseline
            under = front[front["latency_ms"] <= inp.baseline["latency_ms"]]
            if len(under):
                picks["best <= baseline ms"] = int(under[inp.ap_key].astype(float).idxmax())
        names: dict[int, list[str]] = {}
        for name, i in picks.items():  # one bar per row, however many picks chose it
            names.setdefault(i, []).append(name)
        for i, name in names.items():
            row = front.iloc[i]
            rows.append({"label": f"front #{i} ({', '.join(name)})", "baseline": False,
                         **{s: row.get(f"ap_{s}", np.nan) for s in SETTINGS},
                         "latency": row["latency_ms"]})
    return rows, "one-shot estimates, predicted latency"


def plot_baseline(inp: Inputs) -> tuple[bytes | None, str]:
    rows, kind = _comparison_rows(inp)
    if not rows:
        return None, kind
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.9 + 0.5 * len(rows) + 2.5), dpi=110,
                             gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(rows))
    h = 0.8 / len(SETTINGS)
    for j, s in enumerate(SETTINGS):
        axes[0].barh(y + (j - 1) * h, [r[s] for r in rows], h, label=s)
    axes[0].set(yticks=y, yticklabels=[r["label"] for r in rows], xlabel="AP", title=f"AP ({kind})")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    colors = ["tab:orange" if r["baseline"] else "tab:blue" for r in rows]
    axes[1].barh(y, [r["latency"] for r in rows], color=colors)
    for yi, r in zip(y, rows):
        axes[1].text(r["latency"], yi, f" {r['latency']:.3g}", va="center", fontsize=8)
    axes[1].set(yticks=y, yticklabels=[], xlabel="latency (ms)", title="latency")
    axes[1].invert_yaxis()
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    return _png(fig), kind


def plot_trust(inp: Inputs) -> bytes | None:
    """One-shot AP vs retrained AP of the trust-check archs (pick and baseline marked)."""
    if not inp.trust or not inp.trust.get("rows"):
        return None
    rows = inp.trust["rows"]
    fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=110)
    for i, r in enumerate(rows):
        kind = "pick" if i == 0 else "baseline" if i == 1 else "other"
        ax.scatter(r["one_shot"], r["retrained"], s=60 if kind != "other" else 30,
                   color={"pick": "tab:red", "baseline": "black", "other": "tab:blue"}[kind],
                   label=kind if kind != "other" or i == 2 else None, zorder=3)
    tau = inp.trust.get("tau")
    ax.set(xlabel=f"one-shot {inp.trust.get('ap_key', 'AP')} (search)",
           ylabel=f"retrained {inp.trust.get('ap_key', 'AP')}",
           title=f"trust check: {inp.trust.get('verdict')}"
                 + (f", Kendall tau {tau:.2f}" if isinstance(tau, float) else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
