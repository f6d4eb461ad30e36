"""Atomic file writes, for every file rnnkit saves (``.rk``/``.npz`` checkpoints,
``.safetensors``, ONNX graphs).

A temporary file in the same directory, flushed to disk, then renamed over the
target, so a crash leaves the old file or the new one, never a torn one. Saving
over a file keeps its permission bits; saving through a symlink replaces the file
the link points to and keeps the link; the temporaries of earlier saves to the same
path that were killed are removed (a live writer holds a lock on its temporary).
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["write_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]
) -> None:
    """Calls ``write(f)`` on a temporary file next to ``path``, then renames it.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place; its directory must exist.
    write : callable
        Writes the whole content to the binary file object it is given.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> write_atomic(p, lambda f: f.write(b"abc"))
    >>> open(p, "rb").read()
    b'abc'
    """
    path = os.path.realpath(os.fspath(path))  # through a symlink: keep the link
    directory, base = os.path.split(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    _remove_orphans(directory, base)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:  # held while writing: marks the temporary live
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)
            if fcntl is not None:  # renamed under the lock (POSIX)
                os.replace(tmp, path)
        if fcntl is None:  # Windows cannot rename an open file
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not on every platform)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


_ORPHAN_AGE = (2.0, 3600.0)
"""Seconds since a temporary was last written before it may be an orphan: with
``fcntl`` (and then only when no writer holds its lock; the margin covers the
instant between its creation and its writer taking the lock), and without."""


def _remove_orphans(directory: str, base: str) -> None:
    """Deletes temporaries of earlier saves to ``base`` that were killed.

    A writer holds an exclusive ``flock`` on its temporary until the rename, so
    a temporary whose lock can be taken belongs to no live save.
    """
    prefix = f".{base}."
    try:
        names = [
            n
            for n in os.listdir(directory)
            if n.startswith(prefix) and n.endswith(".tmp") and len(n) > len(prefix) + 4
        ]
    except OSError:
        return
    for n in names:
        full = os.path.join(directory, n)
        try:
            age = time.time() - os.lstat(full).st_mtime
            if fcntl is None:
                if age > _ORPHAN_AGE[1]:
                    os.unlink(full)
                continue
            if age < _ORPHAN_AGE[0]:
                continue
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a save in progress
            else:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.unlink(full)
            finally:
                os.close(fd)
        except OSError:
            continue
