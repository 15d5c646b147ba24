"""Files written whole or not at all, and I/O errors that name their file.

Every output file (JSON, JSONL, Markdown, YAML, HTML, PNG) is written to ``<name>.tmp`` beside it, flushed to disk
and renamed over its target: a full disk, a read-only folder or a crash leaves the previous version (or nothing),
never half a file, and the ``.tmp`` is removed. An ``OSError`` raised while writing is raised again naming the
target (errors of ``write``, ``flush`` and ``fsync`` name no file, and the temporary file's name means nothing to
the user), so the CLI's one line says which path failed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def naming(e: OSError, path: str | Path, *, replace: tuple[str, ...] = ()) -> OSError:
    """``e``, now naming ``path`` unless it names another file already (a folder that could not be made);
    ``replace``: file names it may lose, e.g. a temporary file's."""
    if e.filename is None or str(e.filename) in replace:
        e.filename = str(path)
    return e


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a read-only folder could not have made it; nothing else to do here
        pass


@contextmanager
def replacing(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A file object whose contents replace ``path`` when the block ends without an error; on any error the
    temporary file is removed and ``path`` keeps what it held (an ``OSError`` is raised naming ``path``)."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _discard(tmp)
        if isinstance(e, OSError):
            naming(e, path, replace=(str(tmp),))
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) whole, or leave it as it was."""
    with replacing(path) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path, binary=True) as f:
        f.write(data)
    return Path(path)


def append_whole(path: str | Path, payload: bytes) -> None:
    """Append ``payload`` and fsync it, all of it or nothing: a failed write (a full disk) is cut off again, so the
    file ends where it ended before; a file this call created is removed. The ``OSError`` names ``path``."""
    path = Path(path)
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        naming(e, path)
        raise
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(payload)
            while view:  # os.write may write less than asked; finish the job
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)  # freeing blocks works on a full disk
                if not existed and start == 0:
                    os.unlink(path)
            except OSError:
                pass
            naming(e, path)
            raise
    finally:
        os.close(fd)


# Writers in native code (safetensors, torch's zip writer) raise their own exceptions for I/O failures.
_NATIVE_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
    "Disk quota exceeded": errno.EDQUOT,
}
_OS_ERROR = re.compile(r"os error (\d+)|" + "|".join(_NATIVE_WORDS))


def as_os_error(e: BaseException, path: str | Path) -> OSError | None:
    """The ``OSError`` (naming ``path``) behind a native writer's I/O failure, e.g. safetensors' ``SafetensorError:
    I/O error: No space left on device (os error 28)`` or torch's zip writer (``[enforce fail at
    inline_container.cc] unexpected pos``, ``PytorchStreamWriter failed writing file``: no errno, so the folder's
    free space decides); ``None`` when ``e`` is no I/O failure."""
    if isinstance(e, OSError):
        return naming(e, path)
    text = str(e)
    torch_writer = "inline_container.cc" in text or "PytorchStreamWriter" in text
    if type(e).__name__ != "SafetensorError" and not torch_writer:
        return None
    found = _OS_ERROR.search(text)
    if found is not None:
        code = int(found.group(1)) if found.group(1) else _NATIVE_WORDS[found.group(0)]
    elif torch_writer:
        code = _likely_errno(Path(path))
    else:
        return None  # a safetensors error that is not about I/O (a bad tensor): a bug, with its traceback
    return OSError(code, os.strerror(code), str(path))


def _likely_errno(folder: Path) -> int:
    """Why a writer that gives no errno failed in ``folder``: a full disk if under 1 MiB is free there."""
    for where in (folder, *folder.parents):
        if where.exists():
            try:
                st = os.statvfs(where)
            except OSError:
                break
            return errno.ENOSPC if st.f_bavail * st.f_frsize < 2**20 else errno.EIO
    return errno.EIO


STAGING = ".saving.tmp"


@contextmanager
def staged(folder: str | Path) -> Iterator[Path]:
    """A staging folder inside ``folder`` for a save of several files (a model: weights, config, tokenizer); when
    the block ends without an error each file or subfolder is moved over its namesake in ``folder``, so a full disk
    leaves the previous save as it was, never half a model. On an error the staging folder is removed, and an I/O
    failure (native writers' included, see :func:`as_os_error`) is raised as an ``OSError`` naming ``folder``."""
    folder = Path(folder)
    stage = folder / STAGING
    try:
        remove_tree(stage)
        stage.mkdir(parents=True)
        yield stage
        for entry in sorted(stage.iterdir()):
            target = folder / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
        stage.rmdir()
    except BaseException as e:
        remove_tree(stage)
        if isinstance(e, OSError) and str(e.filename or "").startswith(str(stage)):
            e.filename = str(folder)  # the staged file is gone: name the folder it was for
        failure = as_os_error(e, folder) if isinstance(e, Exception) else None
        if failure is None or failure is e:
            raise
        raise failure from e


def save_pretrained_staged(folder: str | Path, *parts: Any) -> None:
    """``part.save_pretrained`` for each part (a model, its tokenizer) through :func:`staged`: a failed save leaves
    the previous model in ``folder`` whole and no partial files."""
    with staged(folder) as stage:
        for part in parts:
            part.save_pretrained(stage)


def remove_tree(path: str | Path) -> None:
    """Remove a folder (a partial checkpoint or staged save), quietly: it is being cleaned up after a failure."""
    shutil.rmtree(path, ignore_errors=True)
