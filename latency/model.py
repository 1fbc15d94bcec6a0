"""A latency model for entries a table never measured (ProxylessNAS-style), fitted on its rows.

    facenas latency model --table runs/default/latency.csv       # cross-validated error, printed
    >>> model = LatencyModel.fit(table.frame)                    # doctest: +SKIP
    >>> model.predict(entries)                                   # ms per `latency.keys.Entry`

Latency of a block is modelled as a non-negative sum of what it does on this device: MACs of
pointwise (1x1) convs, of dense kxk convs and of depthwise convs (plus depthwise MACs x kernel, as
large kernels run at another rate), activation memory (elements read and written), the SE's extra
passes over its input, the layout reorders' elements, and a fixed cost per op launched; the weights
are fitted by non-negative least squares on *relative* residuals (each row weighted 1 / its
latency, what MAPE scores). Non-negative weights keep predictions monotone in size, so a block of a
widened space (more channels, another kernel) extrapolates sensibly. Heads are not modelled (one
per table, nothing to fit on).

`cross_validate` holds out 20% of the entries five times (5 folds), refits on the rest and reports
the MAPE on the held-out blocks and, for whole subnets, the error of the raw sum when the held-out
entries come from the model instead of the table. `LatencyTable.predict` falls back to the model
for an arch's missing entries (with a warning naming them; `strict=True` refuses instead).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import nnls

FEATURES = ("pw_macs", "dense_macs", "dw_macs", "dw_macs_k", "elements", "se_elements",
            "reorder_elements", "ops")
MODELLED_KINDS = ("block", "lateral", "reorder", "context")


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64)


def features(frame: pd.DataFrame) -> np.ndarray:
    """(n, len(FEATURES) + 1) design matrix (last column: 1) of table rows or `Entry.row()`s.

    Units: MACs and elements in millions, so the weights are ms per million."""
    kind, op = frame["kind"].to_numpy(), frame["op"].to_numpy()
    k, c_in, c_out = _col(frame, "kernel"), _col(frame, "c_in"), _col(frame, "c_out")
    stride, expand, se = _col(frame, "stride"), _col(frame, "expand"), _col(frame, "se")
    h, w = _col(frame, "height"), _col(frame, "width")
    hw_in = h * w
    hw_out = ((h - 1) // stride + 1) * ((w - 1) // stride + 1)
    is_ir, is_dw = op == "ir", op == "dw"
    is_conv, is_lat, is_re = (kind == "block") & (op == "conv"), kind == "lateral", kind == "reorder"
    is_ctx = kind == "context"  # a depthwise 1x1 conv (per input; the first input's shape)
    mid = np.where(is_ir, c_in * expand, c_in)
    expands = is_ir & (expand != 1)
    pw = (np.where(expands, c_in * mid * hw_in, 0) + np.where(is_ir | is_dw, mid * c_out * hw_out, 0)
          + np.where(is_lat, c_in * c_out * hw_in, 0))
    dense = np.where(is_conv, k * k * c_in * c_out * hw_out, 0)
    dw = np.where(is_ir | is_dw, k * k * mid * hw_out, 0) + np.where(is_ctx, c_in * hw_in, 0)
    elements = np.where(is_re, 0, c_in * hw_in + c_out * hw_out
                        + np.where(is_ir | is_dw, mid * hw_out, 0) + np.where(expands, mid * hw_in, 0))
    se_el = np.where((se > 0) & (is_ir | is_dw), mid * hw_out, 0)
    reorder = np.where(is_re, c_in * hw_in, 0)
    ops = (np.where(is_conv | is_lat, 1, 0) + np.where(is_dw, 2, 0)
           + np.where(is_ir, 2 + expands, 0) + np.where(se > 0, 3, 0) + np.where(is_re | is_ctx, 2, 0))
    cols = [pw, dense, dw, dw * k, elements, se_el, reorder]
    return np.stack([c / 1e6 for c in cols] + [ops, np.ones_like(pw)], axis=1)


class LatencyModel:
    """Non-negative linear latency model on `features`; see the module docstring."""

    def __init__(self, weights: np.ndarray, n_rows: int):
        self.weights, self.n_rows = weights, n_rows

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "LatencyModel":
        """Fit on the block, lateral and reorder rows with a latency > 0."""
        ms = pd.to_numeric(frame["median_ms"], errors="coerce").to_numpy(dtype=np.float64)
        keep = frame["kind"].isin(MODELLED_KINDS).to_numpy() & np.isfinite(ms) & (ms > 0)
        if keep.sum() < len(FEATURES) + 1:
            raise ValueError(f"the latency model needs at least {len(FEATURES) + 1} measured "
                             f"block rows, got {int(keep.sum())}")
        x, y = features(frame[keep]), ms[keep]
        weights, _ = nnls(x / y[:, None], np.ones_like(y))
        return cls(weights, int(keep.sum()))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """ms per row (block, lateral or reorder rows; ValueError for a head)."""
        heads = frame["kind"].to_numpy() == "head"
        if heads.any():
            raise ValueError("the latency model does not predict heads (one per table, nothing to "
                             f"fit on): {list(frame['key'][heads])}")
        return features(frame) @ self.weights

    def predict(self, entries: Sequence) -> np.ndarray:
        """ms per `latency.keys.Entry`."""
        return self.predict_frame(pd.DataFrame([e.row() for e in entries]))

    def describe(self) -> dict:
        return {"n_rows": self.n_rows,
                "ms_per_unit": dict(zip((*FEATURES, "const"), map(float, self.weights)))}


def cross_validate(table, folds: int = 5, n_archs: int = 50, seed: int = 0) -> dict:
    """Hold out 1/folds (20%) of the modelled entries per fold, refit on the rest.

    Returns MAPE (%) per held-out block (and all held-out entries), and for `n_archs` sampled
    archs the MAPE of the raw sum with the held-out entries predicted instead of looked up."""
    frame = table.frame.reset_index(drop=True)
    ms = frame["median_ms"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    modelled = np.flatnonzero(frame["kind"].isin(MODELLED_KINDS).to_numpy() & (ms > 0))
    fold_of = np.full(len(frame), -1)
    fold_of[rng.permutation(modelled)] = np.arange(len(modelled)) % folds
    archs = [table.space.sample(rng) for _ in range(n_archs)]
    archs += [table.space.smallest(), table.space.largest(), table.space.baseline]
    ids = [table.ids(a) for a in archs]
    full = table.raw_many(archs)
    block_err, entry_err, subnet_err = [], [], []
    for f in range(folds):
        held = fold_of == f
        model = LatencyModel.fit(frame[~held])
        pred = model.predict_frame(frame[held])
        err = np.abs(pred - ms[held]) / ms[held] * 100
        entry_err.append(err)
        block_err.append(err[frame["kind"].to_numpy()[held] == "block"])
        values = ms.copy()
        values[held] = pred
        raw = np.array([values[i] @ wt for i, wt in ids])
        subnet_err.append(np.abs(raw - full) / full * 100)
    blocks, entries, subnets = map(np.concatenate, (block_err, entry_err, subnet_err))
    return {"folds": folds, "held_out_pct": 100 / folds, "n_entries": int(len(modelled)),
            "block_mape_pct": float(blocks.mean()), "block_p90_error_pct": float(np.percentile(blocks, 90)),
            "entry_mape_pct": float(entries.mean()), "n_archs": len(archs),
            "subnet_mape_pct": float(subnets.mean()),
            "subnet_max_error_pct": float(subnets.max())}
