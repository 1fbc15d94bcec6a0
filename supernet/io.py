"""Atomic file writes: every artifact goes to a temp file in the same folder, then os.replace.

A crash (or SIGKILL) mid-write leaves either the old file or the new one, never half of either.
A SIGKILL can leave the temp file (``.<name>.<8 random chars>.tmp``) behind; the next write of
the same file removes it, so a resumed run that rewrites its artifacts leaves no temp files.

    >>> atomic_write_text("runs/x/arch.txt", "K3C16S2\\n")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temp files a killed writer of `path` left beside it; returns them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    stale = [p for p in path.parent.glob(f".{path.name}.*.tmp") if pattern.fullmatch(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # left by a writer killed mid-write (no except clause ran)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_csv(frame, path: str | Path, **kwargs) -> None:
    """Write a pandas DataFrame atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    atomic_write_text(path, frame.to_csv(**kwargs))
