"""One writer per run folder: an OS-level lock (``fcntl.flock``) on a lock file inside the folder.

    >>> with hold_lock("runs/default"):  # doctest: +SKIP
    ...     train(...)                   # a second writer: LockError naming this process's PID

The lock belongs to the open file, so the kernel drops it when the process ends in any way
(SIGKILL and power cuts included): a lock file on disk is never stale, and it is never deleted
(deleting it would let two processes lock two different files of the same name). The holder
writes its PID into the file so the refusal can name it. A process may take a lock it already
holds again (the pipeline holds its run folder while its stages lock it too); forked children
(DataLoader workers) do not keep it.

Under torchrun only rank 0 writes, so only rank 0 calls `Lock.acquire`, at a point where its
refusal is shared with the other ranks (see `stages.trainer.train`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"  # inside the run folder
_held: dict[str, list[int]] = {}  # resolved lock path -> [fd, holders] in this process


class LockError(RuntimeError):
    """Another process holds the lock."""


def _drop_inherited() -> None:
    """In a forked child (DataLoader workers): close the inherited lock fds. Closing never unlocks
    the parent (its own fd still refers to the lock), but a child that outlives a SIGKILLed parent
    by a few seconds would otherwise keep the folder locked."""
    for fd, _ in _held.values():
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited)


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"  # the holder writes its PID just after locking


class Lock:
    """The lock file `folder`/`name`: `acquire()` (LockError naming `what`, default the folder,
    and the holder's PID), `release()` (only what this object acquired), or ``with``."""

    def __init__(self, folder: str | Path, name: str = LOCK_NAME, what: str | Path | None = None):
        self.folder, self.name, self.what = Path(folder), name, what or folder
        self.acquired = False

    def acquire(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = (self.folder / self.name).resolve()
        if self.acquired:
            return path
        key = str(path)
        if key not in _held:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise LockError(f"{self.what} is being written by another process (PID {holder}); "
                                "wait for it to finish, or use another output folder") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[key] = [fd, 0]
        _held[key][1] += 1
        self.acquired, self._key = True, key
        return path

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        entry = _held.get(self._key)  # None in a forked child, which dropped the inherited lock
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self._key]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])

    def __enter__(self) -> Path:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def hold_lock(folder: str | Path) -> Lock:
    """The lock of a run folder (``<folder>/.lock``); use with ``with`` or acquire/release."""
    return Lock(folder)


def hold_file_lock(path: str | Path) -> Lock:
    """The lock of one file that is not a whole run folder (a latency table): ``.<name>.lock``
    beside it."""
    path = Path(path)
    return Lock(path.parent, f".{path.name}.lock", what=path)
