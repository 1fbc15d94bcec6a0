"""`Archive`: every evaluated candidate, keyed by its arch string (or vector key); the search cache.

One row per distinct candidate, in evaluation order: ``generation`` (first asked for; -1 for a row
evaluated only as the baseline), the key column (``arch``), the evaluator's metrics, then the
objective values ``f0..`` and constraint values ``g0..`` the search saw. Persisted as CSV (floats
written shortest-round-trip and parsed back by Python's ``float``, so a resumed search sees
bit-identical objective values).

    >>> archive = Archive("arch")
    >>> archive.add("K3C8S2", {"ap": 0.5}, F=[-0.5, 3.0], G=[-1.0], generation=0)
    >>> archive.objectives(["K3C8S2"])[0].tolist()
    [[-0.5, 3.0]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.io import atomic_write_csv


class Archive:
    def __init__(self, key_name: str = "arch"):
        self.key_name = key_name
        self._rows: dict[str, dict] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, key: str) -> dict:
        return self._rows[key]

    def keys(self) -> list[str]:
        return list(self._rows)

    def add(self, key: str, metrics: dict, F, G=(), generation: int = 0, **flags) -> None:
        if key in self._rows:
            raise KeyError(f"{key!r} is already in the archive (an arch is evaluated once)")
        row = {"generation": int(generation), self.key_name: key, **metrics, **flags}
        row.update({f"f{i}": float(v) for i, v in enumerate(np.ravel(F))})
        row.update({f"g{i}": float(v) for i, v in enumerate(np.ravel(G))})
        self._rows[key] = row

    def objectives(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(F, G) of `keys` as stored: shapes (n, n_obj) and (n, n_constr)."""
        rows = [self._rows[k] for k in keys]
        fcols = [c for c in rows[0] if c[0] == "f" and c[1:].isdigit()] if rows else []
        gcols = [c for c in rows[0] if c[0] == "g" and c[1:].isdigit()] if rows else []
        F = np.array([[r[c] for c in fcols] for r in rows], dtype=float).reshape(len(rows), -1)
        G = np.array([[r[c] for c in gcols] for r in rows], dtype=float).reshape(len(rows), -1)
        return F, G

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows.values()))

    def save(self, path: str | Path) -> None:
        atomic_write_csv(self.frame(), path)

    @classmethod
    def load(cls, path: str | Path, key_name: str = "arch") -> "Archive":
        # every cell as text, converted by Python (float() round-trips exactly on any pandas)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if key_name not in frame.columns:
            raise ValueError(f"{path}: no {key_name!r} column (not a search archive?)")
        archive = cls(key_name)
        for row in frame.to_dict("records"):
            key = row[key_name]
            archive._rows[key] = {k: v if k == key_name else _parse_cell(v) for k, v in row.items()}
        return archive


def _parse_cell(text: str):
    """A CSV cell back to what was written: bool, int, float, None (empty) or str."""
    if text in ("True", "False"):
        return text == "True"
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
