"""Atomic file writes: a temporary file in the same directory, flushed to disk,
then renamed over the target, so a crash leaves the old file or the new one,
never a torn one (what :mod:`rnnkit.io` does for ``.npz`` checkpoints)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO

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
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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
