"""Reliability, second round (issue 11): no hangs, no lost checkpoints, no silently
wrong gradients.

Each test here reproduces one way a hostile or careless user got a hang, a
destroyed checkpoint or a silently wrong result on the code before the fix, and
checks that it now either works or raises an error naming the argument. Anything
that could hang runs in a subprocess (or a thread) with a timeout, so a regression
fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rnnkit as rk
from rnnkit.io import CheckpointError

HANG = 60  # seconds: far above what any of these takes when it works


def _model() -> rk.Sequential:
    return rk.Sequential(rk.LSTM(3, 4, seed=0), rk.Linear(4, 2, seed=1))


def _run_py(code: str, timeout: float = HANG) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------ hyperparameters
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda m: rk.Adam(m, lr="0.01"), "lr"),
        (lambda m: rk.Adam(m, lr=float("nan")), "lr"),
        (lambda m: rk.Adam(m, lr=float("inf")), "lr"),
        (lambda m: rk.SGD(m, lr=-1), "lr"),
        (lambda m: rk.SGD(m, momentum=float("nan")), "momentum"),
        (lambda m: rk.SGD(m, weight_decay=-1), "weight_decay"),
        (lambda m: rk.SGD(m, momentum=0.9, nesterov="yes"), "nesterov"),
        (lambda m: rk.RMSprop(m, alpha=5), "alpha"),
        (lambda m: rk.RMSprop(m, eps=float("nan")), "eps"),
        (lambda m: rk.Adam(m, eps=-1), "eps"),
        (lambda m: rk.Adam(m, betas=(0.9, 1.0)), "betas[1]"),
        (lambda m: rk.Adam(m, betas=0.9), "betas"),
        (lambda m: rk.Adam(m, amsgrad="no"), "amsgrad"),
        (lambda m: rk.Adagrad(m, lr_decay=-1), "lr_decay"),
        (lambda m: rk.Adagrad(m, initial_accumulator_value=float("inf")), "initial"),
    ],
)
def test_optimizer_constructor_refuses_bad_hyperparameters(make, name):
    with pytest.raises((TypeError, ValueError), match=name.replace("[", r"\[")):
        make(_model())


@pytest.mark.parametrize(
    ("cls", "attr", "value"),
    [
        (rk.Adam, "lr", -0.1),
        (rk.Adam, "lr", float("nan")),
        (rk.Adam, "eps", float("nan")),
        (rk.Adam, "betas", (0.9, 2.0)),
        (rk.SGD, "momentum", -1.0),
        (rk.RMSprop, "alpha", 5.0),
    ],
)
def test_optimizer_attributes_are_checked_when_set(cls, attr, value):
    opt = cls(_model())
    before = getattr(opt, attr)
    with pytest.raises(ValueError, match=attr):
        setattr(opt, attr, value)
    assert getattr(opt, attr) == before


def test_schedules_refuse_bad_arguments_and_bad_factors():
    with pytest.raises(ValueError, match="gamma"):
        rk.optim.ExponentialDecay(float("nan"))
    with pytest.raises(TypeError, match="step_size"):
        rk.optim.StepDecay(2.5)
    with pytest.raises(ValueError, match="min_factor"):
        rk.optim.CosineDecay(10, min_factor=-1)
    m = _model()
    opt = rk.SGD(m, lr=0.1, schedule=lambda step: float("nan"))
    with pytest.raises(ValueError, match="schedule"):
        opt.step()


def test_save_never_writes_what_load_refuses(tmp_path):
    # Before: opt.lr = -0.1 was accepted, saved, and the file refused by load.
    m = _model()
    opt = rk.Adam(m)
    m.optimizer = opt
    path = tmp_path / "m.npz"
    m.save(path)
    good = path.read_bytes()
    opt.__dict__["lr"] = -0.1  # bypassing the setter, as old code could
    with pytest.raises(ValueError, match="lr"):
        m.save(path)
    assert path.read_bytes() == good  # the good checkpoint is untouched
    assert rk.load(path).optimizer.lr == 1e-3


def test_load_refuses_bad_hyperparameters_from_a_file(tmp_path):
    m = _model()
    m.optimizer = rk.Adam(m)
    path = tmp_path / "m.npz"
    m.save(path)
    import json
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    raw = np.load(path)["__rnnkit__"].tobytes()
    header = json.loads(raw)
    header["optimizer"]["config"]["eps"] = float("nan")
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    bad = tmp_path / "bad.npz"
    arrays = {n[:-4]: np.load(path)[n[:-4]] for n in members if n != "__rnnkit__.npy"}
    np.savez(bad, __rnnkit__=blob, **arrays)
    with pytest.raises(CheckpointError, match="eps"):
        rk.load(bad)


# ------------------------------------------------------------- constructors
@pytest.mark.parametrize("arg", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("cls", [rk.RNN, rk.LSTM, rk.GRU])
def test_layer_flags_must_be_bools(cls, arg):
    # Before: bidirectional="no" became True.
    with pytest.raises(TypeError, match=arg):
        cls(3, 4, **{arg: "no"})
    assert getattr(cls(3, 4, **{arg: np.bool_(True)}), arg) is True


@pytest.mark.parametrize("cls", [rk.LSTM, rk.GRU])
def test_fixed_activation_cells_refuse_nonlinearity(cls):
    with pytest.raises(ValueError, match="nonlinearity"):
        cls(3, 4, nonlinearity="relu")


def test_sequential_steps_must_be_a_positive_int():
    with pytest.raises(TypeError, match="steps"):
        rk.Sequential(rk.LSTM(3, 4), steps=True)
    with pytest.raises(ValueError, match="steps"):
        rk.Sequential(rk.LSTM(3, 4), steps=0)


def test_huge_sizes_name_the_layer():
    with pytest.raises(MemoryError, match="LSTM.*parameters"):
        rk.LSTM(3, 10**9)


# ----------------------------------------------------------------- messages
def test_zero_d_input_reports_its_real_shape():
    with pytest.raises(ValueError, match=r"ndim 0 shape \(\)"):
        rk.LSTM(3, 4).forward(np.float32(1.0))


def test_torch_half_and_meta_tensors():
    torch = pytest.importorskip("torch")
    lstm = rk.LSTM(3, 4, seed=0)
    x = torch.randn(2, 1, 3)
    y, _ = lstm.forward(x.to(torch.bfloat16), train=False)
    ref, _ = lstm.forward(x.to(torch.bfloat16).float(), train=False)
    np.testing.assert_array_equal(y, ref)
    with pytest.raises(TypeError, match="x is a torch tensor on the 'meta'"):
        lstm.forward(torch.zeros(2, 1, 3, device="meta"))


# ------------------------------------------------------------------- params
def test_params_and_grads_refuse_item_assignment():
    # Before: the assignment silently detached the tensor from the flat buffer.
    for owner in (rk.LSTM(3, 4, seed=0), _model()):
        key = next(iter(owner.params))
        with pytest.raises(TypeError, match=r"params\[.*\]\[\.\.\.\] = value"):
            owner.params[key] = np.zeros_like(owner.params[key])
        with pytest.raises(TypeError, match="grads"):
            owner.grads[key] = np.zeros_like(owner.grads[key])
        with pytest.raises(TypeError, match="cannot be replaced"):
            owner.params.update({key: np.zeros_like(owner.params[key])})
        with pytest.raises(TypeError, match="cannot be replaced"):
            del owner.params[key]
        with pytest.raises(AttributeError, match="load_state_dict"):
            owner.params = {}
        owner.params[key][...] = 0.25  # in place: still fine
        owner.params[key] += 0.25  # augmented assignment stores the same array
        assert (owner.state_dict()[key] == 0.5).all()
        assert np.shares_memory(owner.params[key], owner.parameters()[0][0])


# ----------------------------------------------------- backward after an edit
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_uses_the_forward_weights(cell, rng):
    """``load_state_dict`` or an in-place edit between forward and backward used
    to give a gradient that matched neither weight set; now it is the gradient at
    the weights the forward ran with."""
    cls = {"rnn": rk.RNN, "lstm": rk.LSTM, "gru": rk.GRU}[cell]
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 2, 8)).astype(np.float32)
    old = cls(3, 4, bidirectional=True, seed=0)
    new = cls(3, 4, bidirectional=True, seed=1)
    want = cls(3, 4, bidirectional=True, seed=0)
    want.forward(x)
    dx_want, _ = want.backward(dy)
    for edit in ("load_state_dict", "in place"):
        layer = cls(3, 4, bidirectional=True, seed=0)
        layer.forward(x)
        if edit == "load_state_dict":
            layer.load_state_dict(new.state_dict())
        else:
            for k in layer.params:
                layer.params[k][...] = new.params[k]
        dx, _ = layer.backward(dy)
        np.testing.assert_array_equal(dx, dx_want)
        for k in want.grads:
            np.testing.assert_array_equal(layer.grads[k], want.grads[k])
    del old


def test_linear_backward_uses_the_forward_weight(rng):
    x = rng.standard_normal((4, 3))
    dy = rng.standard_normal((4, 2))
    want = rk.Linear(3, 2, seed=0, dtype="float64")
    want.forward(x)
    dx_want = want.backward(dy)
    fc = rk.Linear(3, 2, seed=0, dtype="float64")
    fc.forward(x)
    fc.params["weight"][...] = 7.0
    np.testing.assert_array_equal(fc.backward(dy), dx_want)


# ---------------------------------------------------------------- threading
def test_two_threads_training_one_layer_raise(rng, restore_config):
    """Two threads training one layer got silently wrong results (182 of 400);
    now the overlap, or a backward of another thread's forward, raises."""
    rk.set_num_threads(1)
    layer = rk.LSTM(32, 64, seed=0)
    x = rng.standard_normal((50, 8, 32)).astype(np.float32)
    dy = np.ones((50, 8, 64), np.float32)
    errors: list[str] = []
    ok = [0]

    def work():
        for _ in range(40):
            try:
                layer.forward(x)
                layer.backward(dy)
                ok[0] += 1
            except RuntimeError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert errors, "concurrent training of one layer went undetected"
    assert all("thread" in e or "none is pending" in e for e in errors), errors[:3]


