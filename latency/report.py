"""Which choices of the space are expensive on this device: per stage, per factor, from the table.

    facenas latency report --table runs/default/latency.csv --out runs/default/latency_report
    facenas latency report --table runs/lut_t1.csv --other runs/lut_t2.csv --out report_t1_vs_t2
    # -> effects.csv, heatmap.png, report.html, space_narrowed.yaml (and compare.csv with --other)

    >>> png, html = latency_report("runs/default/latency.csv")      # for another report to embed

For every searchable stage and every factor of the space (op, kernel, SE, width, depth) the
baseline arch is varied in that one factor, in that one stage (op/kernel/SE: every layer of the
stage at once), and the table predicts its latency: the table shows what each choice adds over the
cheapest one, with the backbone's parameters and MACs it buys. A choice is *dominated* when another
choice of the same stage and factor is faster (by more than `TOLERANCE` of the arch's latency) with
at least as many parameters and MACs: slower at no gain in capacity. A choice dominated in every
stage is dropped from the suggested ``space_narrowed.yaml`` (a self-contained space section).

With a second table (another device, thread count or provider, same space and input size) both
are shown side by side, and a (stage, factor) where the two order the choices differently is
flagged: a choice cheap on one device may not be on the other (ProxylessNAS).
"""

from __future__ import annotations

import argparse
import html
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from detection.config import DetectorConfig
from latency.table import LatencyTable, experiment_of
from core.io import atomic_write_bytes, atomic_write_text
from core.space import SearchSpace

FACTORS = ("op", "kernel", "se", "width", "depth")
TOLERANCE = 0.005  # a choice must be this share of the arch's latency faster to dominate another


def _labels(space: SearchSpace, stage: int, factor: str) -> list[str]:
    """Choice names: width as the multiplier and depth as the delta where the stage offers all of
    them (rounding or the 1-layer floor can merge some: then channels C.. / layers L..)."""
    st, cfg = space.stages[stage], space.config
    if factor == "width":
        return ([f"x{w}" for w in cfg.widths] if len(st.widths) == len(cfg.widths)
                else [f"C{c}" for c in st.widths])
    if factor == "depth":
        return ([f"{d:+d}" for d in cfg.depth_deltas] if len(st.depths) == len(cfg.depth_deltas)
                else [f"L{d}" for d in st.depths])
    return {"op": list(cfg.ops), "kernel": [str(k) for k in space.kernels],
            "se": [str(s) for s in space.se_ratios]}[factor]


def _variables(space: SearchSpace, stage: int, factor: str) -> list[int]:
    """Indices of the encoding variables that set `factor` in `stage`."""
    names = [v.name for v in space.variables]
    if factor in ("width", "depth"):
        return [i for i, n in enumerate(names) if n == f"s{stage}.{factor}"]
    return [i for i, n in enumerate(names) if n.startswith(f"s{stage}.l") and n.endswith(f".{factor}")]


def factor_effects(table: LatencyTable) -> pd.DataFrame:
    """One row per (stage, factor, choice): latency_ms of the baseline varied in that factor,
    added_ms over the cheapest choice, params, macs, dominated and dominated_by."""
    space, size = table.space, tuple(table.cfg.input_size)
    x0 = space.encode(space.baseline)
    rows = []
    for st in space.searchable_stages:
        for factor in FACTORS:
            idx = _variables(space, st.index, factor)
            if not idx:
                continue
            archs = []
            for c in range(space.variables[idx[0]].n_choices):
                x = x0.copy()
                x[idx] = c
                archs.append(space.decode(x))
            ms = table.predict_many(archs)
            for label, arch, t in zip(_labels(space, st.index, factor), archs, ms):
                rows.append({"stage": st.index, "factor": factor, "choice": label,
                             "latency_ms": float(t), "added_ms": float(t - ms.min()),
                             "params": space.params(arch), "macs": space.macs(arch, size)})
    frame = pd.DataFrame(rows)
    return flag_dominated(frame)


