"""Reading text files: encodings, line endings, refusing binary files; the path
of the corpus that ships with rnnkit."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = "war_and_peace_opening.txt"


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


def read_text(path: Any, encoding: str | None = None) -> str:
    """The text of the file at ``path``; see :func:`decode_text` for the rules.

    Examples
    --------
    >>> text = read_text(default_corpus_path())
    >>> len(text), text[:6]
    (400192, '"Well,')
    """
    p = Path(path)
    if p.is_dir():
        raise TextFileError(f"{p}: is a directory, not a text file")
    if p.exists() and not p.is_file():  # a device or pipe could be read forever
        raise TextFileError(f"{p}: not a regular file")
    return decode_text(p.read_bytes(), encoding, str(p))[0]


def default_corpus_path() -> Path:
    """Path of the corpus that ships with the package (``rnnkit/data/``; see the
    :mod:`rnnkit.text` docstring)."""
    return Path(__file__).resolve().parent.parent / "data" / DEFAULT_CORPUS


__all__ = [
    "DEFAULT_CORPUS",
    "TextFileError",
    "decode_text",
    "default_corpus_path",
    "read_text",
]