def test_interleaved_forward_of_another_thread_is_detected(rng):
    layer = rk.GRU(3, 4, seed=0)
    x = rng.standard_normal((2, 1, 3))
    layer.forward(x)
    t = threading.Thread(target=layer.forward, args=(x,))
    t.start()
    t.join(HANG)
    with pytest.raises(RuntimeError, match="another thread"):
        layer.backward(np.ones((2, 1, 4)))


def test_inference_from_another_thread_keeps_a_pending_backward(rng):
    layer = rk.GRU(3, 4, seed=0)
    x = rng.standard_normal((2, 1, 3))
    layer.forward(x)
    t = threading.Thread(target=layer.forward, args=(x,), kwargs={"train": False})
    t.start()
    t.join(HANG)
    layer.backward(np.ones((2, 1, 4)))  # still pending: no error


# ------------------------------------------------------------------ files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("via_symlink", [False, True])
def test_load_of_a_fifo_does_not_block(tmp_path, via_symlink):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = fifo
    if via_symlink:
        target = tmp_path / "link.npz"
        target.symlink_to(fifo)
    code = (
        "import rnnkit as rk\n"
        "try:\n"
        f"    rk.load({str(target)!r})\n"
        "except rk.CheckpointError as e:\n"
        "    print('refused:', e)\n"
    )
    r = _run_py(code)
    assert "refused:" in r.stdout and "not a regular file" in r.stdout, r.stderr


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path, suffix):
    # every format goes through rnnkit._atomic.write_atomic
    path = tmp_path / f"m{suffix}"
    m = _model()
    m.save(path)
    os.chmod(path, 0o600)
    m.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_through_a_symlink_replaces_the_target_and_keeps_the_link(
    tmp_path, suffix
):
    real = tmp_path / f"real{suffix}"
    link = tmp_path / f"link{suffix}"
    m = _model()
    m.save(real)
    link.symlink_to(real)
    m2 = rk.Sequential(rk.LSTM(3, 4, seed=5), rk.Linear(4, 2, seed=6))
    m2.save(link)
    assert link.is_symlink()
    back = rk.load(real)
    np.testing.assert_array_equal(
        back.params["0.weight_hh_l0"], m2.params["0.weight_hh_l0"]
    )


