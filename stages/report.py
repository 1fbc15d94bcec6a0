"""The search report: one self-contained ``report.html`` (PNGs embedded as base64) + the PNGs.

    >>> path = build_report("runs/default/search")                       # doctest: +SKIP
    >>> path = build_report("runs/x/search", supernet_run="runs/x", latency_table="runs/x/lut.csv",
    ...                     retrained=["runs/x/retrain/1a2b3c4d"])       # doctest: +SKIP

Reads only files (never re-runs anything): the search folder (search.yaml, candidates.csv,
pareto.csv), the supernet run (log.csv, evals.csv), the latency table's validation
(``<table>.validation.json`` / ``.png`` from `latency.validate`) and retrained models
(``metrics.json`` from `retrain.py`). Where they are: explicit arguments first, then the paths
recorded in search.yaml's ``resolved`` (``supernet``, ``latency_table``), then the layout of
``runs/<name>/``: the search folder's parent is the supernet run, ``latency.csv`` and
``retrain/*/`` sit in it. A missing optional piece is skipped with a note in the report.

Writes into the search folder: report.html, report_pareto.png, report_training.png,
report_baseline.png (the table's validation PNG is embedded as it is).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.config import load_yaml  # noqa: E402
from core.io import atomic_write_bytes, atomic_write_text, true_rows  # noqa: E402
from stages.run import Run, RunFolder  # noqa: E402

SETTINGS = ("easy", "medium", "hard")


@dataclass
class Inputs:
    """Everything the report shows, found on disk; `notes` says what is missing and why."""

    search_dir: Path
    search: dict = field(default_factory=dict)  # search.yaml
    candidates: pd.DataFrame | None = None
    pareto: pd.DataFrame | None = None
    ap_key: str = "ap_mean"
    run_dir: Path | None = None  # the supernet run
    log: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    table: Path | None = None
    validation: dict | None = None
    validation_png: Path | None = None
    retrained: list[dict] = field(default_factory=list)  # metrics.json + "dir"
    comparison: dict | None = None  # retrain/comparison.json (stages.trust.compare_retrained)
    trust: dict | None = None  # retrain/trust.json (stages.trust.ranking_trust)
    confirmed: pd.DataFrame | None = None  # search/confirmed.csv (stages.confirm.confirm_front)
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> dict | None:
        if self.candidates is None or "baseline" not in self.candidates:
            return None
        rows = self.candidates[self.candidates["baseline"].astype(bool)]
        return rows.iloc[0].to_dict() if len(rows) else None


def _read_csv(path: Path, what: str, notes: list[str], required: tuple[str, ...] = ()
              ) -> pd.DataFrame | None:
    if not path.is_file():
        notes.append(f"{what}: {path} not found, skipped.")
        return None
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as err:  # empty or unreadable
        notes.append(f"{what}: {path} unreadable ({err}), skipped.")
        return None
    missing = [c for c in required if c not in frame]
    if missing:
        notes.append(f"{what}: {path} has no {missing[0]!r} column, skipped.")
        return None
    return frame


def _ap_key(search: dict, frame: pd.DataFrame | None) -> str:
    metric = str((search.get("search") or {}).get("ap_metric", "mean"))
    for key in (metric, f"ap_{metric}", "ap_mean", "ap"):
        if frame is not None and key in frame:
            return key
    return f"ap_{metric}"


def _retrained(paths: list[Path], notes: list[str]) -> list[dict]:
    out, seen = [], set()
    for path in paths:
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            notes.append(f"retrained model {path}: no metrics.json (unfinished?), skipped.")
            continue
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        try:
            metrics = json.loads(file.read_text())
            metrics["dir"] = str(file.parent)
            metrics["ap"], metrics["latency"]  # required keys
        except (ValueError, KeyError) as err:
            notes.append(f"retrained model {file}: unreadable ({err!r}), skipped.")
            continue
        out.append(metrics)
    return out


def collect(search_dir: str | Path, supernet_run: str | Path | None = None,
            latency_table: str | Path | None = None, retrained: list[str | Path] = ()) -> Inputs:
    """Find and read every input (see the module docstring); never raises for optional pieces."""
    search_dir = Path(search_dir)
    if not search_dir.is_dir():
        raise FileNotFoundError(f"search folder not found: {search_dir}")
    inp = Inputs(search_dir)
    notes = inp.notes
    if (search_dir / "search.yaml").is_file():
        inp.search = load_yaml(search_dir / "search.yaml")  # errors name the file and line
    else:
        notes.append(f"search settings: {search_dir / 'search.yaml'} not found.")
    resolved = inp.search.get("resolved") or {}
    columns = ("arch", "latency_ms")
    inp.candidates = _read_csv(search_dir / "candidates.csv", "candidates", notes, columns)
    inp.pareto = _read_csv(search_dir / "pareto.csv", "Pareto front", notes, columns)
    inp.ap_key = _ap_key(inp.search, inp.pareto if inp.pareto is not None else inp.candidates)
    if (search_dir / "confirmed.csv").is_file():
        inp.confirmed = _read_csv(search_dir / "confirmed.csv", "confirmed front", notes,
                                  ("arch", "latency_ms", "diff", "diff_lo", "diff_hi", "baseline"))

    run_dir = supernet_run or (Path(resolved["supernet"]).parent if resolved.get("supernet") else None)
    run_dir = Path(run_dir) if run_dir else search_dir.parent  # the layout: runs/<name>/search
    if any((run_dir / f).is_file() for f in ("log.csv", "evals.csv", "supernet.pt", "config.yaml")):
        inp.run_dir = run_dir
        inp.log = _read_csv(run_dir / "log.csv", "supernet training log", notes)
        inp.evals = _read_csv(run_dir / "evals.csv", "supernet subnet evaluations", notes)
    else:
        notes.append(f"supernet run: none found at {run_dir} (pass --supernet-run): training "
                     "curves skipped.")

    table = latency_table or resolved.get("latency_table") or (
        RunFolder(inp.run_dir).table if inp.run_dir else None)
    if table is not None:
        inp.table = Path(table)
        js, png = Path(f"{table}.validation.json"), Path(f"{table}.validation.png")
        if js.is_file():
            inp.validation = json.loads(js.read_text())
        if png.is_file():
            inp.validation_png = png
        if inp.validation is None and inp.validation_png is None:
            notes.append(f"latency table validation: none beside {table} (run python -m "
                         f"latency.validate --table {table}).")
    else:
        notes.append("latency table: not found (pass --latency-table): validation skipped.")

    folders = sorted(RunFolder(inp.run_dir).retrain_root.glob("*/")) if inp.run_dir else []
    inp.retrained = _retrained([p for p in folders if (p / "metrics.json").is_file()]
                               + [Path(p) for p in retrained], notes)
    for name in ("comparison", "trust"):
        path = getattr(RunFolder(inp.run_dir), name) if inp.run_dir else None
        if path is not None and path.is_file():
            try:
                setattr(inp, name, json.loads(path.read_text()))
            except ValueError as err:
                notes.append(f"{path}: unreadable ({err}), skipped.")
    if not inp.retrained:
        notes.append("retrained models: none found (python retrain.py --pareto "
                     f"{search_dir / 'pareto.csv'} --pick best-under:<budget>); one-shot estimates "
                     "only.")
    return inp


# -- figures --------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(metrics: dict) -> str:
    return "baseline" if metrics.get("baseline") else metrics.get("arch_hash", metrics["arch"][:8])


def _one_shot(inp: Inputs, metrics: dict) -> float | None:
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
        shot = _one_shot(inp, m)
        color = plt.cm.tab10(i % 10)
        ax.scatter([lat["measured_ms"]], [ap], marker="D", s=46, color=color, edgecolors="k", zorder=6,
                   label=f"{_label(m)} retrained (measured ms)")
        if shot is not None and "predicted_ms" in lat:
            ax.annotate("", (lat["measured_ms"], ap), (lat["predicted_ms"], shot),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
    ax.set(xlabel="latency (ms): predicted for the search, measured for retrained",
           ylabel=f"{key} (AP)", title="Pareto front and retrained subnets")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    pairs = [(m["latency"]["predicted_ms"], m["latency"]["measured_ms"], _label(m))
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
        rows = [{"label": _label(m) + " (retrained)", "baseline": bool(m.get("baseline")),
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


# -- HTML -----------------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1220px;
color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.arch{text-align:left;font-family:monospace;word-break:break-all}
tr.base{background:#fff4e0}.note{color:#8a5a00;background:#fff8e6;padding:6px 10px;margin:4px 0}
.meta{color:#555;font-size:13px}code{font-size:12px}
"""


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{data}">'


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def _front_table(inp: Inputs) -> str:
    if inp.pareto is None or not len(inp.pareto):
        return '<p class="note">No Pareto front to list.</p>'
    retrained = {m["arch"]: m for m in inp.retrained}
    ap_cols = [c for c in ("ap_easy", "ap_medium", "ap_hard", "ap_mean") if c in inp.pareto]
    head = ["#", "arch", *ap_cols, "latency_ms", "params", "macs", "retrained " + inp.ap_key,
            "measured ms"]
    rows = list(inp.pareto.reset_index(drop=True).iterrows())
    if inp.baseline is not None:
        rows.append(("baseline", pd.Series(inp.baseline)))
    body = []
    for i, row in rows:
        m = retrained.get(row["arch"])
        cells = [_fmt(i), f'<td class="arch">{html.escape(row["arch"])}</td>']
        cells[0] = f"<td>{cells[0]}</td>"
        cells += [f"<td>{_fmt(row.get(c))}</td>" for c in [*ap_cols, "latency_ms", "params", "macs"]]
        cells += [f"<td>{_fmt(m['ap'].get(inp.ap_key)) if m else ''}</td>",
                  f"<td>{_fmt(m['latency']['measured_ms']) if m else ''}</td>"]
        body.append(f'<tr{" class=base" if i == "baseline" else ""}>{"".join(cells)}</tr>')
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "\n".join(body) + "</table>")


