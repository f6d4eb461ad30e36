"""Checkpoints: one file with a model's architecture, weights, optimizer state,
step count, vocabularies and metadata.

    model.save("model.npz")                # or rnnkit.save(path, model, optimizer)
    model = rnnkit.load("model.npz")       # model.optimizer, .vocab, .meta restored

Format (version 1)
------------------
An uncompressed ``.npz`` (a ZIP of ``.npy`` files, as written by ``np.savez``)
holding exactly these members, nothing else:

``__rnnkit__.npy``
    uint8, 1-D: a UTF-8 JSON object (the *header*)::

        {"format": "rnnkit-checkpoint", "version": 1, "rnnkit_version": "0.1.0",
         "model": <Model.config()>,          # architecture: types + constructor args
         "dtype": "float32",                 # of every parameter
         "optimizer": null | {"config": <Optimizer.config()>, "step_count": int,
                              "slots": {"<slot>": <number of arrays>}},
         "step": int,                        # optimizer steps taken (0 without one)
         "vocab": {"<name>": ["<token>", ...]},
         "meta": {...}}                      # free JSON (e.g. normalisation)

``param/<key>.npy``
    one per entry of ``model.state_dict()`` (keys like ``1.weight_ih_l0`` or
    ``encoder.0.weight``), C order, the model's dtype, shape as the architecture
    implies.
``optim/<slot>/<j>.npy``
    optimizer state: slot ``<slot>`` (e.g. ``exp_avg``) of parameter pair ``j``.

Any other reader can open it with ``np.load(path)`` (no pickle needed). A path
ending in ``.safetensors`` is written and read in that format instead
(:mod:`rnnkit._safetensors`).

Safety
------
Loading never unpickles (``allow_pickle=False`` semantics; object dtypes are
refused) and checks before it allocates: every member must be stored
uncompressed, have a plain little-endian dtype of the expected kind, the shape
the header's architecture implies, and a byte size that matches both its
declared shape and the real file (so a hostile header cannot make it allocate
more than the file holds); CRCs are verified; members must be exactly those
listed above. Anything else raises :class:`CheckpointError` (a ``ValueError``)
saying what was wrong. Versions other than 1 are refused with a message naming
both versions.

Writes are atomic: the file is written to a temporary file in the same
directory, flushed to disk, then renamed over ``path`` (``os.replace``), so a
crash leaves either the old checkpoint or the new one, never a torn file.
Saving over an existing file keeps its permission bits (a new file gets
``0o666 & ~umask``). A save that was killed leaves its temporary
(``.<name>.XXXXXXXX.tmp``) behind; the next save to the same path removes such
orphans (those no live writer holds a lock on). When ``path`` is a symbolic
link, the file it points to is replaced and the link is kept. ``save`` refuses
(``ValueError``) an optimizer whose hyperparameters ``load`` would refuse, so it
never writes a file that cannot be read back. ``load`` opens without blocking
and refuses anything that is not a regular file (a FIFO, a device) before
reading a byte.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tokenize
import zipfile
from typing import Any

import numpy as np

from ._atomic import write_atomic
from ._config import __version__
from ._serial import is_model, model_from_config, model_param_shapes, wrap_loaded
from .optim import optimizer_from_config

FORMAT = "rnnkit-checkpoint"
VERSION = 1
HEADER = "__rnnkit__"

_ALLOWED_DTYPES = {np.dtype("<f4"), np.dtype("<f8")}


# Other formats by file suffix: {".safetensors": (save, load)}, filled by the
# modules that implement them (rnnkit._safetensors registers itself on import).
FORMATS: dict[str, tuple[Any, Any]] = {}


def _format_of(path: Any) -> tuple[Any, Any] | None:
    name = os.fsdecode(path)
    return next((f for sfx, f in FORMATS.items() if name.endswith(sfx)), None)


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, of another version or hostile.

    A ``ValueError``; the message names the file and what was wrong.
    """


# ---------------------------------------------------------------------- save
def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be JSON-serialisable: {e}") from None