def test_a_killed_save_leaves_no_orphan_after_the_next_save(tmp_path):
    path = tmp_path / "m.npz"
    code = (
        "import os, signal, numpy as np, rnnkit as rk\n"
        "m = rk.Sequential(rk.LSTM(3, 4, seed=0))\n"
        "orig = np.savez\n"
        "def killed(f, **kw):\n"
        "    f.write(b'partial')\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "np.savez = killed\n"
        f"m.save({str(path)!r})\n"
    )
    r = _run_py(code)
    assert r.returncode == -9
    orphans = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1
    old = time.time() - 60  # the orphan's age margin protects live writers
    os.utime(orphans[0], (old, old))
    other = tmp_path / ".other.npz.12345678.tmp"  # another target's: kept
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    _model().save(path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".other.npz.12345678.tmp", "m.npz"]
    rk.load(path)


def test_save_does_not_remove_the_temporary_of_a_live_writer(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "m.npz"
    live = tmp_path / ".m.npz.abcdefgh.tmp"
    live.write_bytes(b"in progress")
    old = time.time() - 60
    os.utime(live, (old, old))
    with open(live, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        _model().save(path)
        assert live.exists()


# -------------------------------------------------------------------- fit
def _data(rng):
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    y = rng.standard_normal((8, 5, 2)).astype(np.float32)
    return x, y


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"max_time": float("nan")}, "max_time"),
        ({"max_time": 0}, "max_time"),
        ({"max_steps": 0}, "max_steps"),
        ({"eval_every": -1}, "eval_every"),
        ({"eval_every": float("nan")}, "eval_every"),
        ({"eval_every_steps": 0}, "eval_every_steps"),
        ({"clip_norm": float("nan")}, "clip_norm"),
        ({"clip_value": -1.0}, "clip_value"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "8"}, "batch_size"),
    ],
)
def test_fit_validates_every_numeric_argument(kw, name, rng):
    # Before: epochs=-1 returned an empty history, max_time=nan trained forever,
    # clip_norm=nan turned clipping off.
    m = _model()
    kw = {"max_steps": 20, **kw}  # a regression stops instead of training forever
    with pytest.raises((TypeError, ValueError), match=name):
        rk.fit(m, "mse", rk.Adam(m), _data(rng), progress=False, **kw)