def _retrained_table(inp: Inputs) -> str:
    if not inp.retrained:
        return ""
    head = ["model", "arch", "AP easy", "medium", "hard", "mean", "one-shot " + inp.ap_key,
            "measured ms", "predicted ms", "ONNX max diff", "params (detector)", "MACs (detector)",
            "val images", "init"]
    body = []
    for m in inp.retrained:
        lat, ap = m["latency"], m["ap"]
        numbers = [ap.get("ap_easy"), ap.get("ap_medium"), ap.get("ap_hard"), ap.get("ap_mean"),
                   _one_shot(inp, m), lat["measured_ms"],
                   lat.get("predicted_ms"), m["onnx"]["max_abs_diff"], m.get("params"),
                   m.get("macs"), m.get("eval", {}).get("images"), m.get("train", {}).get("init")]
        cells = [f"<td>{_fmt(_label(m))}</td>", f'<td class="arch">{html.escape(m["arch"])}</td>']
        cells += [f"<td>{'' if v is None else _fmt(v, 3)}</td>" for v in numbers]
        body.append(f'<tr{" class=base" if m.get("baseline") else ""}>{"".join(cells)}</tr>')
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "\n".join(body) + "</table>")


def _validation_html(inp: Inputs) -> str:
    parts = []
    if inp.validation:
        v = inp.validation
        rows = "".join(f"<tr><td style='text-align:left'>{k}</td>"
                       + "".join(f"<td>{_fmt(v.get(k, {}).get(c))}</td>"
                                 for c in ("mape_pct", "max_error_pct", "pearson_r", "kendall_tau"))
                       + "</tr>" for k in ("raw", "calibrated"))
        parts.append(f"<p class=meta>{_fmt(v.get('n'))} subnets timed end to end on "
                     f"{html.escape(str((v.get('device') or {}).get('cpu', '?')))}, "
                     f"{_fmt((v.get('device') or {}).get('threads'))} thread(s).</p>"
                     "<table style='width:auto'><tr><th></th><th>MAPE %</th><th>max error %</th>"
                     f"<th>Pearson r</th><th>Kendall tau</th></tr>{rows}</table>")
    if inp.validation_png is not None:
        parts.append(_img(inp.validation_png.read_bytes(), "latency table validation", 520))
    return "\n".join(parts)