def flag_dominated(frame: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """`dominated`: another choice of the same stage and factor is faster by > tolerance x latency
    with params and macs at least as large; `dominated_by` names the first such choice."""
    frame = frame.copy()
    frame["dominated"], frame["dominated_by"] = False, ""
    for _, group in frame.groupby(["stage", "factor"], sort=False):
        for i, row in group.iterrows():
            better = group[(group.latency_ms < row.latency_ms * (1 - tolerance))
                           & (group.params >= row.params) & (group.macs >= row.macs)]
            if len(better):
                frame.loc[i, ["dominated", "dominated_by"]] = True, better.choice.iloc[0]
    return frame


def narrowed_space(space: SearchSpace, resolved_space: dict, effects: pd.DataFrame) -> tuple[dict, dict]:
    """(space section without the choices dominated in every stage, {factor: dropped choices}).
    op, kernel and SE choices map to the space's lists; width and depth to the multipliers and
    deltas when every stage offers all of them (else they are kept)."""
    out, dropped = dict(resolved_space), {}
    keys = {"op": ("ops", list(space.config.ops)), "kernel": ("kernels", list(space.kernels)),
            "se": ("se", list(space.se_ratios)), "width": ("widths", list(space.config.widths)),
            "depth": ("depth_deltas", list(space.config.depth_deltas))}
    for factor, (key, values) in keys.items():
        sub = effects[effects.factor == factor]
        if sub.empty:
            continue
        per_stage = [g.dominated.to_numpy() for _, g in sub.groupby("stage")]
        if any(len(d) != len(values) for d in per_stage):
            continue  # rounding merged some widths/depths: indices do not map to the list
        always = np.logical_and.reduce(per_stage)
        if always.any() and not always.all():
            dropped[factor] = [v for v, a in zip(values, always) if a]
            out[key] = [v for v, a in zip(values, always) if not a]
    return out, dropped


def compare(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Side by side per (stage, factor, choice); `disagree` says where the two tables order the
    choices of a (stage, factor) differently (cheapest first), `note` how."""
    keys = ["stage", "factor", "choice"]
    cols = ["latency_ms", "added_ms", "dominated"]
    merged = a[keys + cols + ["params", "macs"]].merge(b[keys + cols], on=keys,
                                                       suffixes=tuple(f"_{n}" for n in names))
    merged["disagree"], merged["note"] = False, ""
    for _, group in merged.groupby(["stage", "factor"], sort=False):
        order = [list(group.sort_values(f"latency_ms_{n}").choice) for n in names]
        dom = [set(group.choice[group[f"dominated_{n}"]]) for n in names]
        notes = []
        if order[0][0] != order[1][0]:
            notes.append(f"cheapest {order[0][0]} on {names[0]}, {order[1][0]} on {names[1]}")
        elif order[0] != order[1]:
            notes.append(f"order {'<'.join(order[0])} on {names[0]}, {'<'.join(order[1])} on "
                         f"{names[1]}")
        if dom[0] != dom[1]:
            notes.append(f"dominated {sorted(dom[0]) or 'none'} on {names[0]}, "
                         f"{sorted(dom[1]) or 'none'} on {names[1]}")
        if notes:
            merged.loc[group.index, ["disagree", "note"]] = True, "; ".join(notes)
    return merged


def plot_heatmap(effects: pd.DataFrame, title: str, other: pd.DataFrame | None = None,
                 names: tuple[str, str] = ("A", "B")) -> bytes:
    """Heatmap of added_ms (rows factor=choice, columns stages; '*' marks a dominated choice);
    with `other`, the two tables side by side on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [effects] if other is None else [effects, other]
    pairs = dict.fromkeys(zip(effects.factor, effects.choice))
    rows = [f"{f}={c}" for f, c in sorted(pairs, key=lambda p: FACTORS.index(p[0]))]
    stages = sorted(effects.stage.unique())
    vmax = max(float(f.added_ms.max()) for f in frames) or 1.0
    scale, unit = (1000.0, "us") if vmax < 0.1 else (1.0, "ms")
    fig, axes = plt.subplots(1, len(frames), figsize=(1.1 * len(stages) * len(frames) + 3,
                                                     0.32 * len(rows) + 1.6), dpi=110, squeeze=False)
    for ax, frame, name in zip(axes[0], frames, names if other is not None else ("",)):
        grid = np.full((len(rows), len(stages)), np.nan)
        dominated = np.zeros((len(rows), len(stages)), dtype=bool)
        for r in frame.itertuples():
            i, j = rows.index(f"{r.factor}={r.choice}"), stages.index(r.stage)
            grid[i, j], dominated[i, j] = r.added_ms * scale, r.dominated
        im = ax.imshow(grid, cmap="magma_r", vmin=0, vmax=vmax * scale, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(stages)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}{'*' if dominated[i, j] else ''}", ha="center",
                            va="center", fontsize=7,
                            color="white" if grid[i, j] > 0.6 * vmax * scale else "black")
        ax.set_xticks(range(len(stages)), [f"stage {s}" for s in stages], fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(f"{title} {name}".strip(), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), label=f"latency added over the cheapest choice ({unit})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _html_table(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{v:.3f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table style='width:auto'><tr>{head}</tr>{body}</table>"


def _load(path: str | Path, strict: bool = True) -> LatencyTable:
    exp = experiment_of(path, None, [])
    with warnings.catch_warnings():  # another device is the point of a comparison
        warnings.simplefilter("ignore")
        return LatencyTable.load(path, exp.space, exp.section("detector", DetectorConfig),
                                 strict=strict)


def build(table_path: str | Path, other_path: str | Path | None = None) -> dict:
    """Everything the report shows: effects, narrowed space, comparison, PNG and HTML."""
    table = _load(table_path)
    exp = experiment_of(table_path, None, [])
    effects = factor_effects(table)
    narrowed, dropped = narrowed_space(table.space, exp.resolved()["space"], effects)
    dev = table.meta.get("device") or {}
    name = f"{dev.get('cpu', '?')}, {dev.get('threads', '?')} thread(s)"
    out = {"effects": effects, "narrowed": narrowed, "dropped": dropped, "compare": None}
    parts = [f"<p class=meta>Table <code>{html.escape(str(table_path))}</code> ({html.escape(name)}"
             f"): the baseline varied in one factor of one stage; ms added over the cheapest "
             f"choice; * = dominated (another choice is faster with at least the same parameters "
             f"and MACs).</p>"]
    if other_path is None:
        out["png"] = plot_heatmap(effects, name)
    else:
        other = _load(other_path)
        odev = other.meta.get("device") or {}
        oname = f"{odev.get('cpu', '?')}, {odev.get('threads', '?')} thread(s)"
        other_effects = factor_effects(other)
        names = ("A", "B")
        out["compare"] = compare(effects, other_effects, names)
        out["png"] = plot_heatmap(effects, "", other_effects, (f"A: {name}", f"B: {oname}"))
        dis = out["compare"][out["compare"].disagree].drop_duplicates(["stage", "factor"])
        parts.append(f"<p class=meta>B = <code>{html.escape(str(other_path))}</code> "
                     f"({html.escape(oname)}). {len(dis)} (stage, factor) pairs order their "
                     "choices differently:</p>"
                     + (_html_table(dis[["stage", "factor", "note"]]) if len(dis) else ""))
    shown = effects.assign(dominated=np.where(effects.dominated, "yes: " + effects.dominated_by, ""))
    parts.append(_html_table(shown.drop(columns="dominated_by")))
    text = yaml.safe_dump(narrowed, sort_keys=False)
    parts.append(f"<p class=meta>Dropped as dominated in every stage: "
                 f"{html.escape(str(dropped) if dropped else 'nothing')}. Suggested space:</p>"
                 f"<pre>{html.escape(text)}</pre>")
    out["html"] = "\n".join(parts)
    out["yaml"] = text
    return out


def latency_report(table_path: str | Path, other_path: str | Path | None = None) -> tuple[bytes, str]:
    """(heatmap PNG bytes, HTML fragment: tables, dominated choices, suggested space) for another
    report to embed (`stages.report` does); the fragment does not include the image."""
    out = build(table_path, other_path)
    return out["png"], out["html"]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="table CSV from latency.measure")
    p.add_argument("--other", help="a second table of the same space (another device / threads)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        out = build(args.table, args.other)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    out["effects"].to_csv(folder / "effects.csv", index=False)
    atomic_write_bytes(folder / "heatmap.png", out["png"])
    atomic_write_text(folder / "space_narrowed.yaml",
                      "# suggested by facenas latency report: choices dominated in every stage "
                      f"dropped ({out['dropped'] or 'none'})\n" + out["yaml"])
    page = out["html"].replace("<table", "<table border=1", 1)
    atomic_write_text(folder / "report.html", "<!DOCTYPE html>\n<html><body><h1>Latency by choice"
                      "</h1><img src=heatmap.png>\n" + page + "</body></html>\n")
    if out["compare"] is not None:
        out["compare"].to_csv(folder / "compare.csv", index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(out["effects"].to_string(index=False))
        if out["compare"] is not None:
            dis = out["compare"][out["compare"].disagree].drop_duplicates(["stage", "factor"])
            print(dis[["stage", "factor", "note"]].to_string(index=False) if len(dis)
                  else "the two tables agree on every (stage, factor)")
    print(f"dropped as dominated in every stage: {out['dropped'] or 'nothing'}\nwrote {folder}/"
          "{effects.csv, heatmap.png, report.html, space_narrowed.yaml"
          + (", compare.csv}" if out["compare"] is not None else "}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