def test_fit_with_a_tiny_eval_interval_terminates(rng):
    m = _model()
    hist = rk.fit(
        m, "mse", rk.Adam(m), _data(rng), max_steps=3, batch_size=2,
        eval_every=1e-300, progress=False,
    )  # fmt: skip
    assert hist.steps == 3


def test_fit_and_train_step_refuse_a_stale_optimizer(rng):
    """An optimizer built on a layer before the layer was composed trained nothing."""
    lstm = rk.LSTM(3, 4, seed=0)
    opt = rk.Adam(lstm)
    m = rk.Sequential(lstm, rk.Linear(4, 2, seed=1))
    with pytest.raises(ValueError, match="optimizer does not update"):
        rk.fit(m, "mse", opt, _data(rng), progress=False)
    x, y = _data(rng)
    from rnnkit.losses import get_loss
    from rnnkit.train import train_step

    with pytest.raises(ValueError, match="optimizer does not update"):
        train_step(m, get_loss("mse"), opt, (x,), y)


def test_charlm_fit_validates_its_arguments():
    from rnnkit import text as tx

    lm = tx.CharLM(tx.Vocab.from_text("abcd" * 20), hidden_size=4, embedding_dim=2)
    for kw, name in (
        ({"eval_every": -1}, "eval_every"),
        ({"max_time": float("nan")}, "max_time"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"clip_norm": float("nan")}, "clip_norm"),
    ):
        with pytest.raises(ValueError, match=name):
            lm.fit(
                "abcd" * 20, batch_size=2, seq_len=4, max_steps=20, progress=False, **kw
            )