def _latency_choices_html(inp: Inputs) -> str:
    """Heatmap and tables of `latency.report.latency_report`: what each choice costs on the device."""
    if inp.table is None or not inp.table.is_file():
        return '<p class="note">no latency table</p>'
    try:
        from latency.report import latency_report

        png, fragment = latency_report(inp.table)
    except (ValueError, KeyError, FileNotFoundError, SystemExit) as err:
        return f'<p class="note">latency report not available: {html.escape(str(err))}</p>'
    return _img(png, "latency added per choice") + fragment


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


def _comparison_html(inp: Inputs) -> str:
    c = inp.comparison
    if not c:
        return ('<p class="note">no pick-vs-baseline comparison (pipeline.py retrains both with the '
                'same budget and writes retrain/comparison.json)</p>')

    def ap(d: dict) -> str:
        return f"{d['value']:.4f} [{d['lo']:.4f}, {d['hi']:.4f}]"

    rows = "".join(
        f"<tr><td>{name}</td><td><code>{html.escape(c[name]['arch'])}</code></td>"
        f"<td>{c[name]['measured_ms']:.3f}</td>" + "".join(f"<td>{ap(c[name]['ap'][k])}</td>"
                                                          for k in ("easy", "medium", "hard", "mean"))
        + "</tr>" for name in ("pick", "baseline"))
    d = c["pick_minus_baseline"]
    rows += ("<tr><td><b>pick - baseline</b></td><td></td>"
             f"<td>speed-up {c['speedup']:.2f}x</td>"
             + "".join(f"<td>{d[k]['value']:+.4f} [{d[k]['lo']:+.4f}, {d[k]['hi']:+.4f}]</td>"
                       for k in ("easy", "medium", "hard", "mean")) + "</tr>")
    cls = "meta" if c.get("ap_not_lower") else "note"
    return (f"<p class={cls}><b>{html.escape(c['verdict'])}</b>. Both retrained with the same budget "
            f"and scored on the same {c['images']} val images; intervals: 95% paired bootstrap over "
            f"images ({c['resamples']} resamples).</p><table><tr><th></th><th>arch</th>"
            "<th>measured ms</th><th>Easy AP</th><th>Medium AP</th><th>Hard AP</th><th>mean</th></tr>"
            + rows + "</table>")


