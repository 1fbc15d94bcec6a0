"""Atomic file writes: every artifact goes to a temp file in the same folder, then os.replace.

A crash (or SIGKILL) mid-write leaves either the old file or the new one, never half of either.
A SIGKILL can leave the temp file (``.<name>.<8 random chars>.tmp``) behind; the next write of
the same file removes it, so a resumed run that rewrites its artifacts leaves no temp files.

    >>> atomic_write_text("runs/x/arch.txt", "K3C16S2\\n")  # doctest: +SKIP

Files get the mode 0666 minus the umask, like any file the user writes. `read_text` reads a text
input and names the file and line of a byte that is not UTF-8.
"""

from __future__ import annotations

import io
import os
import re
import secrets
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


_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _create_temp(path: Path) -> Path:
    """A new empty ``.<name>.<8 random chars>.tmp`` beside `path`, created with mode 0666 minus
    the umask like any file the user writes (tempfile.mkstemp would make it 0600)."""
    for _ in range(100):
        tag = "".join(secrets.choice(_TEMP_CHARS) for _ in range(8))
        tmp = path.parent / f".{path.name}.{tag}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # left by a writer killed mid-write (no except clause ran)
    tmp = _create_temp(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_text(path: str | Path) -> str:
    """The UTF-8 text of `path`; ValueError naming the file and the line of the first byte that
    is not UTF-8 (a UTF-16 or Latin-1 file, a binary file under a text name)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at offset "
                         f"{err.start})") from None


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


def true_rows(frame, column: str):
    """Boolean mask of the rows whose `column` reads true (a CSV flag such as ``baseline``: pandas
    parses it as bool, or as text when a row is blank or the file was edited by hand)."""
    return frame[column].astype(str).str.lower() == "true"
