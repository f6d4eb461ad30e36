""".safetensors checkpoints: exact round trips, PyTorch names other readers see,
hostile files refused with CheckpointError like the .npz format (issue 13)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import rnnkit as rk
from rnnkit import CheckpointError


def model_with_everything():
    model = rk.Sequential(
        rk.Embedding(12, 5, padding_idx=0, seed=0),
        rk.LSTM(5, 6, num_layers=2, bidirectional=True, seed=1),
        rk.Dropout(0.2, seed=2),
        rk.Linear(12, 12, activation="tanh", seed=3),
    )
    model.vocab = {"chars": list("abcdefghijkl")}
    model.meta = {"norm": [1.5, 2.0], "note": "ü"}
    return model


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "m.safetensors"
    model_with_everything().save(p)
    return p


def split(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write(path, table, body):
    blob = json.dumps(table).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + body)
    return path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype):
    enc = rk.Sequential(
        rk.Embedding(9, 4, dtype=dtype, seed=0), rk.GRU(4, 5, dtype=dtype, seed=1)
    )
    dec = rk.Sequential(
        rk.Embedding(7, 4, dtype=dtype, seed=2),
        rk.GRU(4, 5, dtype=dtype, seed=3),
        rk.Linear(5, 7, dtype=dtype, seed=4),
    )
    for model in (model_with_everything(), rk.EncoderDecoder(enc, dec)):
        if dtype == "float64" and isinstance(model, rk.Sequential):
            continue
        p = tmp_path / "x.safetensors"
        model.save(p)
        back = rk.load(p)
        assert type(back) is type(model) and back.config() == model.config()
        assert back.vocab == model.vocab and back.meta == model.meta
        want = model.state_dict()
        assert list(back.state_dict()) == list(want)
        for k, v in back.state_dict().items():
            assert v.dtype == want[k].dtype and np.array_equal(v, want[k]), k


def test_names_and_header_are_pytorch_and_rnnkit(good):
    table, body = split(good)
    meta = table.pop("__metadata__")
    assert meta["format"] == "pt"
    header = json.loads(meta["rnnkit"])
    assert header["format"] == "rnnkit-safetensors" and header["version"] == 1
    assert header["vocab"]["chars"] == list("abcdefghijkl")
    assert sorted(table) == sorted(model_with_everything().state_dict())
    assert table["1.weight_ih_l1_reverse"] == {
        "dtype": "F32",
        "shape": [24, 12],
        "data_offsets": table["1.weight_ih_l1_reverse"]["data_offsets"],
    }
    assert int.from_bytes(good.read_bytes()[:8], "little") % 8 == 0  # aligned data


def test_the_safetensors_library_reads_it(good):
    st = pytest.importorskip("safetensors.numpy")
    got = st.load_file(str(good))
    want = model_with_everything().state_dict()
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_optimizer_is_recorded_not_restored(tmp_path):
    model = rk.Sequential(rk.GRU(3, 4, seed=0), rk.Linear(4, 2, seed=1))
    opt = rk.Adam(model, lr=1e-3)
    x = np.ones((2, 5, 3), dtype=np.float32)
    model.forward(x)
    model.backward(np.ones((2, 5, 2), dtype=np.float32))
    opt.step()
    p = tmp_path / "o.safetensors"
    rk.save(p, model, opt)
    header = json.loads(split(p)[0]["__metadata__"]["rnnkit"])
    assert header["optimizer"]["step_count"] == 1 and header["step"] == 1
    assert header["optimizer"]["config"]["type"] == "Adam"
    assert rk.load(p).optimizer is None


def test_write_is_atomic(tmp_path, good, monkeypatch):
    before = good.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        rk.Sequential(rk.GRU(2, 3, seed=0)).save(good)
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def mutate_entry(good, tmp_path, name, **change):
    table, body = split(good)
    table[name] = {**table[name], **change}
    return write(tmp_path / "bad.safetensors", table, body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dtype": "F16"}, "must have dtype F32"),
        ({"dtype": "F64"}, "must have dtype F32"),
        ({"shape": [12, 6]}, "must have shape"),
        ({"shape": [-1, 5]}, "shape must be a list of ints"),
        ({"shape": "12x5"}, "shape must be a list of ints"),
        ({"data_offsets": [0, 10**15]}, "outside the data section"),
        ({"data_offsets": [8, 4]}, "outside the data section"),
        ({"data_offsets": [0]}, "outside the data section"),
        ({"data_offsets": [0, 4]}, "needs 240 bytes"),
        ({"extra": 1}, "entry must have dtype, shape, data_offsets"),
    ],
)
def test_hostile_entries_are_refused(good, tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        rk.load(mutate_entry(good, tmp_path, "0.weight", **change))


def test_overlapping_or_gapped_tensors_are_refused(good, tmp_path):
    table, body = split(good)
    # one tensor moved 4 bytes on: a gap before it, an overlap after
    table["3.bias"]["data_offsets"] = [
        table["3.bias"]["data_offsets"][0] + 4,
        table["3.bias"]["data_offsets"][1] + 4,
    ]
    with pytest.raises(CheckpointError, match="tile the data section|outside"):
        rk.load(write(tmp_path / "gap.safetensors", table, body))
    table, body = split(good)
    with pytest.raises(CheckpointError, match="the data section has"):
        rk.load(write(tmp_path / "tail.safetensors", table, body + b"\0" * 8))
    with pytest.raises(CheckpointError, match="outside the data section"):
        rk.load(write(tmp_path / "short.safetensors", table, body[:-4]))


def test_tensor_names_must_match_the_architecture(good, tmp_path):
    table, body = split(good)
    table["0.bias"] = table.pop("0.weight")
    with pytest.raises(CheckpointError, match=r"missing \['0.weight'\]"):
        rk.load(write(tmp_path / "n.safetensors", table, body))


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not a safetensors file"),
        (b"\x01\x00", "not a safetensors file"),
        ((10**12).to_bytes(8, "little") + b"{}", "header declares"),
        ((5).to_bytes(8, "little") + b'{"a":', "not valid JSON"),
        ((2).to_bytes(8, "little") + b"[]", "must be a JSON object"),
        ((2).to_bytes(8, "little") + b"{}", "__metadata__ must be an object"),
    ],
)
def test_broken_framing(tmp_path, blob, message):
    p = tmp_path / "f.safetensors"
    p.write_bytes(blob)
    with pytest.raises(CheckpointError, match=message):
        rk.load(p)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("rnnkit"), "without rnnkit's header"),
        (lambda m: m.update(rnnkit="{"), "not valid JSON"),
        (lambda m: m.update(rnnkit=json.dumps({"format": "x"})), "not an rnnkit"),
        (lambda m: m.update(format=3), "object of strings"),
    ],
)
def test_bad_metadata(good, tmp_path, edit, message):
    table, body = split(good)
    edit(table["__metadata__"])
    with pytest.raises(CheckpointError, match=message):
        rk.load(write(tmp_path / "m.safetensors", table, body))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("version", 2, "version 2"),
        ("version", True, "version True"),
        ("dtype", "float16", "dtype must be float32 or float64"),
        ("vocab", {"chars": [1, 2]}, "must be a list of str"),
        ("model", [], "header field 'model' must be a dict"),
        ("model", {"type": "Nope"}, "invalid architecture"),
    ],
)
def test_bad_rnnkit_header(good, tmp_path, key, value, message):
    table, body = split(good)
    header = json.loads(table["__metadata__"]["rnnkit"])
    header[key] = value
    table["__metadata__"]["rnnkit"] = json.dumps(header)
    with pytest.raises(CheckpointError, match=message):
        rk.load(write(tmp_path / "h.safetensors", table, body))


def test_declared_layer_count_is_bounded_by_the_file(good, tmp_path):
    table, body = split(good)
    header = json.loads(table["__metadata__"]["rnnkit"])
    header["model"]["layers"][1]["num_layers"] = 3 * 10**6
    table["__metadata__"]["rnnkit"] = json.dumps(header)
    with pytest.raises(CheckpointError, match="declares more layers"):
        rk.load(write(tmp_path / "l.safetensors", table, body))


def test_random_corruptions(good):
    """Seeded byte flips: each load raises CheckpointError or returns the model."""
    data = good.read_bytes()
    want = rk.load(good).state_dict()
    rng = np.random.default_rng(7)
    p = good.with_name("fuzz.safetensors")
    refused = 0
    for i in range(300):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, 8 + 400))] = int(rng.integers(0, 256))
        p.write_bytes(bytes(b))
        try:
            got = rk.load(p).state_dict()
        except CheckpointError:
            refused += 1
            continue
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"mutation {i}: {type(e).__name__}: {e}")
        assert sorted(got) == sorted(want), f"mutation {i}"
    assert refused > 100


def test_directory_is_refused(tmp_path):
    d = tmp_path / "dir.safetensors"
    d.mkdir()
    with pytest.raises((CheckpointError, IsADirectoryError)):
        rk.load(d)


def test_npz_paths_are_unchanged(tmp_path):
    model = model_with_everything()
    model.save(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").read_bytes()[:2] == b"PK"
