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

Inputs: `stages.report_inputs`; figures: `stages.report_figures`; the page is put together here.
Writes into the search folder: report.html, report_pareto.png, report_training.png,
report_baseline.png (the table's validation PNG is embedded as it is).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from core.io import atomic_write_bytes, atomic_write_text, true_rows
from stages.report_figures import (model_label, one_shot_ap, plot_baseline, plot_pareto_retrained,
                                   plot_training, plot_trust)
from stages.report_inputs import Inputs, collect
from stages.run import Run


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
                   one_shot_ap(inp, m), lat["measured_ms"],
                   lat.get("predicted_ms"), m["onnx"]["max_abs_diff"], m.get("params"),
                   m.get("macs"), m.get("eval", {}).get("images"), m.get("train", {}).get("init")]
        cells = [f"<td>{_fmt(model_label(m))}</td>", f'<td class="arch">{html.escape(m["arch"])}</td>']
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
