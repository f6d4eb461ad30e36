"""Character-level text: reading files, vocabularies, truncated-BPTT batches and a
character language model that trains (``fit``) and writes (``generate``).

    >>> import rnnkit as rk
    >>> text = rk.text.read_text(rk.text.default_corpus_path())
    >>> vocab = rk.text.Vocab.from_text(text)
    >>> train, val = rk.text.split_train_val(vocab.encode(text), val_fraction=0.05)
    >>> lm = rk.text.CharLM(vocab, cell="lstm", hidden_size=256, seed=0)
    >>> history = lm.fit(train, val_data=val, time_budget=60)       # doctest: +SKIP
    >>> print(lm.generate_text("Pierre", 200, temperature=0.8, seed=1))  # doctest: +SKIP

Pieces
------
:func:`read_text`
    A text file in UTF-8 (with or without BOM), UTF-16/32 with a BOM, or (when it
    is not valid UTF-8) Windows-1252; CRLF and CR line endings become LF. Binary
    files raise :class:`TextFileError` saying so.
:class:`Vocab`
    The characters of a text, sorted by code point (so the same text always gives
    the same ids); ``encode`` / ``decode``; a policy for characters it has not
    seen (``unknown="error" | "skip" | "replace"``), saved with the model.
:func:`split_train_val`, :class:`BPTTBatches`
    A held-out validation tail; the training part cut into B parallel streams
    read in consecutive chunks of T characters, so the hidden state at the end
    of one chunk is the right start for the next (stateful truncated BPTT).
:class:`CharLM`
    ``Embedding -> LSTM/GRU/RNN (stacked) -> Linear -> softmax``, a
    :class:`rnnkit.Sequential` underneath (so checkpoints are ordinary rnnkit
    checkpoints, with the vocabulary inside). ``fit`` reports train and
    validation loss in nats and bits per character; ``generate`` streams
    characters one step at a time on the layers' single-step path
    (``layer.stepper``): the prime is read once, the state is carried, nothing
    is ever re-run.

Shapes
------
N characters, V vocabulary, B streams (batch), T chunk length, E embedding,
H hidden, L layers. Ids are int64 (N,); batches (B, T); logits (B, T, V).

The default corpus
------------------
``rnnkit/data/war_and_peace_opening.txt``: the first 400,192 characters (76
distinct) of Leo Tolstoy's *War and Peace* in the Louise and Aylmer Maude
translation (public domain), UTF-8, LF line endings. It ships inside the
package, so ``rnnkit train`` works with no download.
"""

from __future__ import annotations

import codecs
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

DEFAULT_CORPUS = "war_and_peace_opening.txt"
UNKNOWN_POLICIES = ("error", "skip", "replace")
UNK = "\ufffd"  # the token unseen characters become under unknown="replace"
LN2 = math.log(2.0)

_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


# ------------------------------------------------------------------- reading
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
    """Path of the corpus that ships with the package (see the module docstring)."""
    return Path(__file__).resolve().parent / "data" / DEFAULT_CORPUS


# -------------------------------------------------------------- vocabulary
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


