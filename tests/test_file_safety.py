"""Files from untrusted sources: checkpoints (``rnnkit.load``) and text corpora.

``test_checkpoint.py`` covers the checkpoint format's own refusals (truncation, CRC,
versions, dtypes, shapes, compressed and extra members, declared sizes). This file
attacks the loader the way a hostile file would:

- pickles that would run code if anything unpickled them (the marker file they would
  write must not appear), as a whole file, as object arrays in members, as the header;
- hand-made ``.npy`` headers: negative, fractional and enormous dimensions, structured,
  string, complex and half dtypes, 4 GiB header lengths, unknown format versions;
- ZIP tricks: duplicate and path-traversal member names, 20,000 members, sizes in the
  central directory that lie;
- a few hundred seeded random corruptions of a real checkpoint;
- declared architectures and paths that make a loader do unbounded work.

Every one must end in a ``CheckpointError`` (a ``ValueError``) that says what was
wrong, quickly and without allocating more than a few MB. Text corpora: binary input
is refused (tested only when ``rnnkit.text`` exists).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rnnkit as rk
from rnnkit.io import CheckpointError

MB = 1 << 20


# ----------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small real checkpoint: embedding, LSTM, linear, with Adam state."""
    model = rk.Sequential(
        rk.Embedding(7, 3, seed=0),
        rk.LSTM(3, 4, seed=1),
        rk.Linear(4, 2, seed=2),
        output="last",
    )
    rk.Adam(model, lr=0.01)
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    model.save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path: Path, entries: list[tuple[str, bytes]] | dict[str, bytes]) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in items:
                zf.writestr(name, data)
    return path


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def raw_npy(header: str, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy member with an arbitrary header text (not validated by NumPy)."""
    text = header.encode("latin1")
    text += b" " * ((-(len(text) + 11)) % 64) + b"\n"
    if version == (1, 0):
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + body
    return (
        bytes([0x93])
        + b"NUMPY"
        + bytes(version)
        + len(text).to_bytes(4, "little")
        + text
        + body
    )


def refused(path: Path, match: str | None = None, peak_mb: float = 50) -> str:
    """Loads ``path``: must raise CheckpointError, within a memory budget."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match) as info:
            rk.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < peak_mb * MB, f"{path.name}: load allocated {peak / MB:.0f} MB"
    return str(info.value)


class _Payload:
    """Unpickling this runs code: it writes the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# ------------------------------------------------------------------------ pickles
def test_pickled_code_never_runs(good, tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Payload(marker))
    # The payload is live: unpickling it does write the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()

    obj = np.empty(1, dtype=object)
    obj[0] = _Payload(marker)
    entries = members(good)
    victim = next(k for k in entries if k.startswith("param/"))
    cases = {
        "raw pickle file": payload,
        "npy of an object array": npy_bytes(obj),
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.npz"
        p.write_bytes(blob)
        refused(p)
    for name, member in (("param", victim), ("header", "__rnnkit__.npy")):
        e = dict(entries)
        e[member] = npy_bytes(obj)
        refused(write_zip(tmp_path / f"obj_{name}.npz", e), "must have dtype")
        e[member] = payload  # a bare pickle where an .npy belongs
        refused(write_zip(tmp_path / f"pkl_{name}.npz", e))
    e = dict(entries)
    e["data.pkl"] = payload
    refused(write_zip(tmp_path / "extra_pkl.npz", e), "unexpected members")
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    refused(tmp_path / "obj.npy")
    assert not marker.exists(), "a pickle in a hostile file was executed"


# ------------------------------------------------------------------ .npy headers
HOSTILE_HEADERS = {
    "negative dim": "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 12), }",
    "fractional dim": "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }",
    "string shape": "{'descr': '<f4', 'fortran_order': False, 'shape': 'x', }",
    "huge dims": "{'descr': '<f4', 'fortran_order': False, "
    "'shape': (4611686018427387904, 4), }",
    "overflowing product": "{'descr': '<f8', 'fortran_order': False, "
    "'shape': (4294967296, 4294967296, 4294967296), }",
    "many dims": "{'descr': '<f4', 'fortran_order': False, 'shape': ("
    + "1, " * 5000
    + "), }",
    "structured": "{'descr': [('a', '<f4'), ('b', '|O')], 'fortran_order': False, "
    "'shape': (3,), }",
    "unicode": "{'descr': '<U8', 'fortran_order': False, 'shape': (3,), }",
    "void": "{'descr': '|V16', 'fortran_order': False, 'shape': (3,), }",
    "complex": "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }",
    "half": "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",
    "bool": "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
    "datetime": "{'descr': '<M8[s]', 'fortran_order': False, 'shape': (3,), }",
    "missing keys": "{'descr': '<f4', }",
    "extra keys": "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), "
    "'evil': __import__('os'), }",
    "code": "__import__('os').system('echo pwned')",
    "not a dict": "[1, 2, 3]",
    "unterminated": "{'descr': '<f4', 'fortran_order': False, 'shape': (3,",
}
# Every failure is a CheckpointError, including NumPy's header parser's TokenError
# ("unterminated") and zipfile's NotImplementedError (test_zip_version_field): both
# escaped before rnnkit/io.py caught them.


@pytest.mark.parametrize("member", ["param", "header"])
@pytest.mark.parametrize("what", sorted(HOSTILE_HEADERS))
def test_hostile_npy_headers(good, tmp_path, member, what):
    entries = members(good)
    key = (
        next(k for k in entries if k.startswith("param/"))
        if member == "param"
        else "__rnnkit__.npy"
    )
    entries[key] = raw_npy(HOSTILE_HEADERS[what], b"\0" * 64)
    refused(write_zip(tmp_path / "h.npz", entries))


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"\x93NUMPY\x02\x00\xff\xff\xff\xff{", id="4GiB-header-length"),
        pytest.param(b"\x93NUMPY\x09\x09\x10\x00{}", id="unknown-version"),
        pytest.param(b"\x93NUMPX\x01\x00\x10\x00{}", id="bad-magic"),
        pytest.param(b"\x93NUMPY\x01", id="cut-in-magic"),
        pytest.param(b"", id="empty"),
    ],
)
def test_broken_npy_framing(good, tmp_path, blob):
    entries = members(good)
    entries["__rnnkit__.npy"] = blob
    refused(write_zip(tmp_path / "f.npz", entries))


# ------------------------------------------------------------------------ ZIPs
def test_duplicate_members(good, tmp_path):
    entries = list(members(good).items())
    name, data = entries[1]
    poisoned = npy_bytes(np.full(np.load(io.BytesIO(data)).shape, 1e30, np.float32))
    refused(write_zip(tmp_path / "dup.npz", [*entries, (name, poisoned)]), "duplicate")


@pytest.mark.parametrize(
    "name", ["../../evil.npy", "/tmp/evil.npy", "param/../../evil.npy", "C:\\evil.npy"]
)
def test_path_traversal_names_are_refused_and_never_written(good, tmp_path, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    e = members(good)
    e[name] = npy_bytes(np.zeros(3, np.float32))
    refused(write_zip(work / "t.npz", e), "unexpected members")
    assert not (tmp_path / "evil.npy").exists()
    assert sorted(p.name for p in work.iterdir()) == ["t.npz"]


def test_many_members(good, tmp_path):
    """20,000 extra (empty) members: refused, quickly, in bounded memory."""
    e = list(members(good).items())
    e += [(f"junk/{i}.npy", b"") for i in range(20_000)]
    path = write_zip(tmp_path / "many.npz", e)
    t = time.perf_counter()
    refused(path, "unexpected members", peak_mb=100)
    assert time.perf_counter() - t < 30


def _central_entries(data: bytes) -> list[int]:
    """Offsets of the central directory file headers."""
    out, pos = [], data.find(b"PK\x01\x02")
    while pos >= 0 and data[pos : pos + 4] == b"PK\x01\x02":
        out.append(pos)
        n, m, k = (
            int.from_bytes(data[pos + o : pos + o + 2], "little") for o in (28, 30, 32)
        )
        pos += 46 + n + m + k
    return out


def test_central_directory_lies_about_sizes(good, tmp_path):
    """Patch each member's sizes in the central directory (to 2**31 and to 1):
    never a crash or a huge read, always a CheckpointError."""
    data = good.read_bytes()
    entries = _central_entries(data)
    with zipfile.ZipFile(good) as zf:
        assert len(entries) == len(zf.infolist())
    for value in (2**31, 1, 0):
        for which, pos in enumerate(entries):
            buf = bytearray(data)
            buf[pos + 20 : pos + 24] = value.to_bytes(4, "little")  # compressed
            buf[pos + 24 : pos + 28] = value.to_bytes(4, "little")  # uncompressed
            p = tmp_path / f"cd{value}_{which}.npz"
            p.write_bytes(bytes(buf))
            refused(p)


def test_zip_version_field(good, tmp_path):
    buf = bytearray(good.read_bytes())
    pos = _central_entries(bytes(buf))[0]
    buf[pos + 6 : pos + 8] = (255).to_bytes(2, "little")
    p = tmp_path / "version.npz"
    p.write_bytes(bytes(buf))
    refused(p)


# ------------------------------------------------------------------------ fuzzing
def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(5))
    n = len(b)
    if kind == 0:  # flip a few bytes
        for pos in rng.integers(0, n, size=int(rng.integers(1, 8))):
            b[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(0, n))]
    elif kind == 2:  # zero a range
        a = int(rng.integers(0, n))
        b[a : a + int(rng.integers(1, 256))] = bytes(min(256, n - a))[
            : len(b[a : a + 256])
        ]
    elif kind == 3:  # duplicate a slice somewhere else
        a, c = sorted(int(v) for v in rng.integers(0, n, size=2))
        at = int(rng.integers(0, n))
        b[at:at] = b[a : min(c, a + 512)]
    else:  # set a 4-byte field to an extreme value
        pos = int(rng.integers(0, n - 4))
        b[pos : pos + 4] = int(rng.choice([0, 1, 2**31 - 1, 2**32 - 1])).to_bytes(
            4, "little"
        )
    return bytes(b)


def test_random_corruptions(good, tmp_path):
    """400 seeded random corruptions: each load either raises CheckpointError or,
    when the damage missed everything that is checked (a timestamp, say), returns
    the original model unchanged. Nothing else: no other exception, no crash."""
    data = good.read_bytes()
    want = rk.load(good).state_dict()
    rng = np.random.default_rng(1234)
    outcomes = {"refused": 0, "loaded": 0}
    p = tmp_path / "fuzz.npz"
    for i in range(400):
        p.write_bytes(_mutate(data, rng))
        try:
            model = rk.load(p)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"mutation {i}: {type(e).__name__}: {e}")
        got = model.state_dict()
        assert list(got) == list(want), f"mutation {i} changed the architecture"
        for k in want:
            assert np.array_equal(got[k], want[k]), f"mutation {i} changed {k}"
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 300, outcomes


# --------------------------------------------------- unbounded work before refusing
# Both found by these tests and fixed in rnnkit/io.py: the declared layer count is
# bounded by the tensors in the file, and only regular files are read.
def test_declared_layer_count_is_bounded_by_the_file(good, tmp_path):
    entries = members(good)
    h = json.loads(np.load(io.BytesIO(entries["__rnnkit__.npy"])).tobytes())
    lstm = next(c for c in h["model"]["layers"] if c.get("type") == "LSTM")
    lstm["num_layers"] = 3 * 10**4
    entries["__rnnkit__.npy"] = npy_bytes(
        np.frombuffer(json.dumps(h).encode(), np.uint8)
    )
    refused(write_zip(tmp_path / "layers.npz", entries), peak_mb=10)


def _under_asan() -> bool:
    return "asan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(_under_asan(), reason="address-space limits and ASan do not mix")
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_file_is_refused():
    code = (
        "import resource, sys\n"
        "import rnnkit as rk\n"
        "from rnnkit.io import CheckpointError\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "import os\n"
        "vm = int(open('/proc/self/statm').read().split()[0])"
        " * os.sysconf('SC_PAGE_SIZE')\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), hard))\n"
        "try:\n"
        "    rk.load('/dev/zero')\n"
        "except CheckpointError as e:\n"
        "    print('refused:', e)\n"
        "except MemoryError:\n"
        "    print('memory exhausted')\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.stdout.startswith("refused:"), (r.stdout + r.stderr)[-2000:]


# ------------------------------------------------------------------- text corpora
_TEXT_READERS = ("read_text", "read_corpus", "load_corpus", "load_text", "read_file")
BINARY_INPUTS = {
    "nul bytes": b"hello\x00world\x00" * 100,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
    "gzip": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4,
    "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "elf": b"\x7fELF\x02\x01\x01\x00" + bytes(1000),
    "control bytes, no NUL": bytes(range(1, 32)) * 40 + b"\xff\xfd\x81",
}


def _text_reader():
    text = pytest.importorskip("rnnkit.text", reason="rnnkit.text not written yet")
    for name in _TEXT_READERS:
        fn = getattr(text, name, None)
        if callable(fn):
            return fn
    pytest.skip(
        f"rnnkit.text has none of {_TEXT_READERS}; public names: "
        f"{[n for n in dir(text) if not n.startswith('_')]}"
    )


@pytest.mark.parametrize("what", sorted(BINARY_INPUTS))
def test_binary_corpus_is_refused(what, tmp_path):
    read = _text_reader()
    p = tmp_path / "corpus.txt"
    p.write_bytes(BINARY_INPUTS[what])
    with pytest.raises(ValueError, match=r"(?i)binary|not .*text|decode|encoding"):
        read(p)


def test_text_corpus_still_reads(tmp_path):
    read = _text_reader()
    p = tmp_path / "ok.txt"
    p.write_bytes("\ufeffline one\r\nline two\rline three\n".encode())
    out = read(p)
    text = out if isinstance(out, str) else getattr(out, "text", str(out))
    assert "line two" in text and "\r" not in text
