"""One writer per folder: an exclusive lock on a run directory (or a training output folder) for a whole command.

Two ``cotbridge teach`` processes on one run directory used to both append records (and both pay). The lock is an
``flock`` on ``<folder>/.lock``, which also holds the owner's PID so the refusal can name it; the kernel drops the
lock when its process dies, so a crash (even SIGKILL) never leaves a stale lock behind. Inside one process the lock
is re-entrant: a recipe holds its run directory and the teach stage it runs takes the same lock again for free.
A folder the lock created and that holds nothing else when the lock ends (a command that failed before writing)
is removed again, lock file and all: a failed command leaves no empty folder behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cotbridge.errors import UserError

LOCK_NAME = ".lock"
_held: dict[Path, list[int]] = {}  # folder -> [lock file's fd, holds in this process, 1 if the lock made the folder]
_guard = threading.Lock()


def _holder(fd: int) -> str:
    """The holder's PID; it writes it right after taking the lock, so an empty file is re-read for a moment."""
    pid = ""
    for _ in range(20):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            pid = os.read(fd, 32).decode(errors="replace").strip()
        except OSError:
            break
        if pid:
            break
        time.sleep(0.05)
    return f"PID {pid}" if pid else "another process"


@contextmanager
def folder_lock(folder: str | Path, option: str = "--run-dir") -> Iterator[Path]:
    """Hold ``folder`` exclusively (creating it) until the block ends; refuse at once if another process holds it.

    ``option``: the command-line option that picks another folder, named in the refusal."""
    path = Path(folder).resolve()
    with _guard:
        reentered = path in _held
        if reentered:
            _held[path][1] += 1
    if not reentered:
        created = not path.exists()
        fd = _acquire(path, option)
        with _guard:
            _held[path] = [fd, 1, int(created)]
    try:
        yield path
    finally:
        with _guard:
            _held[path][1] -= 1
            fd, _, created = _held.pop(path) if _held[path][1] == 0 else (None, 0, 0)
        if fd is not None:  # the last hold in this process ends: release the lock
            if created:
                _remove_if_empty(path)  # while still holding it: no other process is inside
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _remove_if_empty(path: Path) -> None:
    """Remove ``path`` if nothing but its lock file (and empty folders) is in it. Another process that opened the
    lock file meanwhile finds, once it holds the lock, that the file is no longer the folder's (``_acquire`` checks)
    and starts over."""
    try:
        files = [Path(folder, name) for folder, _, names in os.walk(path) for name in names]
        if files != [path / LOCK_NAME]:
            return
        os.unlink(path / LOCK_NAME)
        for folder, _, _ in os.walk(path, topdown=False):
            os.rmdir(folder)
    except OSError:  # something arrived, or the disk refuses: the folder stays, as it would have anyway
        pass


def _acquire(path: Path, option: str) -> int:
    """Create ``path``, lock its lock file (refusing at once if another process holds it) and write our PID."""
    for _ in range(100):  # the lock file was removed under us (its folder emptied, above): take the new one
        fd = _lock(path, option)
        try:
            if os.fstat(fd).st_ino == os.stat(path / LOCK_NAME).st_ino:
                break
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    else:
        raise UserError(f"{path}: its lock file keeps being replaced; is another program removing it?")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # a full disk: the lock holds without its PID (a refusal then says "another process")
        pass
    return fd


def _lock(path: Path, option: str) -> int:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        why = "a file stands where a folder belongs: " if e.errno in (errno.ENOTDIR, errno.EEXIST) else ""
        raise UserError(
            f"{path}: cannot create or lock this folder ({e.strerror}); {why}choose another {option}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise UserError(
            f"{path} is in use by {holder} (another cotbridge command writing there); wait for it to finish "
            f"or choose another {option}"
        ) from None
    return fd