def _confirmed_html(inp: Inputs) -> str:
    t, key = inp.confirmed, inp.ap_key
    if t is None or t.empty or key not in t:
        return ('<p class="note">the front was not confirmed (pipeline.py re-scores the members that '
                'could be the pick on more images before picking: confirm.archs)</p>')
    base = true_rows(t, "baseline")
    rows = "".join(
        f"<tr><td><code>{html.escape(str(r['arch']))}</code>{' (baseline)' if base[i] else ''}</td>"
        f"<td>{r['latency_ms']:.3f}</td><td>{r[f'search_{key}']:.4f}</td><td>{r[key]:.4f}</td>"
        f"<td>{r['diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]</td></tr>"
        for i, r in t.iterrows())
    return (f"<p class=meta>Before the pick, the front members that could be it and the baseline were "
            f"re-scored with the same inherited weights on {int(t['images'].iloc[0])} val images "
            f"(BN recalibrated on {int(t['bn_images'].iloc[0])} training images): the search's "
            "estimates come from a smaller subset, and the fastest of many noisy estimates that "
            "reach the baseline is biased upwards. Interval: 95% paired bootstrap over images.</p>"
            f"<table><tr><th>arch</th><th>predicted ms</th><th>search {html.escape(key)}</th>"
            f"<th>re-scored</th><th>minus baseline</th></tr>{rows}</table>")


def _trust_html(inp: Inputs) -> str:
    t = inp.trust
    if not t:
        return '<p class="note">no trust check (pipeline.py --trust-archs N writes retrain/trust.json)</p>'
    head = (f"<p class=meta>{t['n']} archs retrained with the same budget; Kendall tau between their "
            "one-shot AP (search) and retrained AP")
    if "tau" in t:
        head += (f": <b>{t['tau']:.2f}</b> (95% bootstrap interval [{t['tau_lo']:.2f}, "
                 f"{t['tau_hi']:.2f}]), Spearman {t['rho']:.2f}")
    head += f". Verdict: <b>{html.escape(t['verdict'])}</b>.</p>"
    if t.get("advice"):
        head += f'<div class="note">warning: {html.escape(t["advice"])}</div>'
    return head


