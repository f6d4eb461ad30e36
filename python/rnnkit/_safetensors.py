"""Checkpoints in the safetensors format: ``model.save("m.safetensors")``.

:func:`rnnkit.save` / :func:`rnnkit.load` (and ``Model.save``) choose this format
for a path ending in ``.safetensors``; any other path is the ``.npz`` format of
:mod:`rnnkit.io`. rnnkit reads and writes the format itself (it is a JSON
header and raw little-endian bytes), so the core needs no extra package; the
``safetensors`` extra (``pip install "rnnkit[safetensors]"``) installs
Hugging Face's library for the other side (``safetensors.torch.load_file``).

Format
------
The safetensors layout: 8 bytes (little-endian u64) N, then an N-byte UTF-8 JSON
object (padded with spaces to a multiple of 8), then the tensor bytes::

    {"__metadata__": {"format": "pt", "rnnkit": "<JSON header>"},
     "0.weight": {"dtype": "F32", "shape": [82, 64], "data_offsets": [0, 20992]},
     "1.weight_ih_l0": {...}, ...}

Tensors: one per entry of ``model.state_dict()``, PyTorch's names (``0.weight``,
``1.weight_ih_l0``, ``encoder.0.weight``), C order, the model's dtype (``F32`` or
``F64``), laid out back to back in name order. So a file of a ``Sequential`` of
torch-equivalent blocks loads into the matching ``torch.nn.Sequential`` with
``module.load_state_dict(safetensors.torch.load_file(path))`` (see
:func:`rnnkit.to_torch`).

``__metadata__["rnnkit"]`` is the JSON header: ``{"format":
"rnnkit-safetensors", "version": 1, "rnnkit_version", "model"`` (the
architecture, ``Model.config()``), ``"dtype", "vocab", "meta", "step",
"optimizer"`` (``null`` or ``{"config", "step_count"}``)``}``.

The optimizer's *moments* are not in the file (a safetensors file is a set of
weights others can load as they are): the optimizer's config and step count are
recorded for information, and :func:`rnnkit.load` returns the model with
``optimizer = None``. To resume training exactly, save a ``.npz`` / ``.rk``.

Safety
------
As for ``.npz`` checkpoints, loading reads a regular file only, bounds the header
by the file's size (and by 100 MB), and checks before it allocates: every tensor
must be named by the architecture, have its dtype and shape, and byte offsets
that match its shape and tile the data section exactly (no gaps, overlaps or
bytes past the end); the header's fields have their types; the declared layer
count is bounded by the tensors present. Anything else raises
:class:`rnnkit.CheckpointError`. Writes are atomic.
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import IO, Any

import numpy as np

from . import io as _io
from ._atomic import write_atomic
from ._config import __version__
from ._serial import is_model, model_from_config, model_param_shapes

__all__ = ["FORMAT", "SUFFIX", "VERSION", "load", "save"]

FORMAT = "rnnkit-safetensors"
VERSION = 1
SUFFIX = ".safetensors"
MAX_HEADER = 100 * 1024 * 1024  # as Hugging Face's reader
_DTYPES: dict[str, np.dtype] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_CODES = {v.name: k for k, v in _DTYPES.items()}

CheckpointError = _io.CheckpointError


def save(path: Any, model: Any, optimizer: Any = None) -> None:
    """Writes ``model`` to ``path`` in the safetensors format, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.safetensors`` file.
    model : Sequential or EncoderDecoder
        Its weights (PyTorch's names), architecture, ``vocab`` and ``meta``.
    optimizer : optimizer or None
        Whose config and step count to record; None means ``model.optimizer``.

    Examples
    --------
    >>> import os, tempfile, rnnkit as rk
    >>> model = rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=1))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> model.save(path)
    >>> back = rk.load(path)
    >>> all((back.state_dict()[k] == v).all() for k, v in model.state_dict().items())
    True
    """
    if not is_model(model):
        raise TypeError(
            f"model must be an rnnkit Model (Sequential, EncoderDecoder), "
            f"got {type(model).__name__}"
        )
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    vocab = {str(k): [str(t) for t in v] for k, v in (model.vocab or {}).items()}
    meta = dict(model.meta or {})
    try:
        json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"model.meta must be JSON-serialisable: {e}") from None
    opt = None
    if optimizer is not None:
        opt = {"config": optimizer.config(), "step_count": int(optimizer.step_count)}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "rnnkit_version": __version__,
        "model": model.config(),
        "dtype": model.dtype.name,
        "optimizer": opt,
        "step": 0 if optimizer is None else int(optimizer.step_count),
        "vocab": vocab,
        "meta": meta,
    }
    le = model.dtype.newbyteorder("<")
    tensors = sorted(model.state_dict().items())
    table: dict[str, Any] = {
        "__metadata__": {"format": "pt", "rnnkit": json.dumps(header, allow_nan=True)}
    }
    off = 0
    for name, a in tensors:
        n = a.size * le.itemsize
        table[name] = {
            "dtype": _CODES[model.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [off, off + n],
        }
        off += n
    blob = json.dumps(table).encode("utf-8")
    blob += b" " * (-len(blob) % 8)

    def write(f: IO[bytes]) -> None:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a, dtype=le).tobytes())

    write_atomic(path, write)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _table(f: IO[bytes], size: int, path: str) -> tuple[dict[str, Any], int]:
    """The JSON table and the data section's offset, checked against the file."""
    if size < 8:
        raise CheckpointError(f"{path}: not a safetensors file ({size} bytes)")
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8 or n > MAX_HEADER:
        raise CheckpointError(
            f"{path}: header declares {n} bytes, the file has {size - 8} after "
            f"the length (at most {MAX_HEADER})"
        )
    raw = f.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{path}: truncated header")
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(table, dict):
        raise CheckpointError(f"{path}: header must be a JSON object")
    return table, 8 + n


