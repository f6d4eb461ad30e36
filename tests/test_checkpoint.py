"""Checkpoints: round trips reproduce predictions and training exactly; writes are
atomic; truncated, corrupt, wrong-version and hostile files are refused with a
CheckpointError that says why, before anything large is allocated."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

import rnnkit as rk
from rnnkit import losses
from rnnkit.io import CheckpointError


def seq_model(seed=0, dtype="float32"):
    return rk.Sequential(
        rk.Embedding(11, 4, padding_idx=0, seed=seed, dtype=dtype),
        rk.LSTM(4, 6, num_layers=2, bidirectional=True, seed=seed + 1, dtype=dtype),
        rk.Dropout(0.2, seed=seed + 2),
        rk.Linear(12, 3, activation="tanh", seed=seed + 3, dtype=dtype),
        output="last",
    )


def s2s_model():
    enc = rk.Sequential(rk.Embedding(9, 4, seed=0), rk.GRU(4, 8, seed=1))
    dec = rk.Sequential(
        rk.Embedding(6, 4, seed=2), rk.GRU(4, 8, seed=3), rk.Linear(8, 6, seed=4)
    )
    return rk.EncoderDecoder(enc, dec)


def train_steps(model, opt, ids, lengths, y, n):
    for _ in range(n):
        model.zero_grad()
        _, d = losses.cross_entropy(model.forward(ids, lengths=lengths), y)
        model.backward(d)
        opt.step()


@pytest.fixture
def batch(rng):
    return rng.integers(0, 11, (5, 7)), np.array([7, 2, 5, 1, 4]), rng.integers(0, 3, 5)


def test_round_trip_reproduces_predictions_and_training(tmp_path, batch):
    ids, lengths, y = batch
    model = seq_model()
    opt = rk.Adam(
        model,
        lr=0.01,
        weight_decay=0.001,
        schedule=rk.LinearWarmup(3, rk.CosineDecay(20)),
    )
    model.layers[2].p = 0.0  # no dropout: training must continue bitwise
    train_steps(model, opt, ids, lengths, y, 4)
    model.optimizer = opt
    model.vocab = {"tokens": ["<pad>", "a", "b", "ü", "日本"]}
    model.meta = {"note": "test", "mean": 1.5}
    path = tmp_path / "model.npz"
    model.save(path)

    back = rk.load(path)
    assert back.config() == model.config()
    assert back.vocab == model.vocab and back.meta == model.meta
    assert np.array_equal(
        back.forward(ids, lengths=lengths, train=False),
        model.forward(ids, lengths=lengths, train=False),
    )
    for k, v in model.state_dict().items():
        assert (
            np.array_equal(back.state_dict()[k], v)
            and back.state_dict()[k].dtype == v.dtype
        )
    o2 = back.optimizer
    assert type(o2) is rk.Adam and o2.step_count == 4 and o2.weight_decay == 0.001
    assert o2.get_lr() == opt.get_lr()
    train_steps(model, opt, ids, lengths, y, 3)
    train_steps(back, o2, ids, lengths, y, 3)
    assert np.array_equal(back._flat_params, model._flat_params)
    # readable by plain NumPy, without pickle
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["__rnnkit__"].tobytes())
        assert header["format"] == "rnnkit-checkpoint" and header["version"] == 1
        assert header["step"] == 4 and "param/1.weight_ih_l0_reverse" in z.files


def test_round_trip_encoder_decoder_and_float64(tmp_path, rng):
    model = s2s_model()
    path = str(tmp_path / "s2s.ckpt")  # any name, no extension added
    model.save(path)
    back = rk.load(path)
    assert back.optimizer is None
    src, tgt = rng.integers(0, 9, (3, 5)), rng.integers(0, 6, (3, 4))
    assert np.array_equal(
        back.forward(src, tgt, train=False), model.forward(src, tgt, train=False)
    )
    assert np.array_equal(
        back.greedy_decode(src, 1, 2, 6), model.greedy_decode(src, 1, 2, 6)
    )

    m64 = seq_model(dtype="float64")
    rk.save(tmp_path / "m64.npz", m64, rk.RMSprop(m64, centered=True, momentum=0.9))
    back = rk.load(tmp_path / "m64.npz")
    assert back.dtype == np.float64 and sorted(back.optimizer.state) == [
        "grad_avg",
        "momentum_buffer",
        "square_avg",
    ]


def test_reference_layers_round_trip(tmp_path):
    from rnnkit import reference

    model = rk.Sequential(reference.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=1))
    model.save(tmp_path / "r.npz")
    back = rk.load(tmp_path / "r.npz")
    assert type(back.layers[0]) is reference.GRU


def test_reference_checkpoint_needs_the_reference_imported(tmp_path):
    """The fast path never imports rnnkit.reference, so loading a checkpoint of
    reference layers in a fresh process asks for the import instead of doing it."""
    import subprocess
    import sys

    from rnnkit import reference

    path = tmp_path / "r.npz"
    rk.Sequential(reference.LSTM(3, 4, seed=0)).save(path)
    code = (
        "import sys, rnnkit as rk\n"
        "try:\n"
        f"    rk.load({str(path)!r})\n"
        "except rk.CheckpointError as e:\n"
        "    print('refused:', e)\n"
        "import rnnkit.reference\n"
        f"print(type(rk.load({str(path)!r}).layers[0]).__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "refused:" in out and "import rnnkit.reference first" in out
    assert out.strip().endswith("rnnkit.reference")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = seq_model()
    model.save(path)
    good = path.read_bytes()

    def boom(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        seq_model(seed=9).save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary left behind
    monkeypatch.undo()
    rk.load(path)


def test_save_refuses_foreign_optimizer(tmp_path):
    model, other = seq_model(), seq_model(5)
    with pytest.raises(ValueError, match="does not update this model"):
        model.save(tmp_path / "x.npz", optimizer=rk.SGD(other))
    model.meta = {"bad": object()}
    with pytest.raises(TypeError, match="JSON"):
        model.save(tmp_path / "x.npz")


# ----------------------------------------------------------- corrupt / hostile
@pytest.fixture
def good(tmp_path):
    model = seq_model()
    model.optimizer = rk.Adam(model)
    path = tmp_path / "good.npz"
    model.save(path)
    return path


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path, entries: dict[str, bytes], compress=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def header_of(path) -> dict:
    return json.loads(np.load(io.BytesIO(members(path)["__rnnkit__.npy"])).tobytes())


def with_header(path, out, **changes) -> None:
    entries = members(path)
    h = header_of(path)
    h.update(changes)
    entries["__rnnkit__.npy"] = npy(np.frombuffer(json.dumps(h).encode(), np.uint8))
    write_zip(out, entries)


def test_truncated_files(good, tmp_path):
    data = good.read_bytes()
    for n in (
        0,
        10,
        100,
        len(data) // 3,
        len(data) // 2,
        len(data) - 30,
        len(data) - 1,
    ):
        bad = tmp_path / f"trunc{n}.npz"
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError):
            rk.load(bad)


def test_flipped_bytes_fail_the_crc(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("param/3.weight.npy")
    pos = info.header_offset + 30 + len(info.filename) + 128 + 4  # inside the array
    data[pos] ^= 0xFF
    bad = tmp_path / "flip.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC|corrupt"):
        rk.load(bad)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(os.urandom(2000))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        rk.load(p)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="missing array '__rnnkit__'"):
        rk.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        rk.load(tmp_path / "nope.npz")


def test_wrong_version_and_format(good, tmp_path):
    bad = tmp_path / "v2.npz"
    with_header(good, bad, version=2, rnnkit_version="9.0")
    with pytest.raises(CheckpointError, match="version 2 .*9.0.* reads version 1"):
        rk.load(bad)
    with_header(good, bad, version="1")
    with pytest.raises(CheckpointError, match="invalid format version"):
        rk.load(bad)
    with_header(good, bad, format="something-else")
    with pytest.raises(CheckpointError, match="not an rnnkit checkpoint"):
        rk.load(bad)
    with_header(good, bad, vocab={"x": [1, 2]})
    with pytest.raises(CheckpointError, match="list of str"):
        rk.load(bad)


def test_bad_json_header(good, tmp_path):
    entries = members(good)
    for blob in (b"{not json", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b"[]"):
        entries["__rnnkit__.npy"] = npy(np.frombuffer(blob, np.uint8))
        write_zip(tmp_path / "j.npz", entries)
        with pytest.raises(CheckpointError):
            rk.load(tmp_path / "j.npz")


def test_object_and_wrong_dtype_arrays(good, tmp_path):
    entries = members(good)
    shape = np.load(io.BytesIO(entries["param/3.weight.npy"])).shape
    for arr in (
        np.empty(shape, dtype=object),
        np.zeros(shape, np.float16),
        np.zeros(shape, np.int32),
        np.zeros(shape, np.float64),
        np.zeros(shape, ">f4"),
    ):
        e = dict(entries)
        e["param/3.weight.npy"] = npy(arr)
        write_zip(tmp_path / "d.npz", e)
        with pytest.raises(CheckpointError, match="must have dtype"):
            rk.load(tmp_path / "d.npz")


def test_wrong_shape_missing_and_extra_members(good, tmp_path):
    entries = members(good)
    e = dict(entries)
    e["param/3.weight.npy"] = npy(np.zeros((2, 2), np.float32))
    write_zip(tmp_path / "s.npz", e)
    with pytest.raises(CheckpointError, match=r"must have shape \(3, 12\)"):
        rk.load(tmp_path / "s.npz")
    e = dict(entries)
    del e["param/1.bias_hh_l1.npy"]
    write_zip(tmp_path / "m.npz", e)
    with pytest.raises(CheckpointError, match="missing array 'param/1.bias_hh_l1'"):
        rk.load(tmp_path / "m.npz")
    e = dict(entries)
    e["payload.npy"] = npy(np.zeros(3))
    write_zip(tmp_path / "x.npz", e)
    with pytest.raises(CheckpointError, match="unexpected members"):
        rk.load(tmp_path / "x.npz")
    del e["optim/exp_avg/0.npy"]
    del e["payload.npy"]
    write_zip(tmp_path / "o.npz", e)
    with pytest.raises(CheckpointError, match="optim/exp_avg/0"):
        rk.load(tmp_path / "o.npz")


def test_compressed_members_refused(good, tmp_path):
    write_zip(tmp_path / "c.npz", members(good), compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="compressed"):
        rk.load(tmp_path / "c.npz")


def test_huge_declared_sizes_are_refused_without_allocating(good, tmp_path):
    """A header that declares a terabyte must not make load allocate it."""
    entries = members(good)
    h = header_of(good)
    # 1) a member whose .npy header declares 10^12 floats in a few bytes
    e = dict(entries)
    e["param/3.weight.npy"] = npy_header((10**6, 10**6)) + b"\0" * 64
    write_zip(tmp_path / "h1.npz", e)
    # 2) an architecture with a 10^6 hidden size and matching declared shapes
    h2 = json.loads(json.dumps(h))
    h2["model"]["layers"][3]["in_features"] = 10**9
    e2 = dict(entries)
    e2["__rnnkit__.npy"] = npy(np.frombuffer(json.dumps(h2).encode(), np.uint8))
    e2["param/3.weight.npy"] = npy_header((3, 10**9)) + b"\0" * 64
    write_zip(tmp_path / "h2.npz", e2)
    # 3) the JSON header itself declared enormous
    e3 = dict(entries)
    e3["__rnnkit__.npy"] = npy_header((10**12,), "|u1") + b"{}"
    write_zip(tmp_path / "h3.npz", e3)
    tracemalloc.start()
    try:
        for name, pattern in (
            ("h1", "needs 4000000000000 bytes|must have shape"),
            ("h2", "needs 12000000000 bytes"),
            ("h3", "needs 1000000000000 bytes"),
        ):
            with pytest.raises(CheckpointError, match=pattern):
                rk.load(tmp_path / f"{name}.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_hostile_architecture_values(good, tmp_path):
    h = header_of(good)
    for path_, value in (
        (("model", "layers", 1, "hidden_size"), -3),
        (("model", "layers", 1, "type"), "os.system"),
        (("model", "type"), "Pickle"),
        (("model", "layers", 3, "activation"), "__import__"),
        (("optimizer", "config", "type"), "Evil"),
        (("optimizer", "config", "lr"), "fast"),
        (("dtype",), "float16"),
    ):
        h2 = json.loads(json.dumps(h))
        d = h2
        for k in path_[:-1]:
            d = d[k]
        d[path_[-1]] = value
        bad = tmp_path / "a.npz"
        with_header(good, bad, **h2)
        with pytest.raises(CheckpointError):
            rk.load(bad)
