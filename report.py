"""Write a self-contained HTML report of a search: front, retrained subnets, supernet training.

    python report.py runs/default/search
    python report.py runs/x/search --supernet-run runs/x --latency-table runs/x/latency.csv \\
        --retrained runs/x/retrain/1a2b3c4d --retrained runs/y/retrain/5e6f7a8b

Writes report.html (opens offline: images embedded as base64 PNG, no external CSS/JS) and
report_*.png into the search folder (or --out). The supernet run, latency table and retrained
models are found from the search's run folder (runs/<name>/) unless given; missing pieces are
noted in the report. See evolution/report.py.
"""

from __future__ import annotations

import argparse
import sys


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("search", help="search folder (candidates.csv, pareto.csv, search.yaml)")
    p.add_argument("--supernet-run", help="supernet run folder (log.csv, evals.csv); default: "
                                          "the search folder's parent")
    p.add_argument("--latency-table", help="latency table CSV (its .validation.json/.png are shown)")
    p.add_argument("--retrained", action="append", default=[], metavar="DIR",
                   help="retrain folder or metrics.json, besides <run>/retrain/* (repeatable)")
    p.add_argument("--out", help="HTML path (default <search>/report.html)")
    return p


def main(argv: list[str] | None = None):
    args = get_args_parser().parse_args(argv)
    from evolution.report import build_report

    try:
        path = build_report(args.search, args.supernet_run, args.latency_table, args.retrained,
                            args.out)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"report written to {path}")
    return path


if __name__ == "__main__":
    main()