def save(path: Any, model: Any, optimizer: Any = None) -> None:
    """Writes ``model`` and its optimizer's state to ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (see the module docstring for the format); written to a
        temporary file in the same directory, then renamed over ``path``.
    model : Sequential or EncoderDecoder
        Its architecture, weights, ``vocab`` and ``meta`` are stored.
    optimizer : optimizer or None
        Whose state and step count to store; None means ``model.optimizer`` (which
        may be None: then no optimizer is stored).

    Raises
    ------
    TypeError
        ``model`` is not an rnnkit model, or ``meta`` / the optimizer's config is
        not JSON-serialisable.
    ValueError
        ``optimizer`` does not update this model's parameters.

    Examples
    --------
    >>> import os, tempfile, rnnkit as rk
    >>> model = rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=1))
    >>> opt = rk.Adam(model, lr=1e-3)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> rk.save(path, model, opt)
    >>> back = rk.load(path)
    >>> type(back.optimizer).__name__, back.layers[0]
    ('Adam', LSTM(3, 4, dtype=float32))
    """
    if (fmt := _format_of(path)) is not None:  # e.g. ".safetensors"
        fmt[0](path, model, optimizer)
        return
    if not is_model(model):
        raise TypeError(
            f"model must be an rnnkit Model (Sequential, EncoderDecoder), "
            f"got {type(model).__name__}"
        )
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    vocab = {str(k): [str(t) for t in v] for k, v in (model.vocab or {}).items()}
    meta = dict(model.meta or {})
    _check_json("model.meta", meta)
    arrays: dict[str, np.ndarray] = {}
    for prefix, m in model.named_modules():
        for name, p in m.params.items():
            arrays[f"param/{prefix}.{name}"] = p
    opt_header = None
    if optimizer is not None:
        mine = [p for p, _ in model.parameters()]
        if not all(
            any(np.may_share_memory(p, q) for q in mine) for p, _ in optimizer.pairs
        ):
            raise ValueError("optimizer does not update this model's parameters")
        cfg = optimizer.config()
        _check_json("optimizer.config()", cfg)
        try:  # the checks load runs, on no parameters: nothing is allocated
            optimizer_from_config([], cfg)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"not saving {path!r}: the optimizer's settings would not load ({e})"
            ) from None
        for slot, arrs in optimizer.state.items():
            for j, a in enumerate(arrs):
                arrays[f"optim/{slot}/{j}"] = a
        opt_header = {
            "config": cfg,
            "step_count": int(optimizer.step_count),
            "slots": {s: len(a) for s, a in optimizer.state.items()},
        }
    header = {
        "format": FORMAT,
        "version": VERSION,
        "rnnkit_version": __version__,
        "model": model.config(),
        "dtype": model.dtype.name,
        "optimizer": opt_header,
        "step": 0 if optimizer is None else int(optimizer.step_count),
        "vocab": vocab,
        "meta": meta,
    }
    blob = json.dumps(header, allow_nan=True).encode("utf-8")
    arrays[HEADER] = np.frombuffer(blob, dtype=np.uint8)

    write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- load
