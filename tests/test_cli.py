"""The ``rnnkit`` command: ``train`` (default corpus, epochs / time budget, samples,
Ctrl-C checkpoint, ``--resume``), ``generate`` (streaming, seeds, errors), and that
``demo`` / ``config`` / ``bench`` still parse. Tiny models: the whole file takes
seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import rnnkit as rk
from rnnkit import cli
from rnnkit import text as tx

CORPUS = (
    "Pierre looked at Natasha. Natasha smiled at Pierre, and the old prince\n"
    "said nothing at all. Then the count laughed and went out to the hunt.\n"
) * 12
TINY = [
    "--hidden",
    "16",
    "--embedding",
    "8",
    "--batch",
    "4",
    "--seq-len",
    "16",
    "--threads",
    "1",
]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(CORPUS.replace("\n", "\r\n"), encoding="utf-8")  # CRLF on purpose
    return p


@pytest.fixture(autouse=True)
def _one_thread():
    threads = rk.get_num_threads()
    yield
    rk.set_num_threads(threads)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_then_generate(tmp_path, corpus, capsys):
    model = tmp_path / "m.rk"
    rc, out, err = run(
        capsys,
        "train",
        str(corpus),
        *TINY,
        "--epochs",
        "3",
        "--out",
        str(model),
        "--sample-length",
        "30",
        "--final-length",
        "60",
        "--prime",
        "Pierre",
    )
    assert rc == 0, err
    assert out.count("--- sample after epoch") == 3
    assert "--- generated (60 characters" in out
    assert out.rstrip("\n").splitlines()[-1].startswith("Pierre") or "Pierre" in out
    assert "bpc" in err and "chars/s" in err and "bits/char" in err
    assert "corpus.txt" in err and "LSTM 1 x 16" in err
    lm = tx.CharLM.load(model)
    meta = lm.model.meta["train"]
    assert meta["position"]["epoch"] == 3 and meta["position"]["steps"] > 0
    assert meta["config"]["batch"] == 4 and meta["corpus"]["chars"] == len(CORPUS)
    assert "\r" not in lm.vocab.tokens  # CRLF read as LF

    rc, out, err = run(
        capsys,
        "generate",
        str(model),
        "--prime",
        "Natasha",
        "--length",
        "80",
        "--seed",
        "3",
        "--threads",
        "1",
    )
    assert rc == 0, err
    assert out.startswith("Natasha") and len(out) == len("Natasha") + 80 + 1
    assert "chars/s" in err
    rc, again, _ = run(
        capsys,
        "generate",
        str(model),
        "--prime",
        "Natasha",
        "--length",
        "80",
        "--seed",
        "3",
    )
    assert again == out  # same seed, same text
    _, g1, _ = run(
        capsys, "generate", str(model), "--length", "40", "--greedy", "--quiet"
    )
    _, g2, err = run(
        capsys,
        "generate",
        str(model),
        "--length",
        "40",
        "--temperature",
        "0",
        "--quiet",
    )
    assert g1 == g2 and len(g1) == 41 and err == ""
    rc, out, err = run(
        capsys,
        "generate",
        str(model),
        "--prime",
        "Ωmega",
        "--length",
        "5",
        "--top-k",
        "3",
        "--top-p",
        "0.9",
        "--seed",
        "1",
    )
    assert rc == 0 and "'Ω'" in err and "skipped" in err


def test_train_default_corpus_with_a_time_budget(tmp_path, capsys):
    model = tmp_path / "d.rk"
    rc, out, err = run(
        capsys,
        "train",
        "--time-budget",
        "0.5",
        "--hidden",
        "8",
        "--embedding",
        "4",
        "--threads",
        "1",
        "--out",
        str(model),
        "--final-length",
        "40",
        "--sample-length",
        "0",
    )
    assert rc == 0, err
    assert tx.DEFAULT_CORPUS in err and "default corpus" in err
    assert "--- generated (40 characters" in out and "sample after" not in out
    assert len(out.splitlines()[-1]) > 0
    lm = tx.CharLM.load(model)
    assert len(lm.vocab) == len(set(tx.read_text(tx.default_corpus_path())))
    assert 0.5 <= lm.model.meta["train"]["position"]["seconds"] < 30


def test_resume_continues_the_checkpoint(tmp_path, corpus, capsys):
    model = tmp_path / "r.rk"
    rc, _, err = run(
        capsys,
        "train",
        str(corpus),
        *TINY,
        "--epochs",
        "1",
        "--out",
        str(model),
        "--sample-length",
        "0",
        "--final-length",
        "0",
        "--lr",
        "0.01",
    )
    assert rc == 0, err
    first = tx.CharLM.load(model)
    steps1 = first.model.meta["train"]["position"]["steps"]
    rc, _, err = run(
        capsys,
        "train",
        str(corpus),
        "--epochs",
        "3",
        "--out",
        str(model),
        "--resume",
        "--sample-length",
        "0",
        "--final-length",
        "0",
        "--threads",
        "1",
    )
    assert rc == 0, err
    assert "resuming" in err and "at epoch 2" in err
    lm = tx.CharLM.load(model)
    pos = lm.model.meta["train"]["position"]
    assert pos["epoch"] == 3 and pos["steps"] == 3 * steps1
    assert lm.model.optimizer.step_count == 3 * steps1  # Adam's state went on
    assert lm.model.meta["train"]["config"]["lr"] == 0.01  # the saved settings
    rc, _, err = run(
        capsys, "train", str(corpus), "--epochs", "3", "--out", str(model), "--resume"
    )
    assert rc == 0 and "already been trained for 3 epochs" in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_saves_a_checkpoint_and_resume_goes_on(tmp_path, corpus):
    model = tmp_path / "c.rk"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "rnnkit",
        "train",
        str(corpus),
        *TINY,
        "--time-budget",
        "60",
        "--out",
        str(model),
        "--sample-length",
        "0",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        lines.extend(proc.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any(ln.startswith("training") for ln in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(lines)
    assert rc == 130, err
    assert "interrupted: finishing this step" in err and "--resume" in err
    lm = tx.CharLM.load(model)
    pos = lm.model.meta["train"]["position"]
    assert pos["steps"] >= 1 and pos["seconds"] < 60
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnkit",
            "train",
            str(corpus),
            "--out",
            str(model),
            "--resume",
            "--time-budget",
            "0.3",
            "--final-length",
            "20",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"step {pos['steps']}" in proc.stderr
    after = tx.CharLM.load(model).model.meta["train"]["position"]
    assert after["steps"] > pos["steps"] and after["seconds"] > pos["seconds"]


def test_train_errors(tmp_path, capsys):
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02binary" * 10)
    rc, _, err = run(capsys, "train", str(binary), "--out", str(tmp_path / "x.rk"))
    assert rc == 2 and "binary" in err
    rc, _, err = run(capsys, "train", str(tmp_path / "nope.txt"))
    assert rc == 2 and "does not exist" in err
    empty = tmp_path / "e.txt"
    empty.write_text("")
    rc, _, err = run(capsys, "train", str(empty))
    assert rc == 2 and "empty" in err
    short = tmp_path / "s.txt"
    short.write_text("abc")
    rc, _, err = run(capsys, "train", str(short), "--out", str(tmp_path / "s.rk"))
    assert rc == 2 and "too" in err
    rc, _, err = run(
        capsys, "train", str(short), "--resume", "--out", str(tmp_path / "none.rk")
    )
    assert rc == 2 and "no checkpoint" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--cell", "transformer"])
    assert not (tmp_path / "x.rk").exists()


def test_generate_errors(tmp_path, capsys):
    bad = tmp_path / "bad.rk"
    bad.write_bytes(b"not a checkpoint")
    rc, _, err = run(capsys, "generate", str(bad))
    assert rc == 2 and "not a checkpoint" in err
    rc, _, err = run(capsys, "generate", str(tmp_path / "missing.rk"))
    assert rc == 2 and "No such file" in err
    plain = rk.Sequential(rk.Embedding(5, 3), rk.LSTM(3, 4), rk.Linear(4, 5))
    plain.save(tmp_path / "plain.rk")
    rc, _, err = run(capsys, "generate", str(tmp_path / "plain.rk"))
    assert rc == 2 and "vocabulary" in err
    lm = tx.CharLM(tx.Vocab.from_text("abc abc"), hidden_size=4, embedding_dim=2)
    lm.save(tmp_path / "strict.rk")  # unknown="error"
    rc, _, err = run(capsys, "generate", str(tmp_path / "strict.rk"), "--prime", "xyz")
    assert rc == 2 and "not in the vocabulary" in err
    rc, _, err = run(
        capsys, "generate", str(tmp_path / "strict.rk"), "--temperature", "-1"
    )
    assert rc == 2 and "temperature" in err


def test_other_commands_still_parse(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "config", "bench", "train", "generate"):
        assert cmd in out
    assert cli.main(["config"]) == 0


@pytest.mark.parametrize(
    "cell, flags, expect",
    [
        (
            "lstm",
            [
                "--layers",
                "2",
                "--dropout",
                "0.2",
                "--zoneout",
                "0.1",
                "--proj-size",
                "6",
            ],
            {"dropout": 0.2, "zoneout": 0.1, "proj_size": 6},
        ),
        (
            "gru",
            ["--recurrent-dropout", "0.25", "--layer-norm"],
            {"recurrent_dropout": 0.25, "layer_norm": True},
        ),
        ("lstm", ["--forget-bias", "1"], {"forget_bias": 1.0}),
    ],
)
def test_train_with_layer_options(tmp_path, corpus, capsys, cell, flags, expect):
    model = tmp_path / "o.rk"
    argv = ["train", str(corpus), *TINY, "--cell", cell, *flags, "--epochs", "1"]
    argv += ["--out", str(model), "--sample-length", "0", "--final-length", "20"]
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    shown = ", ".join(f"{k}={v}" for k, v in expect.items())
    assert f"x 16 ({shown})" in err
    lm = tx.CharLM.load(model)  # the options survive the checkpoint
    assert lm.recurrent.options.as_dict() == expect
    assert "--- generated (20 characters" in out


def test_train_refuses_bad_layer_options(tmp_path, corpus, capsys):
    rc, _, err = run(capsys, "train", str(corpus), "--zoneout", "1")
    assert rc == 2 and "--zoneout" in err
    rc, _, err = run(
        capsys, "train", str(corpus), *TINY, "--cell", "gru", "--proj-size", "4"
    )
    assert rc == 2 and "proj_size is an option of LSTM only" in err
    assert not (tmp_path / "model.rk").exists()
