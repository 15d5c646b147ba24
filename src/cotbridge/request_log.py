"""``cotbridge serve``'s request log: one JSON line per request, appended whole, and a log that cannot be written
never stops the server from answering (issue #24.8)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("cotbridge.server")  # the warnings keep the server's logger name
LOG_RETRY_S = 30.0  # a request log that failed is tried again after this long


class RequestLog:
    """The request log: appends one JSON line per request, and never lets a failed write fail the request.

    When a write fails (disk full, read-only file system, folder removed) the line is dropped, one warning names the
    file, the error and the fix, and writing is tried again every ``retry_s`` seconds, since the usual causes (a full
    disk, a remount) pass while the server keeps running; lines that arrive in between are dropped and counted. The
    count is reported when writing works again and at close.
    """

    def __init__(self, path: str | Path, retry_s: float = LOG_RETRY_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_s = retry_s
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        self._failing = False
        self._failed_at = 0.0
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # as open(): umask applies

    def write(self, line: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._failing and time.monotonic() - self._failed_at < self.retry_s:
                self.dropped += 1
                return
            try:
                self._append(line)
            except OSError as e:
                self.dropped += 1
                self._failed_at = time.monotonic()
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "request log %s cannot be written (%s): requests are still answered but not logged; "
                        "free disk space or make the file writable (retrying every %g s, dropped lines are counted)",
                        self.path,
                        e,
                        self.retry_s,
                    )
                return
            if self._failing:
                self._failing = False
                log.warning("request log %s is written again; %d line(s) were dropped so far", self.path, self.dropped)

    def _append(self, line: bytes) -> None:
        if self._fd is None or os.fstat(self._fd).st_nlink == 0:  # removed: writes would vanish into the unlinked file
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._fd = self._open()  # raises while the folder is gone
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(line)
            while view:  # a nearly full disk takes part of the line, then raises ENOSPC on the rest
                view = view[os.write(self._fd, view) :]
        except OSError:
            try:  # no torn line: readers of the log see whole entries only
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.dropped:
                log.warning("request log %s: %d line(s) could not be written, dropped", self.path, self.dropped)