def render_html(inp: Inputs, figures: dict[str, bytes | None], baseline_kind: str) -> str:
    s = inp.search.get("search") or {}
    r = inp.search.get("resolved") or {}
    n_eval = int((inp.candidates["generation"] >= 0).sum()) if inp.candidates is not None else 0
    meta = (f"{html.escape(str(s.get('algorithm', '?')))}, population {_fmt(s.get('population'))} x "
            f"{_fmt(s.get('generations'))} generations, {n_eval} candidates evaluated; AP objective "
            f"<code>{html.escape(inp.ap_key)}</code> on {_fmt(s.get('eval_images'))} val images "
            f"(one-shot: inherited supernet weights, BN recalibrated); budget "
            f"{_fmt(r.get('budget_ms'))} ms; input {html.escape(str(r.get('input_size', '?')))}; "
            f"space <code>{html.escape(str(r.get('space', '?')))}</code>.")
    sources = "".join(f"<li>{k}: <code>{html.escape(str(v))}</code></li>" for k, v in (
        ("search", inp.search_dir), ("supernet run", inp.run_dir or "none"),
        ("latency table", inp.table or "none"), ("retrained", len(inp.retrained))))
    sec = []

    def section(title: str, key: str | None, extra: str = "", missing: str = "") -> None:
        body = extra
        if key is not None:
            body = (_img(figures[key], title) if figures.get(key) else
                    f'<p class="note">{html.escape(missing or "not available")}</p>') + body
        sec.append(f"<h2>{html.escape(title)}</h2>\n{body}")

    section("Pareto front and retrained subnets", "pareto",
            "<p class=meta>Arrows go from a retrained arch's search estimate (predicted latency, "
            "one-shot AP) to its retrained result (measured latency, stand-alone AP). One-shot AP "
            "is on the search's val subset, retrained AP on the retrain's (see the table).</p>"
            + _retrained_table(inp), "no candidates or retrained models")
    section("Baseline vs chosen subnets", "baseline", f"<p class=meta>{html.escape(baseline_kind)}."
            + ("" if any(m.get("baseline") for m in inp.retrained) or not inp.retrained else
               " The baseline has not been retrained (python retrain.py --arch baseline): "
               "its one-shot estimate is in the front table.") + "</p>", "nothing to compare")
    section("Front confirmed before the pick", None, _confirmed_html(inp))
    section("Pick vs baseline, retrained", None, _comparison_html(inp))
    section("Can the one-shot ranking be trusted here?", "trust", _trust_html(inp),
            "no trust-check archs")
    section("Supernet training", "training", missing="no supernet log.csv / evals.csv")
    section("Latency table validation", None, _validation_html(inp)
            or '<p class="note">no validation found beside the table</p>')
    section("Which choices are expensive on this device", None, _latency_choices_html(inp))
    section("Pareto front", None, _front_table(inp))
    notes = "".join(f'<div class="note">{html.escape(n)}</div>' for n in inp.notes)
    title = f"facenas search report: {inp.search_dir}"
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p class=meta>{meta}</p><ul class=meta>{sources}</ul>{notes}\n"
            + "\n".join(sec) + "\n</body></html>\n")


def build_report(search_dir: str | Path, supernet_run: str | Path | None = None,
                 latency_table: str | Path | None = None, retrained: list[str | Path] = (),
                 out: str | Path | None = None) -> Path:
    """Write the PNGs and report.html into the search folder (or `out`); returns the HTML path."""
    inp = collect(search_dir, supernet_run, latency_table, retrained)
    out = Path(out) if out else inp.search_dir / "report.html"
    baseline_png, kind = plot_baseline(inp)
    figures = {"pareto": plot_pareto_retrained(inp), "training": plot_training(inp),
               "baseline": baseline_png, "trust": plot_trust(inp)}
    for key, png in figures.items():
        if png is not None:
            atomic_write_bytes(out.parent / f"report_{key}.png", png)
    atomic_write_text(out, render_html(inp, figures, kind))
    return out


def report(run: Run, out: str | Path | None = None) -> Path:
    """The report of `run` (its search folder, supernet run, table and retrained models)."""
    return build_report(run.search_dir, run.root, run.table, [], out)