# ---------------------------------------------------------------- sampling
def test_huge_temperature_samples_uniformly():
    from rnnkit.text import Sampler

    s = Sampler(temperature=1e308, rng=np.random.default_rng(0))
    z = np.linspace(0.0, 3.0, 50)
    counts = np.bincount([s(z) for _ in range(5000)], minlength=50)
    # uniform: 100 each; before, T * g overflowed to +inf for 15 % of the noise and
    # the first inf won, so id 0 took more than 750 of the draws
    assert counts.max() < 200 and counts.min() > 40, counts


@pytest.mark.parametrize("temperature", [0.0, 0.8, 2.0])
def test_nan_logits_are_refused(temperature):
    from rnnkit.text import Sampler

    s = Sampler(temperature=temperature, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN at index 2"):
        s(np.array([0.0, 1.0, np.nan]))
    with pytest.raises(ValueError, match="-inf everywhere"):
        s(np.full(3, -np.inf))


# ------------------------------------------------------------------ config
def test_set_num_threads_above_the_cores_warns(restore_config):
    from rnnkit._config import _usable_cores

    with pytest.warns(RuntimeWarning, match="more threads than"):
        rk.set_num_threads(_usable_cores() + 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rk.set_num_threads(1)
    with pytest.raises(ValueError, match=r"threads\) must be >= 1, got 0"):
        rk.set_num_threads(0)


def test_unknown_simd_request_warns():
    env = dict(os.environ, RNNKIT_SIMD="bogus")
    r = subprocess.run(
        [sys.executable, "-c", "import rnnkit"],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=env,
    )
    assert "RNNKIT_SIMD='bogus' ignored" in r.stderr, r.stderr


# ------------------------------------------------------------------- text
def test_read_text_refuses_a_fifo_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs POSIX FIFOs")
    os.mkfifo(tmp_path / "f")
    r = _run_py(
        "from rnnkit import text as tx\n"
        "try:\n"
        f"    tx.read_text({str(tmp_path / 'f')!r})\n"
        "except tx.TextFileError as e:\n"
        "    print('refused:', e)\n"
    )
    assert "refused:" in r.stdout and "not a regular file" in r.stdout, r.stderr


def test_read_text_sniffs_the_head_and_bounds_the_size(tmp_path):
    import tracemalloc

    from rnnkit import text as tx

    sparse = tmp_path / "sparse.txt"
    with open(sparse, "wb") as f:
        f.truncate(256 << 20)  # 256 MiB of NUL bytes, no disk used
    tracemalloc.start()
    try:
        with pytest.raises(tx.TextFileError, match="NUL byte at offset 0"):
            tx.read_text(sparse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read {peak} bytes before refusing"  # before: 256 MiB
    small = tmp_path / "small.txt"
    small.write_text("hello " * 100)
    with pytest.raises(tx.TextFileError, match="max_bytes=100"):
        tx.read_text(small, max_bytes=100)
    assert tx.read_text(small).startswith("hello")


# -------------------------------------------------------------------- CLI
CLI_TINY = ["--hidden", "8", "--embedding", "4", "--batch", "2", "--seq-len", "8"]
CORPUS = "the cat sat on the mat and the dog sat on the log. " * 20


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text(CORPUS)
    return p


# ASan reserves terabytes of shadow address space: under tools/sanitize.sh the
# children run without the limit (the timeout still bounds them).
_UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


def _limit_memory() -> None:
    """In the child: at most 4 GiB of address space, so that a regression that
    reads a device without end fails with MemoryError instead of filling RAM."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _cli(*argv: str, timeout: float = HANG) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_limit_memory if os.name == "posix" and not _UNDER_ASAN else None,
    )


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--clip", "nan"], "--clip"),
        (["--time-budget", "nan"], "--time-budget"),
        (["--eval-every", "-1"], "--eval-every"),
        (["--eval-every", "nan"], "--eval-every"),
        (["--threads", "0"], "--threads"),
        (["--seed", "-1"], "--seed"),
        (["--temperature", "-1"], "--temperature"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--epochs", "0"], "--epochs"),
        (["--hidden", "0"], "--hidden"),
    ],
)
def test_cli_train_refuses_bad_numbers_before_training(argv, flag, corpus, tmp_path):
    from rnnkit import cli

    out = tmp_path / "m.rk"
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        # --epochs 1 first (a later value wins): a regression trains one epoch
        # and fails the assertions instead of training forever
        rc = cli.main(
            ["train", str(corpus), *CLI_TINY, "--out", str(out), "--epochs", "1"]
            + ["--sample-length", "0", "--final-length", "0", *argv]
        )
    assert rc == 2, err.getvalue()
    text = err.getvalue()
    assert flag in text and "training" not in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--temperature", "-1"], "--temperature"),
        (["--top-p", "0"], "--top-p"),
        (["--top-k", "0"], "--top-k"),
        (["--length", "-5"], "--length"),
        (["--seed", "-1"], "--seed"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_cli_generate_refuses_bad_numbers(argv, flag, tmp_path, capsys):
    from rnnkit import cli
    from rnnkit import text as tx

    lm = tx.CharLM(tx.Vocab.from_text("abc abc"), hidden_size=4, embedding_dim=2)
    lm.save(tmp_path / "m.rk")
    rc = cli.main(["generate", str(tmp_path / "m.rk"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and flag in err and "Traceback" not in err, err


def test_cli_unknown_prime_is_refused_before_training(corpus, tmp_path, capsys):
    from rnnkit import cli

    rc = cli.main(
        ["train", str(corpus), *CLI_TINY, "--out", str(tmp_path / "m.rk"),
         "--unknown", "error", "--prime", "Zebra"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--prime" in err and "training" not in err, err


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_cli_checks_out_before_training(where, corpus, tmp_path, capsys):
    from rnnkit import cli

    out = tmp_path / "nope" / "m.rk" if where == "missing" else tmp_path
    rc = cli.main(["train", str(corpus), *CLI_TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "training" not in err, err


def test_cli_resume_with_a_bad_lr_keeps_the_checkpoint(corpus, tmp_path, capsys):
    from rnnkit import cli

    out = tmp_path / "m.rk"
    assert cli.main(
        ["train", str(corpus), *CLI_TINY, "--out", str(out), "--epochs", "1",
         "--sample-length", "0", "--final-length", "0", "--quiet"]
    ) == 0  # fmt: skip
    good = out.read_bytes()
    capsys.readouterr()
    rc = cli.main(["train", str(corpus), "--out", str(out), "--resume", "--lr", "-1"])
    assert rc == 2 and "--lr" in capsys.readouterr().err
    assert out.read_bytes() == good


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_cli_fifo_and_device_inputs_do_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv in (
        ["train", str(fifo), "--out", str(tmp_path / "a.rk")],
        ["train", "/dev/zero", "--out", str(tmp_path / "b.rk")],
        ["generate", str(fifo)],
    ):
        r = _cli(*argv)
        assert r.returncode == 2, r.stderr
        assert "not a regular file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_cli_sigterm_and_sighup_save_like_ctrl_c(sig, corpus, tmp_path):
    import signal

    out = tmp_path / "m.rk"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train", str(corpus), *CLI_TINY,
         "--time-budget", "60", "--out", str(out), "--sample-length", "0",
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + HANG
    while not any(ln.startswith("training") for ln in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, sig))
    rc = proc.wait(timeout=HANG)
    reader.join(timeout=10)
    err = "".join(lines)
    assert rc == 130, err  # before: killed by the signal (-15 / -1), nothing saved
    assert f"interrupted by {sig}" in err
    from rnnkit import text as tx

    assert tx.CharLM.load(out).model.meta["train"]["position"]["steps"] >= 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_cli_signal_during_setup_is_not_lost(sig, corpus, tmp_path):
    """A signal while the corpus is read (before training starts) stops the run
    with status 130 and nothing trained; before, SIGTERM killed the process there
    and the handler for Ctrl-C was installed only after the setup."""
    out = tmp_path / "m.rk"
    code = (
        "import os, signal, sys\n"
        "from rnnkit import cli\n"
        "real = cli._corpus\n"
        "def corpus(*a):\n"
        f"    os.kill(os.getpid(), signal.{sig})\n"
        "    return real(*a)\n"
        "cli._corpus = corpus\n"
        f"sys.exit(cli.main(['train', {str(corpus)!r}, *{CLI_TINY!r}, '--out', "
        f"{str(out)!r}, '--threads', '1']))\n"
    )
    r = _run_py(code)
    assert r.returncode == 130, r.stderr
    assert "interrupted before training; nothing saved" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("copy_with", ["pickle", "deepcopy"])
def test_a_copied_layer_trains_the_weights_it_computes_with(copy_with):
    """A pickled layer's views were separate arrays: the optimizer updated the
    flat buffer and forward read the stale views (and the lock made pickling fail)."""
    import copy
    import pickle

    src = rk.LSTM(3, 4, seed=0)
    src.forward(np.ones((2, 1, 3)))  # a pending backward is not copied
    layer = (
        pickle.loads(pickle.dumps(src)) if copy_with == "pickle" else copy.deepcopy(src)
    )
    flat = layer.parameters()[0][0]
    assert all(np.shares_memory(v, flat) for v in layer.params.values())
    assert all(
        np.shares_memory(v, layer.parameters()[0][1]) for v in layer.grads.values()
    )
    np.testing.assert_array_equal(
        layer.params["weight_hh_l0"], src.params["weight_hh_l0"]
    )
    with pytest.raises(RuntimeError, match="none is pending"):
        layer.backward(np.ones((2, 1, 4)))
    y, _ = layer.forward(np.ones((2, 1, 3)))
    layer.backward(np.ones_like(y))
    rk.SGD(layer, lr=0.1).step()
    assert not np.array_equal(layer.params["weight_hh_l0"], src.params["weight_hh_l0"])


@pytest.mark.parametrize("copy_with", ["pickle", "deepcopy"])
def test_a_copied_model_trains_the_weights_its_layers_compute_with(copy_with):
    """A copied Sequential's layers kept their own copies of the views while the
    optimizer updated the model's flat buffer (silently no training), and pickle
    failed on the layers' weak link to their model."""
    import copy
    import pickle

    src = rk.Sequential(
        rk.Embedding(7, 3, seed=0), rk.LSTM(3, 4, seed=1), rk.Linear(4, 7, seed=2)
    )
    model = (
        pickle.loads(pickle.dumps(src)) if copy_with == "pickle" else copy.deepcopy(src)
    )
    for name, v in model.params.items():
        assert np.shares_memory(v, model._flat_params), name
        np.testing.assert_array_equal(v, src.params[name])
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(
        model.forward(ids, train=False), src.forward(ids, train=False)
    )
    before = src.forward(ids, train=False)
    rk.fit(
        model,
        "cross_entropy",
        rk.Adam(model, lr=0.05),
        (ids, ids),
        epochs=3,
        batch_size=1,
        progress=False,
    )
    assert not np.allclose(model.forward(ids, train=False), before)  # it trained
    np.testing.assert_array_equal(src.forward(ids, train=False), before)  # not src
    with pytest.raises(ValueError, match="already belongs"):
        rk.Sequential(model.layers[1])  # the copy owns its layers