def _rnnkit_header(table: dict[str, Any], path: str) -> dict[str, Any]:
    meta = table.get("__metadata__")
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(
            f"{path}: __metadata__ must be an object of strings (safetensors)"
        )
    if "rnnkit" not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without rnnkit's header (__metadata__"
            "['rnnkit']); it was not written by rnnkit. Load its tensors with "
            "safetensors and call model.load_state_dict"
        )
    try:
        header = json.loads(meta["rnnkit"])
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{path}: rnnkit header is not valid JSON ({e})"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnkit safetensors checkpoint")
    version = header.get("version")
    if version != VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"{path}: rnnkit safetensors version {version!r} (written by rnnkit "
            f"{header.get('rnnkit_version')!r}) is not supported; this rnnkit reads "
            f"version {VERSION}"
        )
    for key, kind in (("model", dict), ("vocab", dict), ("meta", dict), ("dtype", str)):
        if not isinstance(header.get(key), kind):
            raise CheckpointError(
                f"{path}: header field {key!r} must be a {kind.__name__}, "
                f"got {header.get(key)!r}"
            )
    for name, tokens in header["vocab"].items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CheckpointError(f"{path}: vocab[{name!r}] must be a list of str")
    if header["dtype"] not in _CODES:
        raise CheckpointError(
            f"{path}: dtype must be float32 or float64, got {header['dtype']!r}"
        )
    return header


def load(path: Any) -> Any:
    """Reads a ``.safetensors`` checkpoint written by :func:`save`.

    Returns
    -------
    Sequential or EncoderDecoder
        With its weights, ``vocab`` and ``meta``; ``optimizer`` is None.

    Raises
    ------
    CheckpointError
        Anything that is not a valid rnnkit safetensors checkpoint.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        try:
            return _load(f, st.st_size, path)
        except CheckpointError:
            raise
        except (OSError, ValueError, TypeError, KeyError, OverflowError) as e:
            raise CheckpointError(
                f"{path}: corrupt checkpoint ({type(e).__name__}: {e})"
            ) from None


def _load(f: IO[bytes], size: int, path: str) -> Any:
    table, start = _table(f, size, path)
    header = _rnnkit_header(table, path)
    dtype = np.dtype(header["dtype"])
    entries = {k: v for k, v in table.items() if k != "__metadata__"}
    if _io._declared_recurrent_layers(header["model"]) > len(entries):
        raise CheckpointError(
            f"{path}: the architecture declares more layers than the file has tensors"
        )
    try:
        shapes = model_param_shapes(header["model"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid architecture ({e})") from None
    if sorted(entries) != sorted(shapes):
        missing = sorted(set(shapes) - set(entries))
        extra = sorted(set(entries) - set(shapes))
        raise CheckpointError(
            f"{path}: tensors do not match the architecture (missing {missing[:5]}, "
            f"unexpected {extra[:5]})"
        )
    data_len = size - start
    spans = []
    for name, entry in entries.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {
            "dtype",
            "shape",
            "data_offsets",
        }:
            raise CheckpointError(
                f"{where}: entry must have dtype, shape, data_offsets"
            )
        if entry["dtype"] != _CODES[dtype.name]:
            raise CheckpointError(
                f"{where} must have dtype {_CODES[dtype.name]}, got {entry['dtype']!r}"
            )
        shape, offs = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(_int(s) for s in shape):
            raise CheckpointError(
                f"{where}: shape must be a list of ints, got {shape!r}"
            )
        if tuple(shape) != tuple(shapes[name]):
            raise CheckpointError(
                f"{where} must have shape {tuple(shapes[name])} (from the "
                f"architecture), got {tuple(shape)}"
            )
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(_int(o) for o in offs)
            or not offs[0] <= offs[1] <= data_len
        ):
            raise CheckpointError(
                f"{where}: data_offsets {offs!r} outside the data section of "
                f"{data_len} bytes"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if offs[1] - offs[0] != nbytes:
            raise CheckpointError(
                f"{where}: shape {tuple(shape)} needs {nbytes} bytes, its offsets "
                f"span {offs[1] - offs[0]}"
            )
        spans.append((offs[0], offs[1], name))
    spans.sort()
    at = 0
    for a, b, name in spans:
        if a != at:
            raise CheckpointError(
                f"{path}: tensor {name!r} starts at byte {a}, expected {at} "
                "(tensors must tile the data section without gaps or overlaps)"
            )
        at = b
    if at != data_len:
        raise CheckpointError(
            f"{path}: the data section has {data_len} bytes, the tensors {at}"
        )
    data = f.read(data_len)
    if len(data) != data_len:
        raise CheckpointError(f"{path}: truncated")
    le = dtype.newbyteorder("<")
    state = {
        name: np.frombuffer(data, dtype=le, count=(b - a) // le.itemsize, offset=a)
        .reshape(shapes[name])
        .astype(dtype)
        for a, b, name in spans
    }
    try:
        model = model_from_config(header["model"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid architecture ({e})") from None
    if model.dtype != dtype:
        raise CheckpointError(
            f"{path}: header dtype {dtype} does not match the architecture's "
            f"{model.dtype}"
        )
    model.load_state_dict(state)
    model.vocab = header["vocab"]
    model.meta = header["meta"]
    return model


_io.FORMATS[SUFFIX] = (save, load)