class _Reader:
    """Validating reader of the ``.npy`` members of an open checkpoint zip."""

    def __init__(self, zf: zipfile.ZipFile, file_size: int, path: str) -> None:
        self.zf, self.path = zf, path
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise CheckpointError(f"{path}: duplicate members in the archive")
        self.infos = {i.filename: i for i in infos}
        for i in infos:
            if i.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"{path}: member {i.filename!r} is compressed; rnnkit checkpoints "
                    "are stored uncompressed (np.savez, not savez_compressed)"
                )
            if i.file_size > file_size:
                raise CheckpointError(
                    f"{path}: member {i.filename!r} declares {i.file_size} bytes, "
                    f"the file has only {file_size}"
                )
        self.read: set[str] = set()

    def array(
        self, key: str, shape: tuple[int, ...] | None, dtypes: set[np.dtype]
    ) -> np.ndarray:
        name = key + ".npy"
        info = self.infos.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: missing array {key!r}")
        self.read.add(name)
        where = f"{self.path}: array {key!r}"
        with self.zf.open(info) as fp:
            try:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version in ((2, 0), (3, 0)):
                    got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise CheckpointError(
                        f"{where}: unsupported .npy version {version}"
                    )
            except CheckpointError:
                raise
            except (
                ValueError,
                EOFError,
                SyntaxError,
                TypeError,
                tokenize.TokenError,
            ) as e:
                raise CheckpointError(f"{where}: bad .npy header ({e})") from None
            if dtype.hasobject or dtype not in dtypes:
                raise CheckpointError(
                    f"{where} must have dtype "
                    f"{' or '.join(sorted(str(d) for d in dtypes))}, got {dtype}"
                )
            if fortran and len(got_shape) > 1:
                raise CheckpointError(f"{where}: Fortran order is not supported")
            if shape is not None and tuple(got_shape) != tuple(shape):
                raise CheckpointError(
                    f"{where} must have shape {tuple(shape)} (from the architecture), "
                    f"got {tuple(got_shape)}"
                )
            nbytes = math.prod(got_shape) * dtype.itemsize
            if fp.tell() + nbytes != info.file_size:
                raise CheckpointError(
                    f"{where}: declared shape {tuple(got_shape)} needs {nbytes} bytes, "
                    f"the member holds {info.file_size - fp.tell()}"
                )
            data = fp.read(nbytes)
            if len(data) != nbytes or fp.read(1):
                raise CheckpointError(f"{where}: truncated")
        return (
            np.frombuffer(data, dtype=dtype)
            .reshape(got_shape)
            .astype(dtype.newbyteorder("="))
        )

    def check_all_read(self) -> None:
        extra = sorted(set(self.infos) - self.read)
        if extra:
            raise CheckpointError(
                f"{self.path}: unexpected members {extra[:5]}"
                + (" ..." if len(extra) > 5 else "")
            )


