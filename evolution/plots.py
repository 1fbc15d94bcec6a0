"""`pareto.png`: every candidate coloured by generation, the front, the budget and the baseline.

    >>> plot_pareto(candidates, pareto, "runs/x/pareto.png", ap_key="ap_hard",
    ...             budget_ms=12.0)  # doctest: +SKIP
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.io import atomic_write_bytes  # noqa: E402


def plot_pareto(candidates: pd.DataFrame, pareto: pd.DataFrame, path: str | Path, *, ap_key: str = "ap",
                budget_ms: float | None = None, baseline: dict | None = None, title: str = "") -> None:
    """Scatter AP vs predicted latency (colour = generation), front as a step line, budget, baseline."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    searched = candidates[candidates["generation"] >= 0]
    points = ax.scatter(searched["latency_ms"], searched[ap_key], c=searched["generation"], s=14,
                        cmap="viridis", alpha=0.75, linewidths=0)
    fig.colorbar(points, ax=ax, label="generation")
    if len(pareto):
        front = pareto.sort_values("latency_ms")
        # the best AP reachable within each latency: a staircase rising at every front point
        ax.step(front["latency_ms"], np.maximum.accumulate(front[ap_key].to_numpy()), where="post",
                color="tab:red", lw=1.5, label=f"Pareto front ({len(front)})")
        ax.scatter(front["latency_ms"], front[ap_key], s=28, facecolors="none", edgecolors="tab:red")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="k", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    if baseline is not None:
        ax.scatter([baseline["latency_ms"]], [baseline[ap_key]], marker="*", s=220, color="tab:orange",
                   edgecolors="k", zorder=5, label="baseline")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(f"{ap_key} (AP, fraction)")
    ax.set_title(title or f"{len(searched)} candidates")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