# ----------------------------------------------------------------- batching
def split_train_val(
    ids: Any, val_fraction: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: the last ``val_fraction`` of ``ids`` held out (a tail).

    A tail rather than a random sample: text is one long sequence, and a
    held-out tail is text the model has never read in any context. With
    ``val_fraction=0`` the validation part is empty.
    """
    ids = np.asarray(ids)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(ids) * val_fraction)
    if n_val == 1:
        n_val = 2  # one character predicts nothing
    if len(ids) - n_val < 2:
        raise ValueError(
            f"text of {len(ids)} characters is too short to hold out "
            f"{val_fraction:.0%} and still train"
        )
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


class BPTTBatches:
    """Stateful truncated-BPTT batches: B parallel streams, chunks of T steps.

    The N ids give N - 1 (input, next character) pairs; they are cut into B
    streams of ``n = (N - 1) // B`` consecutive pairs (up to B - 1 pairs at the
    end are dropped). Chunk ``j`` is columns ``[j T, (j + 1) T)`` of every stream
    (the last chunk may be shorter), so row ``b`` of chunk ``j + 1`` continues
    row ``b`` of chunk ``j``: the final hidden state of one chunk is the initial
    state of the next.

    Shapes
    ------
    ``batches[j]`` -> ``(x, y)``, both int64 (B, T_j), ``y[b, t]`` the character
    after ``x[b, t]``.

    Examples
    --------
    >>> b = BPTTBatches(np.arange(11), batch_size=2, seq_len=3)
    >>> len(b), b[0][0].tolist(), b[1][0].tolist(), b[0][1].tolist()
    (2, [[0, 1, 2], [5, 6, 7]], [[3, 4], [8, 9]], [[1, 2, 3], [6, 7, 8]])
    """

    def __init__(self, ids: Any, batch_size: int, seq_len: int) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        B, T = int(batch_size), int(seq_len)
        n = (len(ids) - 1) // B
        if n < 1:
            raise ValueError(
                f"{len(ids)} characters are too few for {B} streams "
                "(need at least batch_size + 1)"
            )
        self.batch_size, self.seq_len, self.stream_len = B, T, n
        self.x = ids[: B * n].reshape(B, n)
        self.y = ids[1 : B * n + 1].reshape(B, n)

    def __len__(self) -> int:
        return (self.stream_len + self.seq_len - 1) // self.seq_len

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= j < len(self):
            raise IndexError(f"chunk {j} out of range for {len(self)} chunks")
        j %= len(self)
        s = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return self.x[:, s], self.y[:, s]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for j in range(len(self)):
            yield self[j]

    @property
    def chars_per_epoch(self) -> int:
        return self.batch_size * self.stream_len


def eval_layout(
    ids: Any, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How evaluation covers every one of the N - 1 predictions of ``ids``.

    ``(x, y, x_rest, y_rest)``: B = min(batch_size, N - 1) streams ``x``, ``y``
    (B, n), read in chunks with the state carried like :class:`BPTTBatches`,
    then the ``(N - 1) - B n`` leftover pairs ``x_rest``, ``y_rest`` (k,), which
    continue the last stream: they are read as one more row, starting from the
    final state of stream B - 1. Every prediction is scored exactly once and
    each stream starts from a zero state (as generation does).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(
            f"evaluation needs a 1-D sequence of at least 2 ids, got {ids.shape}"
        )
    B = max(1, min(int(batch_size), len(ids) - 1))
    n = (len(ids) - 1) // B
    x = ids[: B * n].reshape(B, n)
    y = ids[1 : B * n + 1].reshape(B, n)
    return x, y, ids[B * n : -1], ids[B * n + 1 :]


def _nll_sum(logits: np.ndarray, y: np.ndarray) -> float:
    """Sum over positions of ``-log softmax(logits)[y]`` (float64 accumulation)."""
    z = logits.reshape(-1, logits.shape[-1])
    t = y.reshape(-1)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1, dtype=np.float64)) + m[:, 0]
    return float(np.sum(lse - z[np.arange(len(t)), t], dtype=np.float64))


# ----------------------------------------------------------------- sampling
def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if isinstance(temperature, bool) or not (math.isfinite(t) and t >= 0.0):
        raise ValueError(
            f"temperature must be a finite number >= 0, got {temperature!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1
    ):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (0.0 < float(top_p) <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


class Sampler:
    """Draws ids from ``softmax(logits / temperature)``, optionally truncated.

    Sampling is Gumbel-max: ``argmax(logits / temperature + g)`` with ``g`` standard
    Gumbel noise (``-log(-log(u))``, ``u`` uniform from ``rng``) is an exact draw
    from the softmax, and the argmax over a subset is an exact draw from the
    renormalised softmax of that subset, so truncation only picks the subset. The
    noise is drawn ``block`` rows at a time and pre-scaled by the temperature
    (``argmax(z / T + g) = argmax(z + T g)``): a plain draw is one addition and
    one argmax.

    Parameters
    ----------
    temperature : divides the logits; 0 is greedy (argmax, first of ties).
    top_k : keep the k most likely ids (None: all).
    top_p : then keep the smallest set of the most likely ids whose
        probability reaches ``top_p`` (nucleus sampling; None or 1: all).
    rng : ``np.random.Generator``; a seed fixes every draw.

    Shapes
    ------
    ``sampler(logits)`` with logits (V,) -> an int in [0, V).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        rng: np.random.Generator | None = None,
        block: int = 256,
    ) -> None:
        _check_sampling(temperature, top_k, top_p)
        self.temperature = float(temperature)
        self.top_k = None if top_k is None else int(top_k)
        self.top_p = None if top_p is None or top_p >= 1.0 else float(top_p)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.block = int(block)
        self._g: np.ndarray | None = None
        self._i = 0

    def _noise(self, V: int) -> np.ndarray:
        """The next row of ``temperature * g`` (argmax(z/T + g) = argmax(z + T g))."""
        g = self._g
        if g is None or self._i == g.shape[0] or g.shape[1] != V:
            u = self.rng.random((self.block, V))
            with np.errstate(divide="ignore"):
                g = self._g = -self.temperature * np.log(-np.log(u))  # u = 0: -inf
            self._i = 0
        self._i += 1
        return g[self._i - 1]

    def __call__(self, logits: np.ndarray) -> int:
        z = logits if logits.ndim == 1 else logits.reshape(-1)
        if self.temperature == 0.0:
            return int(z.argmax())
        g = self._noise(z.shape[0])
        if self.top_k is None and self.top_p is None:
            return int((z + g).argmax())
        idx = self._candidates(z)
        return int(idx[(z[idx] + g[idx]).argmax()])

    def _candidates(self, z: np.ndarray) -> np.ndarray:
        """Ids that survive top-k, then top-p (any order)."""
        V = z.shape[0]
        idx = None
        if self.top_k is not None and self.top_k < V:
            idx = np.argpartition(z, V - self.top_k)[V - self.top_k :]
        if self.top_p is None:
            return np.arange(V) if idx is None else idx
        zz = z if idx is None else z[idx]
        order = np.argsort(-zz, kind="stable")  # most likely first
        c = np.cumsum(np.exp((zz[order] - zz[order[0]]) / self.temperature))
        n = int(np.searchsorted(c, self.top_p * c[-1])) + 1  # reaches top_p
        return order[:n] if idx is None else idx[order[:n]]


