"""Run ``cotbridge`` with a file-system fault in one folder, for machines where a test cannot mount a small tmpfs
or a read-only bind (tests/test_filesystem_faults.py uses those where it can).

    python tests/fs_fault_shim.py full FOLDER BYTES -- ARGS...    # ENOSPC once BYTES were written under FOLDER
    python tests/fs_fault_shim.py readonly FOLDER 0 -- ARGS...    # EROFS for every change under FOLDER

Only Python's own writes are reached (``open``, ``os.open``/``os.write``, ``mkdir``, ``replace``, ``unlink``), as the
kernel would answer them: a full disk writes what fits and then fails with ENOSPC, naming no file; a read-only one
refuses to create, change, rename or remove anything. Native writers (SQLite, safetensors, torch) are not reached.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys

FLAGS_THAT_WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class Fault:
    def __init__(self, kind: str, folder: str, budget: int):
        self.kind, self.folder, self.budget = kind, os.path.abspath(folder), budget
        self.fds: set[int] = set()  # descriptors opened for writing under the folder

    def under(self, path: object) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fsdecode(os.fspath(path)))
        return p == self.folder or p.startswith(self.folder + os.sep)

    def refuse(self, path: object) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(os.fspath(path)))

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` bytes still fit on the "disk"."""
        granted = min(wanted, self.budget)
        self.budget -= granted
        return granted


def full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write(2) reports it: no file name


class FillingFile:
    """A file object on a disk that fills up: writes what fits, then raises ENOSPC."""

    def __init__(self, f, fault: Fault):
        self._f, self._fault = f, fault

    def write(self, data):
        size = len(data.encode("utf-8") if isinstance(data, str) else bytes(data))
        granted = self._fault.take(size)
        if granted == size:
            return self._f.write(data)
        if granted:
            self._f.write(data[:granted])
        self._f.flush()
        raise full()

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


def install(fault: Fault) -> None:
    real_open, real_os_open, real_write = io.open, os.open, os.write
    real_mkdir, real_replace, real_rename, real_unlink, real_rmdir = (
        os.mkdir,
        os.replace,
        os.rename,
        os.unlink,
        os.rmdir,
    )

    def open_(file, mode="r", *args, **kwargs):
        writes = any(c in mode for c in "wax+")
        if not writes or not fault.under(file):
            return real_open(file, mode, *args, **kwargs)
        if fault.kind == "readonly":
            raise fault.refuse(file)
        return FillingFile(real_open(file, mode, *args, **kwargs), fault)

    def os_open(path, flags, *args, **kwargs):
        if flags & FLAGS_THAT_WRITE and fault.under(path):
            if fault.kind == "readonly":
                raise fault.refuse(path)
            fd = real_os_open(path, flags, *args, **kwargs)
            fault.fds.add(fd)
            return fd
        return real_os_open(path, flags, *args, **kwargs)

    def os_write(fd, data):
        if fd not in fault.fds:
            return real_write(fd, data)
        granted = fault.take(len(data))
        if not granted:
            raise full()
        return real_write(fd, bytes(data)[:granted])

    def refusing(real):
        def call(path, *args, **kwargs):
            if fault.kind == "readonly" and fault.under(path):
                raise fault.refuse(path)
            return real(path, *args, **kwargs)

        return call

    def mkdir(path, *args, **kwargs):
        if fault.kind == "readonly" and fault.under(path):
            if os.path.lexists(path):  # the kernel answers EEXIST first
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(os.fspath(path)))
            raise fault.refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def moving(real):
        def call(src, dst, *args, **kwargs):
            if fault.kind == "readonly" and (fault.under(src) or fault.under(dst)):
                raise fault.refuse(dst)
            return real(src, dst, *args, **kwargs)

        return call

    io.open = builtins.open = open_
    os.open, os.write, os.mkdir = os_open, os_write, mkdir
    os.replace, os.rename = moving(real_replace), moving(real_rename)
    os.unlink = os.remove = refusing(real_unlink)
    os.rmdir = refusing(real_rmdir)


if __name__ == "__main__":
    kind, folder, budget, dashes, *args = sys.argv[1:]
    assert kind in ("full", "readonly") and dashes == "--", sys.argv
    install(Fault(kind, folder, int(budget)))
    sys.argv = ["cotbridge", *args]
    from cotbridge.cli import main

    main()
