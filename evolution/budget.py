"""Latency budgets: parse ``"12ms"`` / ``"12"`` / ``"0.012s"`` to milliseconds and check them.

    >>> parse_budget("12ms"), parse_budget("12"), parse_budget("0.012s")
    (12.0, 12.0, 12.0)

`check_budget` compares a budget with the space's latency range: a budget below the fastest subnet
cannot be met (ValueError naming the fastest latency); one above the slowest does not constrain the
search (a warning), which is legal but almost always a typo (e.g. seconds read as milliseconds).
"""

from __future__ import annotations

import math
import re
import warnings

_BUDGET_RE = re.compile(r"\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)\s*(?P<unit>ms|s|us)?\s*",
                        re.IGNORECASE)
_TO_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3}


def parse_budget(value: str | float | int) -> float:
    """A latency budget in milliseconds; a bare number is milliseconds. ValueError names the value."""
    if isinstance(value, bool):
        raise ValueError(f"cannot parse latency budget {value!r}: expected e.g. '12ms' or '0.012s'")
    if isinstance(value, (int, float)):
        ms = float(value)
    else:
        m = _BUDGET_RE.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            raise ValueError(f"cannot parse latency budget {value!r}: expected e.g. '12ms', '12' (ms) "
                             "or '0.012s'")
        ms = float(m["number"]) * _TO_MS[(m["unit"] or "ms").lower()]
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"latency budget {value!r} must be a positive, finite time")
    return ms


def check_budget(budget_ms: float, fastest_ms: float, slowest_ms: float) -> None:
    """Error if no subnet meets `budget_ms`; warn if every subnet does (the budget does not constrain)."""
    if budget_ms < fastest_ms:
        raise ValueError(f"latency budget {budget_ms:g} ms is below the fastest subnet of the space "
                         f"({fastest_ms:.3f} ms): no architecture can meet it; raise the budget")
    if budget_ms > slowest_ms:
        warnings.warn(f"latency budget {budget_ms:.3f} ms is above the slowest subnet of the space "
                      f"({slowest_ms:.3f} ms): the budget does not constrain the search", stacklevel=2)