def sample_logits(
    logits: Any,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> int:
    """One id drawn from ``softmax(logits / temperature)`` (see :class:`Sampler`).

    ``temperature == 0`` is greedy. ``top_k`` keeps the k most likely ids, then
    ``top_p`` the smallest set of them whose probability reaches ``top_p``; the
    rest is renormalised. Draws V uniform numbers from ``rng``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sample_logits(np.array([0.0, 5.0, 1.0]), rng, temperature=0)
    1
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return Sampler(temperature, top_k, top_p, rng, block=1)(z)


# -------------------------------------------------------------- the model
@dataclass
class TrainPosition:
    """Where training is: the next chunk to read and what was done so far.

    Saved in a checkpoint's ``meta["train"]["position"]`` by ``rnnkit train``;
    ``CharLM.fit(start=...)`` continues from it (with a zero hidden state: the
    carried state is not saved, which costs one chunk of context per stream).
    """

    epoch: int = 0  # epochs completed
    chunk: int = 0  # next chunk of the current epoch
    steps: int = 0  # optimizer steps
    chars: int = 0  # training characters read
    seconds: float = 0.0  # training time (evaluation and sampling excluded)

    @classmethod
    def from_dict(cls, d: Any) -> TrainPosition:
        if not isinstance(d, dict):
            return cls()
        kw: dict[str, Any] = {}
        for k, kind in (
            ("epoch", int),
            ("chunk", int),
            ("steps", int),
            ("chars", int),
            ("seconds", float),
        ):
            v = d.get(k, 0)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                kw[k] = kind(v)
        return cls(**kw)


@dataclass
class TextHistory:
    """What :meth:`CharLM.fit` measured: one entry per evaluation in each list.

    ``time`` training seconds (evaluation excluded), ``step``, ``epoch`` (float:
    epochs completed, fractional), ``loss`` mean training loss since the previous
    evaluation (nats per character), ``bpc`` the same in bits, ``val_loss`` /
    ``val_bpc`` on the whole validation text (NaN without one), ``chars_per_s``
    training throughput since the previous evaluation (full steps: forward,
    backward, clipping, optimizer).
    """

    time: list[float] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    bpc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_bpc: list[float] = field(default_factory=list)
    chars_per_s: list[float] = field(default_factory=list)
    position: TrainPosition = field(default_factory=TrainPosition)
    stop_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Progress:
    """One updating line on a terminal; one line per evaluation otherwise."""

    def __init__(self, stream: Any) -> None:
        self.on = stream is not False and stream is not None
        self.stream: TextIO = stream if hasattr(stream, "write") else sys.stderr
        self.tty = self.on and bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def update(
        self, label: str, frac: float, loss: float, rate: float, t: float
    ) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1:
            return
        self._last = now
        fill = int(20 * min(max(frac, 0.0), 1.0))
        self.stream.write(
            f"\r{label} [{'#' * fill}{'.' * (20 - fill)}] loss {loss:.3f} "
            f"({loss / LN2:.3f} bpc) {rate:,.0f} chars/s {t:.0f}s "
        )
        self.stream.flush()

    def line(self, text: str) -> None:
        if not self.on:
            return
        pad = " " * 12 if self.tty else ""
        self.stream.write(("\r" if self.tty else "") + text + pad + "\n")
        self.stream.flush()


def _rows(state: list[Any], sl: slice) -> list[Any]:
    """Rows ``sl`` of every recurrent layer's state (the batch axis is 1)."""
    return [
        tuple(s[:, sl] for s in st) if isinstance(st, tuple) else st[:, sl]
        for st in state
    ]


class CharLM:
    """Character-level language model: Embedding -> RNN/LSTM/GRU -> Linear.

    Parameters
    ----------
    vocab : the :class:`Vocab` (its size V is the input and output size).
    cell : ``"lstm"`` (default), ``"gru"`` or ``"rnn"`` (tanh).
    hidden_size : H.
    num_layers : L, stacked in one recurrent layer.
    embedding_dim : E. An embedding is a one-hot input times a learned matrix,
        stored as a lookup table; E < V makes it a cheaper factorisation.
    dtype : float32 (default) or float64.
    seed : int or ``np.random.Generator`` for the initial weights.

    Attributes
    ----------
    model : the :class:`rnnkit.Sequential` (``Embedding, LSTM, Linear``).
    vocab : the :class:`Vocab`.

    Shapes
    ------
    ids (B, T) -> logits (B, T, V); state per recurrent layer (L, B, H), for
    LSTM a tuple ``(h, c)``.

    Examples
    --------
    >>> vocab = Vocab.from_text("the cat sat on the mat. " * 20)
    >>> lm = CharLM(vocab, hidden_size=32, embedding_dim=8, seed=0)
    >>> h = lm.fit(vocab.encode("the cat sat on the mat. " * 20), epochs=30,
    ...            batch_size=4, seq_len=16, progress=False)
    >>> text = lm.generate_text("the ", 20, greedy=True)
    """

    def __init__(
        self,
        vocab: Vocab,
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_dim: int = 64,
        dtype: str | np.dtype = "float32",
        seed: int | np.random.Generator | None = 0,
    ) -> None:
        from . import layers
        from .models import Sequential
        from .modules import Embedding, Linear

        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {tuple(_CELLS)}, got {cell!r}")
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        V = len(vocab)
        rec = getattr(layers, _CELLS[cell])(
            embedding_dim, hidden_size, num_layers=num_layers, dtype=dtype, seed=rng
        )
        model = Sequential(
            Embedding(V, embedding_dim, dtype=dtype, seed=rng),
            rec,
            Linear(hidden_size, V, dtype=dtype, seed=rng),
        )
        self._attach(model, vocab)

    # ------------------------------------------------------------ plumbing
    def _attach(self, model: Any, vocab: Vocab) -> None:
        self.model, self.vocab = model, vocab
        tokens, meta = vocab.to_checkpoint()
        model.vocab = {**(model.vocab or {}), "chars": tokens}
        model.meta = {**(model.meta or {}), "text": {"model": "char-lm", **meta}}

    @classmethod
    def from_model(cls, model: Any) -> CharLM:
        """Wraps a loaded :class:`rnnkit.Sequential` whose ``vocab["chars"]`` holds
        the characters (as :meth:`save` writes): first layer Embedding(V, E), one
        or more recurrent layers (unidirectional), last layer Linear(., V)."""
        from .models import Recurrent, Sequential
        from .modules import Dropout, Embedding, Linear

        if not isinstance(model, Sequential):
            raise TypeError(f"a CharLM wraps a Sequential, got {type(model).__name__}")
        chars = (model.vocab or {}).get("chars")
        if not chars:
            raise ValueError(
                "the model has no character vocabulary (vocab['chars']); it was not "
                "saved by CharLM / rnnkit train"
            )
        unknown = ((model.meta or {}).get("text") or {}).get("unknown", "error")
        if unknown not in UNKNOWN_POLICIES or (
            unknown == "replace" and UNK not in chars
        ):
            unknown = "error"
        vocab = Vocab(chars, unknown="error")
        vocab.unknown = unknown  # the tokens already hold UNK if it was "replace"
        ls = model.layers
        V = len(vocab)
        ok = (
            model.input == "sequence"
            and model.output == "sequence"
            and isinstance(ls[0], Embedding)
            and ls[0].num_embeddings == V
            and isinstance(ls[-1], Linear)
            and ls[-1].out_features == V
            and any(isinstance(m, Recurrent) for m in ls)
            and all(isinstance(m, (Recurrent, Linear, Dropout)) for m in ls[1:])
            and not any(isinstance(m, Recurrent) and m.bidirectional for m in ls)
        )
        if not ok:
            raise ValueError(
                f"the model is not a character language model over {V} characters "
                f"(Embedding({V}, E), unidirectional recurrent layers, Linear(., {V})): "
                f"{model!r}"
            )
        self = cls.__new__(cls)
        self._attach(model, vocab)
        return self

    @classmethod
    def load(cls, path: Any) -> CharLM:
        """Reads a checkpoint written by :meth:`save` (or ``rnnkit train``)."""
        from .io import load

        return cls.from_model(load(path))

    def save(self, path: Any, optimizer: Any = None, **meta: Any) -> None:
        """Writes the model, vocabulary, optimizer state and ``meta`` (JSON) to
        ``path`` (an rnnkit checkpoint; atomic)."""
        self.model.meta.update(meta)
        self.model.save(path, optimizer=optimizer)

    @property
    def recurrent(self) -> Any:
        """The (first) recurrent layer."""
        return self.model.recurrent_layers[0]

    @property
    def config(self) -> dict[str, Any]:
        rec = self.recurrent
        return {
            "cell": rec.cell,
            "hidden_size": rec.hidden_size,
            "num_layers": rec.num_layers,
            "embedding_dim": self.model.layers[0].embedding_dim,
            "vocab_size": len(self.vocab),
            "parameters": self.model.num_parameters,
        }

    def _ids(self, data: Any, name: str) -> np.ndarray:
        if isinstance(data, str):
            return self.vocab.encode(data)
        arr = np.asarray(data)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(
                f"{name} must be a str or a 1-D integer array of ids, got "
                f"{arr.dtype} {arr.shape}"
            )
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self.vocab)):
            raise IndexError(
                f"{name} holds ids outside the vocabulary of size {len(self.vocab)}"
            )
        return arr

    # ------------------------------------------------------------ evaluate
    def evaluate(
        self, data: Any, batch_size: int = 32, seq_len: int = 256
    ) -> dict[str, float]:
        """Mean loss over every next-character prediction of ``data``.

        ``data`` is a str or ids; it is read as in :func:`eval_layout` (``batch_size``
        streams from zero states, chunks of ``seq_len``, the leftover continuing
        the last stream), inference path. Returns ``{"loss": nats per character,
        "bpc": bits per character, "chars": predictions scored}``.
        """
        ids = self._ids(data, "data")
        x, y, xr, yr = eval_layout(ids, batch_size)
        model, total, state = self.model, 0.0, None
        for a in range(0, x.shape[1], seq_len):
            logits = model.forward(x[:, a : a + seq_len], state=state, train=False)
            state = model.final_state
            total += _nll_sum(logits, y[:, a : a + seq_len])
        if len(xr):
            state = _rows(state, slice(-1, None)) if state is not None else None
            for a in range(0, len(xr), seq_len):
                logits = model.forward(
                    xr[None, a : a + seq_len], state=state, train=False
                )
                state = model.final_state
                total += _nll_sum(logits, yr[None, a : a + seq_len])
        n = len(ids) - 1
        return {"loss": total / n, "bpc": total / n / LN2, "chars": float(n)}

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: Any,
        *,
        val_data: Any = None,
        epochs: int | None = None,
        time_budget: float | None = None,
        max_steps: int | None = None,
        batch_size: int = 32,
        seq_len: int = 100,
        optimizer: Any = None,
        lr: float | None = None,
        clip_norm: float | None = 5.0,
        eval_every: float | None = None,
        eval_batch_size: int = 32,
        start: TrainPosition | None = None,
        progress: Any = True,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TextHistory:
        """Trains on ``data`` with stateful truncated BPTT; returns a :class:`TextHistory`.

        Parameters
        ----------
        data, val_data : str or 1-D ids. ``val_data`` is evaluated whole
            (:meth:`evaluate`) at every evaluation.
        epochs : passes over ``data`` (counting from ``start``); default 1, or no
            limit when ``time_budget`` or ``max_steps`` is given.
        time_budget : seconds of training (evaluation and callbacks excluded);
            stops after the step that reaches it.
        max_steps : optimizer steps (this call).
        batch_size, seq_len : B streams, chunks of T characters (:class:`BPTTBatches`).
        optimizer : default ``self.model.optimizer`` when set (a resumed
            checkpoint), else ``Adam(lr=2e-3)``. ``lr``, if given, sets its rate.
        clip_norm : global gradient-norm clipping before each step (None: off).
        eval_every : also evaluate every this many training seconds (evaluations
            always happen at the end of each epoch and of training).
        start : a :class:`TrainPosition` to continue from (epoch, chunk, counters).
        progress : True (stderr), False, or a stream: a bar with loss and
            characters/second, one line per evaluation.
        callback : ``callback(logs)`` after each evaluation; ``logs`` has the
            history's fields (scalars), ``event`` ("epoch", "interval", "end") and
            ``position`` (a :class:`TrainPosition`, where to resume from); returning
            True stops training.
        should_stop : polled after every step; True stops (e.g. a Ctrl-C flag).

        The hidden state is carried from chunk to chunk within an epoch and reset
        to zeros at the start of each epoch (and of each call).
        """
        from .losses import cross_entropy
        from .optim import Adam, clip_grad_norm

        model = self.model
        train_ids = self._ids(data, "data")
        val_ids = None if val_data is None else self._ids(val_data, "val_data")
        if val_ids is not None and len(val_ids) < 2:
            val_ids = None
        batches = BPTTBatches(train_ids, batch_size, seq_len)
        if epochs is None:
            epochs = 1 if time_budget is None and max_steps is None else 2**62
        if optimizer is None:
            optimizer = getattr(model, "optimizer", None) or Adam(
                model, lr=2e-3 if lr is None else lr
            )
        if lr is not None:
            optimizer.lr = float(lr)
        model.optimizer = optimizer
        pos = TrainPosition(**asdict(start)) if start is not None else TrainPosition()
        if pos.chunk >= len(batches):
            pos.epoch, pos.chunk = pos.epoch + 1, 0
        hist = TextHistory(position=pos)
        bar = _Progress(progress)
        nb = len(batches)

        t_train = 0.0  # training seconds in this call
        since = {"loss": 0.0, "chunks": 0, "chars": 0, "t": 0.0}
        # evaluations at multiples of eval_every on the (resumed) training clock
        next_eval = (
            (math.floor(pos.seconds / eval_every) + 1) * eval_every
            if eval_every
            else math.inf
        )

        def do_eval(event: str) -> bool:
            nonlocal next_eval
            logs: dict[str, Any] = {
                "event": event,
                "time": pos.seconds,
                "step": pos.steps,
                "epoch": pos.epoch + pos.chunk / nb,
                "position": TrainPosition(**asdict(pos)),
            }
            loss = since["loss"] / since["chunks"] if since["chunks"] else math.nan
            dt = t_train - since["t"]
            logs["loss"], logs["bpc"] = loss, loss / LN2
            logs["chars_per_s"] = since["chars"] / dt if dt > 0 else math.nan
            if val_ids is not None:
                v = self.evaluate(val_ids, eval_batch_size, max(seq_len, 256))
                logs["val_loss"], logs["val_bpc"] = v["loss"], v["bpc"]
            else:
                logs["val_loss"] = logs["val_bpc"] = math.nan
            for k in (
                "time",
                "step",
                "epoch",
                "loss",
                "bpc",
                "val_loss",
                "val_bpc",
                "chars_per_s",
            ):
                getattr(hist, k).append(logs[k])
            since.update(loss=0.0, chunks=0, chars=0, t=t_train)
            while next_eval <= pos.seconds:
                next_eval += eval_every or math.inf
            val = (
                f" | val {logs['val_loss']:.4f} ({logs['val_bpc']:.3f} bpc)"
                if val_ids is not None
                else ""
            )
            bar.line(
                f"epoch {logs['epoch']:.2f} step {pos.steps} {pos.seconds:.1f}s | loss "
                f"{loss:.4f} ({loss / LN2:.3f} bpc){val} | "
                f"{logs['chars_per_s']:,.0f} chars/s"
            )
            return bool(callback(logs)) if callback is not None else False

        stop = ""
        steps0 = pos.steps
        while pos.epoch < epochs and not stop:
            state = None
            while pos.chunk < nb:
                x, y = batches[pos.chunk]
                t0 = time.perf_counter()
                model.zero_grad()
                logits = model.forward(x, state=state, train=True)
                loss, dlogits = cross_entropy(logits, y)
                if not math.isfinite(loss):  # stop before the update spreads it
                    stop = "non-finite loss"
                    break
                model.backward(dlogits)
                if clip_norm is not None:
                    clip_grad_norm(model, clip_norm)
                optimizer.step()
                state = model.final_state  # carried: truncation is implicit
                dt = time.perf_counter() - t0
                t_train += dt
                pos.seconds += dt
                pos.steps += 1
                pos.chunk += 1
                pos.chars += x.size
                since["loss"] += loss
                since["chunks"] += 1
                since["chars"] += x.size
                frac = t_train / time_budget if time_budget else pos.chunk / nb
                rate = since["chars"] / max(t_train - since["t"], 1e-9)
                bar.update(
                    f"epoch {pos.epoch + 1}",
                    frac,
                    since["loss"] / since["chunks"],
                    rate,
                    pos.seconds,
                )
                if time_budget is not None and t_train >= time_budget:
                    stop = "time_budget"
                elif max_steps is not None and pos.steps - steps0 >= max_steps:
                    stop = "max_steps"
                elif should_stop is not None and should_stop():
                    stop = "interrupted"
                if stop:
                    break
                if pos.seconds >= next_eval and pos.chunk < nb and do_eval("interval"):
                    stop = "callback"
                    break
            if pos.chunk >= nb:
                pos.epoch, pos.chunk = pos.epoch + 1, 0
                if since["chunks"] and do_eval("epoch") and not stop:
                    stop = "callback"
        if since["chunks"]:
            do_eval("end")
        hist.stop_reason = stop or "epochs"
        hist.position = pos
        return hist

    # ------------------------------------------------------------- generate
    def generate(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | np.random.Generator | None = None,
        greedy: bool = False,
    ) -> Iterator[str]:
        """Yields ``length`` characters that continue ``prime``, one at a time.

        Parameters
        ----------
        prime : the text to continue (not yielded). It is read once, in one
            inference pass over the sequence; its characters must be in the
            vocabulary (or are handled by its ``unknown`` policy). Empty: the
            model starts after a newline (if it knows one) from a zero state.
        length : characters to yield.
        temperature : divides the logits; lower is more conservative, 0 greedy.
        top_k, top_p : keep the k most likely characters / the smallest set
            reaching probability p (see :func:`sample_logits`).
        seed : int or ``np.random.Generator``; the same seed gives the same text.
        greedy : argmax at every step (same as ``temperature=0``).

        Each character costs one embedding row, one ``stepper.step`` per recurrent
        layer (weights packed once per call, state kept in C++), one small
        product for the logits and one draw: the prefix is never re-run.
        """
        if (
            isinstance(length, bool)
            or not isinstance(length, (int, np.integer))
            or length < 0
        ):
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        _check_sampling(temperature, top_k, top_p)
        temp = 0.0 if greedy else float(temperature)
        rng = (
            seed
            if isinstance(seed, np.random.Generator)
            else np.random.default_rng(seed)
        )
        ids = self.vocab.encode(prime)
        if len(ids) == 0:
            start = "\n" if "\n" in self.vocab else self.vocab.tokens[0]
            ids = np.array([self.vocab.index(start)], dtype=np.int64)
        return self._generate(ids, int(length), temp, top_k, top_p, rng)

    def _plan(self) -> list[Any]:
        """Per-step operations after the embedding: ``("rnn", stepper)`` or
        ``("linear", (W, b, activation))``; weights copied (packed) once."""
        from .models import Recurrent
        from .modules import Linear
        from ._ops import ACTIVATIONS

        plan: list[Any] = []
        for m in self.model.layers[1:]:
            if isinstance(m, Recurrent):
                plan.append(("rnn", m.stepper(1)))
            elif isinstance(m, Linear):
                w = m.params[
                    "weight"
                ].copy()  # (O, I): y = W x, a matrix-vector product
                b = m.params["bias"].copy() if m.bias else None
                act = ACTIVATIONS[m.activation] if m.activation else None
                plan.append(("linear", (w, b, act)))
        return plan

    def _generate(
        self,
        ids: np.ndarray,
        length: int,
        temp: float,
        top_k: int | None,
        top_p: float | None,
        rng: np.random.Generator,
    ) -> Iterator[str]:
        if length == 0:
            return
        model = self.model
        emb = model.layers[0].params["weight"].copy()  # (V, E)
        plan = self._plan()
        sample = Sampler(temp, top_k, top_p, rng)
        # the prime, once, on the sequence path; its final states start the steppers
        logits = model.forward(ids[None], train=False)[0, -1]
        rec = iter(model.final_state)
        for kind, op in plan:
            if kind == "rnn":
                st = next(rec)
                h, c = st if isinstance(st, tuple) else (st, None)
                op.set_state(h, c)
        tokens = self.vocab.tokens
        if len(plan) == 2 and plan[0][0] == "rnn" and plan[1][0] == "linear":
            # the usual Embedding -> recurrent -> Linear: the loop unrolled
            step = plan[0][1].step
            w, b, act = plan[1][1]
            for i in range(length):
                k = sample(logits)
                yield tokens[k]
                if i + 1 == length:
                    break
                logits = w.dot(step(emb[k : k + 1])[0])
                if b is not None:
                    logits += b
                if act is not None:
                    act(logits, out=logits)
            return
        for i in range(length):
            k = sample(logits)
            yield tokens[k]
            if i + 1 == length:
                break
            x = emb[k]
            for kind, op in plan:
                if kind == "rnn":
                    x = op.step(x[None])[0]
                else:
                    w, b, act = op
                    x = w.dot(x)
                    if b is not None:
                        x += b
                    if act is not None:
                        act(x, out=x)
            logits = x

    def generate_text(self, prime: str = "", length: int = 500, **kw: Any) -> str:
        """``"".join(self.generate(prime, length, **kw))``: the continuation only."""
        return "".join(self.generate(prime, length, **kw))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CharLM({c['cell']}, hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, embedding_dim={c['embedding_dim']}, "
            f"vocab={len(self.vocab)}, parameters={c['parameters']:,})"
        )


__all__ = [
    "DEFAULT_CORPUS",
    "UNK",
    "BPTTBatches",
    "CharLM",
    "Sampler",
    "TextFileError",
    "TextHistory",
    "TrainPosition",
    "Vocab",
    "decode_text",
    "default_corpus_path",
    "eval_layout",
    "read_text",
    "sample_logits",
    "split_train_val",
]
