"""Write a self-contained HTML report of a search: front, retrained subnets, supernet training.

    python report.py runs/default/search
    python report.py runs/x/search --supernet-run runs/x --latency-table runs/x/latency.csv \\
        --retrained runs/x/retrain/1a2b3c4d --retrained runs/y/retrain/5e6f7a8b

Writes report.html (opens offline: images embedded as base64 PNG, no external CSS/JS) and
report_*.png into the search folder (or --out). The supernet run, latency table and retrained
models are found from the search's run folder (runs/<name>/) unless given; missing pieces are
noted in the report. See stages/report.py.
"""

import sys

from stages.cli import main as facenas, run_command


def main(argv: list[str] | None = None):
    """`facenas report` (stages/cli.py): the same flags, the same result."""
    return run_command("report", argv)


if __name__ == "__main__":
    facenas(["report", *sys.argv[1:]])  # errors: one line; Ctrl-C: exit 130, resumable
