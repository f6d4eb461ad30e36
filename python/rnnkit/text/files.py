"""Reading text files: encodings, line endings, refusing binary files; the path
of the corpus that ships with rnnkit."""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = "war_and_peace_opening.txt"
MAX_BYTES = 1 << 31
"""Default size bound of :func:`read_text` (2 GiB): a corpus is held in memory
several times over (bytes, text, ids), so a larger file is refused up front."""
_HEAD = 1 << 16  # bytes sniffed for binary content before the rest is read


class TextFileError(ValueError):
    """A file that is not text (binary), or not in the encoding asked for."""


_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 controls that do not occur in text (tab, LF, VT, FF, CR and ESC do)
_BINARY_BYTES = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27})


def decode_text(
    data: bytes, encoding: str | None = None, name: str = "<bytes>"
) -> tuple[str, str]:
    """Decodes ``data`` and normalises line endings; returns ``(text, encoding)``.

    Parameters
    ----------
    data : the file's bytes.
    encoding : a Python codec name, or None to detect: a byte-order mark (UTF-8,
        UTF-16, UTF-32), else UTF-8, else Windows-1252 (``cp1252``; Latin-1 for
        its five undefined bytes).
    name : what error messages call the input (the path).

    CRLF and lone CR become LF; a leading BOM is dropped. Raises
    :class:`TextFileError` for binary input (NUL bytes without a BOM, or many
    control bytes) and for bytes that are invalid in an explicit ``encoding``.
    """
    if encoding is None:
        for bom, enc in _BOMS:
            if data.startswith(bom):
                encoding, data = enc, data[len(bom) :]
                break
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as e:
            raise TextFileError(
                f"{name}: not valid {encoding} text: byte {e.start} ({e.reason})"
            ) from None
        text = text.removeprefix("\ufeff")
        return _newlines(text), encoding
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TextFileError(
            f"{name}: looks like a binary file (NUL byte at offset {nul}), not text; "
            "for UTF-16/32 without a byte-order mark pass the encoding explicitly"
        )
    try:
        return _newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    head = data[: 1 << 16]
    controls = len(head) - len(head.translate(None, _BINARY_BYTES))
    if controls > 0.01 * len(head):
        raise TextFileError(
            f"{name}: looks like a binary file ({controls} control bytes in the first "
            f"{len(head)}), and it is not valid UTF-8"
        )
    try:
        return _newlines(data.decode("cp1252")), "cp1252"
    except UnicodeDecodeError:
        return _newlines(data.decode("latin-1")), "latin-1"


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _read_bounded(path: Path, encoding: str | None, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, its head sniffed first.

    Opened without blocking (a FIFO must not wait for a writer) and checked on
    the descriptor: a directory, device or pipe is refused before any read; a
    file larger than ``max_bytes`` before it is read; NUL bytes in the first
    64 KiB (without an explicit encoding or a byte-order mark) before the rest.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TextFileError(f"{path}: is a directory, not a text file")
        if not stat.S_ISREG(st.st_mode):  # a device or pipe could be read forever
            raise TextFileError(f"{path}: not a regular file")
        if st.st_size > max_bytes:
            raise TextFileError(
                f"{path}: {st.st_size:,} bytes, more than max_bytes={max_bytes:,}"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            head = f.read(_HEAD)
            if encoding is None and not any(head.startswith(b) for b, _ in _BOMS):
                nul = head.find(b"\x00")
                if nul >= 0:
                    decode_text(head, None, str(path))  # raises, naming the offset
            rest = f.read(max_bytes + 1 - len(head))
    finally:
        os.close(fd)
    data = head + rest
    if len(data) > max_bytes:  # grew while being read
        raise TextFileError(f"{path}: more than max_bytes={max_bytes:,} bytes")
    return data


def load_text(
    path: Any, encoding: str | None = None, max_bytes: int = MAX_BYTES
) -> tuple[str, str]:
    """``(text, encoding)`` of the file at ``path`` (see :func:`read_text`).

    Examples
    --------
    >>> text, enc = load_text(default_corpus_path())
    >>> enc
    'utf-8'
    """
    p = Path(path)
    return decode_text(_read_bounded(p, encoding, max_bytes), encoding, str(p))


def read_text(
    path: Any, encoding: str | None = None, max_bytes: int = MAX_BYTES
) -> str:
    """The text of the file at ``path``; see :func:`decode_text` for the rules.

    Parameters
    ----------
    path : a regular file (a directory, FIFO or device raises
        :class:`TextFileError` without blocking or reading).
    encoding : as in :func:`decode_text`.
    max_bytes : larger files are refused before they are read (default 2 GiB).

    Examples
    --------
    >>> text = read_text(default_corpus_path())
    >>> len(text), text[:6]
    (400192, '"Well,')
    """
    return load_text(path, encoding, max_bytes)[0]


def default_corpus_path() -> Path:
    """Path of the corpus that ships with the package (``rnnkit/data/``; see the
    :mod:`rnnkit.text` docstring)."""
    return Path(__file__).resolve().parent.parent / "data" / DEFAULT_CORPUS


__all__ = [
    "DEFAULT_CORPUS",
    "TextFileError",
    "MAX_BYTES",
    "decode_text",
    "default_corpus_path",
    "load_text",
    "read_text",
]