def _header(reader: _Reader) -> dict[str, Any]:
    raw = reader.array(HEADER, None, {np.dtype("u1")})
    if raw.ndim != 1:
        raise CheckpointError(f"{reader.path}: header must be a 1-D uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{reader.path}: header is not valid JSON ({e})"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(
            f"{reader.path}: not an rnnkit checkpoint (format "
            f"{header.get('format') if isinstance(header, dict) else None!r})"
        )
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{reader.path}: invalid format version {version!r}")
    if version != VERSION:
        raise CheckpointError(
            f"{reader.path}: checkpoint format version {version} (written by rnnkit "
            f"{header.get('rnnkit_version')!r}) is not supported; this rnnkit reads "
            f"version {VERSION}"
        )
    for key, kind in (
        ("model", dict),
        ("vocab", dict),
        ("meta", dict),
        ("dtype", str),
        ("step", int),
    ):
        if not isinstance(header.get(key), kind):
            raise CheckpointError(
                f"{reader.path}: header field {key!r} must be a "
                f"{kind.__name__}, got {header.get(key)!r}"
            )
    for name, tokens in header["vocab"].items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CheckpointError(
                f"{reader.path}: vocab[{name!r}] must be a list of str"
            )
    if header["dtype"] not in ("float32", "float64"):
        raise CheckpointError(
            f"{reader.path}: dtype must be float32 or float64, got {header['dtype']!r}"
        )
    return header


def load(path: Any) -> Any:
    """Reads a checkpoint written by :func:`save` / ``Model.save``.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file; nothing in it is unpickled, and every member is checked
        against the header's architecture before it is read (module docstring).

    Returns
    -------
    Sequential, EncoderDecoder or CharLM
        The model with its weights, ``vocab``, ``meta``, frozen flags and (when
        saved) ``model.optimizer`` restored, including the optimizer's step count
        and state. A checkpoint saved by :class:`rnnkit.CharLM` (or ``rnnkit
        train``) loads as a ``CharLM`` (``CharLM.load`` does the same; its
        ``.model`` is the ``Sequential``).

    Raises
    ------
    CheckpointError
        Anything that is not a valid checkpoint (truncated, corrupt, another
        format version, hostile sizes). A checkpoint of NumPy-reference layers
        loads only after ``import rnnkit.reference``.

    Examples
    --------
    >>> import os, tempfile, rnnkit as rk
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> rk.Sequential(rk.GRU(2, 3, seed=0)).save(path)
    >>> rk.load(path).layers
    [GRU(2, 3, dtype=float32)]
    """
    if (fmt := _format_of(path)) is not None:  # e.g. ".safetensors"
        return fmt[1](path)
    path = os.fspath(path)
    # O_NONBLOCK: opening a FIFO (or a symlink to one) must not wait for a writer;
    # the kind is checked on the open descriptor, so nothing can be swapped in.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a device or pipe could be read forever
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise CheckpointError(f"{path}: {kind}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        size = st.st_size
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError) as e:
            raise CheckpointError(
                f"{path}: not a checkpoint, or truncated/corrupt ({e})"
            ) from None
        try:
            with zf:
                return wrap_loaded(_load(zf, size, path))  # a CharLM if saved so
        except CheckpointError:
            raise
        except (
            zipfile.BadZipFile,
            NotImplementedError,  # zipfile: unsupported version or compression
            EOFError,
            OSError,
            KeyError,
            ValueError,
            TypeError,
            RecursionError,
            OverflowError,
        ) as e:
            raise CheckpointError(
                f"{path}: corrupt checkpoint ({type(e).__name__}: {e})"
            ) from None


def _declared_recurrent_layers(config: Any, depth: int = 0) -> int:
    """(layer, direction) pairs a model config declares, summed over nested dicts."""
    if depth > 32:
        raise CheckpointError("architecture nested too deeply")
    total = 0
    items: Any
    if isinstance(config, dict):
        n = config.get("num_layers")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            total += n * (2 if config.get("bidirectional") else 1)
        items = config.values()
    elif isinstance(config, list):
        items = config
    else:
        return 0
    for v in items:
        if isinstance(v, (dict, list)):
            total += _declared_recurrent_layers(v, depth + 1)
    return total


def _load(zf: zipfile.ZipFile, size: int, path: str) -> Any:
    reader = _Reader(zf, size, path)
    header = _header(reader)
    dtype = np.dtype(header["dtype"]).newbyteorder("<")
    # Every (layer, direction) of a recurrent layer has its own tensors in the
    # file: a header declaring more than the file holds is refused before the
    # table of expected shapes is built (a tiny file must not cost minutes).
    n_params = sum(1 for name in reader.infos if name.startswith("param/"))
    if _declared_recurrent_layers(header["model"]) > n_params:
        raise CheckpointError(
            f"{path}: the architecture declares more layers than the file has tensors"
        )
    try:
        shapes = model_param_shapes(header["model"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid architecture ({e})") from None
    state = {k: reader.array(f"param/{k}", s, {dtype}) for k, s in shapes.items()}
    try:
        model = model_from_config(header["model"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid architecture ({e})") from None
    if model.dtype != np.dtype(header["dtype"]):
        raise CheckpointError(
            f"{path}: header dtype {header['dtype']} does not match "
            f"the architecture's {model.dtype}"
        )
    model.load_state_dict(state)
    opt = header.get("optimizer")
    if opt is not None:
        if (
            not isinstance(opt, dict)
            or not isinstance(opt.get("config"), dict)
            or not isinstance(opt.get("slots"), dict)
        ):
            raise CheckpointError(f"{path}: invalid optimizer header {opt!r}")
        try:
            optimizer = optimizer_from_config(model, opt["config"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: invalid optimizer config ({e})") from None
        if sorted(opt["slots"]) != sorted(optimizer.state):
            raise CheckpointError(
                f"{path}: optimizer slots {sorted(opt['slots'])} do "
                f"not match {type(optimizer).__name__}'s "
                f"{sorted(optimizer.state)}"
            )
        slots = {
            s: [
                reader.array(f"optim/{s}/{j}", a.shape, {dtype})
                for j, a in enumerate(arrs)
            ]
            for s, arrs in optimizer.state.items()
        }
        optimizer.load_state_dict({"slots": slots, "step_count": opt.get("step_count")})
        model.optimizer = optimizer
    reader.check_all_read()
    model.vocab = header["vocab"]
    model.meta = header["meta"]
    return model


__all__ = ["FORMAT", "VERSION", "CheckpointError", "load", "save"]
