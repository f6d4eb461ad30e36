"""The character vocabulary: sorted characters <-> int64 ids, with a policy for
characters it has not seen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

UNKNOWN_POLICIES = ("error", "skip", "replace")
UNK = "\ufffd"  # the token unseen characters become under unknown="replace"


class Vocab:
    """Characters <-> ids, with a policy for characters outside the vocabulary.

    Parameters
    ----------
    tokens : distinct single characters; id ``i`` is ``tokens[i]``.
        :meth:`from_text` sorts them by code point, so a text always maps to the
        same ids.
    unknown : what :meth:`encode` does with a character not in ``tokens``:
        ``"error"`` (default: ``ValueError`` naming it and where it is),
        ``"skip"`` (drop it) or ``"replace"`` (map it to :data:`UNK`, U+FFFD,
        which is then one of the tokens).

    Shapes
    ------
    encode: str of N characters -> int64 (N,) (fewer with ``"skip"``);
    decode: ints (...) -> str.

    Examples
    --------
    >>> v = Vocab.from_text("hello world")
    >>> v.tokens
    (' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w')
    >>> v.encode("hold").tolist(), v.decode([3, 5, 4, 1])
    ([3, 5, 4, 1], 'hold')
    """

    def __init__(self, tokens: Sequence[str], unknown: str = "error") -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(
                f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}"
            )
        toks = list(tokens)
        for i, t in enumerate(toks):
            if not isinstance(t, str) or len(t) != 1:
                raise ValueError(f"tokens[{i}] must be a single character, got {t!r}")
        if len(set(toks)) != len(toks):
            dup = sorted({t for t in toks if toks.count(t) > 1})
            raise ValueError(f"tokens must be distinct, repeated: {dup!r}")
        if unknown == "replace" and UNK not in toks:
            toks.append(UNK)
        if not toks:
            raise ValueError("a vocabulary needs at least one character")
        self.tokens: tuple[str, ...] = tuple(toks)
        self.unknown = unknown
        self._index = {t: i for i, t in enumerate(self.tokens)}
        cps = np.array([ord(t) for t in self.tokens], dtype=np.int64)
        order = np.argsort(cps, kind="stable")
        self._sorted_cps, self._sorted_ids = cps[order], order.astype(np.int64)
        self._cps = cps

    @classmethod
    def from_text(cls, text: str, unknown: str = "error") -> Vocab:
        """The distinct characters of ``text``, sorted by code point."""
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        return cls(sorted(set(text)), unknown=unknown)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocab)
            and self.tokens == other.tokens
            and self.unknown == other.unknown
        )

    def __repr__(self) -> str:
        return f"Vocab({len(self)} characters, unknown={self.unknown!r})"

    def index(self, ch: str) -> int:
        """The id of ``ch`` (``KeyError`` if it is not in the vocabulary)."""
        return self._index[ch]

    def missing(self, text: str) -> list[str]:
        """The distinct characters of ``text`` not in the vocabulary, sorted."""
        return sorted(set(text) - self._index.keys())

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of the characters of ``text``, applying the unknown policy."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        cp = cp.astype(np.int64)
        pos = np.searchsorted(self._sorted_cps, cp)
        pos_c = np.minimum(pos, len(self._sorted_cps) - 1)
        known = self._sorted_cps[pos_c] == cp
        ids = self._sorted_ids[pos_c]
        if known.all():
            return ids
        if self.unknown == "skip":
            return ids[known]
        if self.unknown == "replace":
            ids[~known] = self._index[UNK]
            return ids
        at = int(np.argmax(~known))
        missing = self.missing(text)
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:8])
        raise ValueError(
            f"text contains {len(missing)} character(s) not in the vocabulary of "
            f"{len(self)}: {shown}{' ...' if len(missing) > 8 else ''}; first at "
            f"position {at}. Vocab(unknown='skip' or 'replace') handles them"
        )

    def decode(self, ids: Any) -> str:
        """The string of ``ids`` (any shape, read in C order)."""
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1).astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= len(self))
        if bad.any():
            i = int(np.argmax(bad))
            raise IndexError(
                f"ids contains {int(arr[i])} at position {i}, outside the "
                f"vocabulary of size {len(self)}"
            )
        return self._cps[arr].astype("<u4").tobytes().decode("utf-32-le")

    def to_checkpoint(self) -> tuple[list[str], dict[str, Any]]:
        """``(tokens, meta)``: what a checkpoint stores (``vocab["chars"]``, meta)."""
        return list(self.tokens), {"unknown": self.unknown}


__all__ = ["UNK", "UNKNOWN_POLICIES", "Vocab"]
