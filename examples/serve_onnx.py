"""Serve a trained character model in onnxruntime, without rnnkit.

Trains a small ``rk.CharLM`` (an LSTM over the War and Peace excerpt shipped
with rnnkit) for a few seconds, exports it with ``rk.onnx.export``, then
generates text with nothing but onnxruntime and NumPy: the prime is read in
one run of the graph, then each step feeds one character id and the previous
step's ``h_n`` / ``c_n`` back as ``h0`` / ``c0``, and samples the next character
from the logits. The vocabulary comes from the ONNX file's metadata.

Greedy decoding in onnxruntime reproduces ``lm.generate(..., greedy=True)``
exactly: the script checks that, then prints a sampled continuation.

    python examples/serve_onnx.py            # ~20 s of training
    python examples/serve_onnx.py --quick    # a few seconds (the tests run it)

Needs ``pip install "rnnkit[onnx]"`` (onnx + onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import rnnkit as rk


def serve(path: str, prime: str, length: int, temperature: float, seed: int | None):
    """Yields ``length`` characters continuing ``prime``, computed by onnxruntime."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # h0/c0/lengths are inputs with defaults: no warnings
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    chars = json.loads(props["rnnkit.vocab"])["chars"]
    index = {c: i for i, c in enumerate(chars)}
    rng = np.random.default_rng(seed)

    ids = np.array([[index[c] for c in prime]], dtype=np.int64)  # (B=1, T)
    logits, h, c = sess.run(None, {"x": ids})  # the prime, in one run
    for _ in range(length):
        z = logits[0, -1].astype(np.float64)
        if temperature == 0:
            nxt = int(np.argmax(z))
        else:
            p = np.exp((z - z.max()) / temperature)
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        yield chars[nxt]
        feeds = {"x": np.array([[nxt]], dtype=np.int64), "h0": h, "c0": c}
        logits, h, c = sess.run(None, feeds)  # one step, the state fed back


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        default=bool(os.environ.get("RNNKIT_EXAMPLE_QUICK")),
        help="tiny model and a few seconds of training (for the tests)",
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="training time")
    ap.add_argument("--prime", default="Pierre")
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    hidden, seconds, length = (
        (32, 1.0, 40) if args.quick else (128, args.seconds, args.length)
    )

    text = rk.text.read_text(rk.text.default_corpus_path())
    vocab = rk.Vocab.from_text(text)
    train, val = rk.text.split_train_val(vocab.encode(text), 0.05)
    lm = rk.CharLM(vocab, cell="lstm", hidden_size=hidden, embedding_dim=32, seed=0)
    t0 = time.perf_counter()
    hist = lm.fit(train, val_data=val, max_time=seconds, seq_len=50, progress=False)
    print(
        f"trained {time.perf_counter() - t0:.1f} s: validation "
        f"{hist['val_bpc'][-1]:.3f} bits/char"
    )

    path = os.path.join(tempfile.mkdtemp(), "charlm.onnx")
    rk.onnx.export(lm, path)
    print(f"exported {path} ({os.path.getsize(path) / 1e3:.0f} kB)")

    want = "".join(lm.generate(args.prime, length, greedy=True))
    t0 = time.perf_counter()
    got = "".join(serve(path, args.prime, length, 0.0, None))
    dt = time.perf_counter() - t0
    same = got == want
    print(f"greedy text, onnxruntime == rnnkit: {same} ({length / dt:,.0f} chars/s)")
    sample = "".join(serve(path, args.prime, length, args.temperature, args.seed))
    print(f"sampled text (temperature {args.temperature}):\n{args.prime}{sample}")
    if not same:
        raise SystemExit(f"onnxruntime gave {got!r}, rnnkit {want!r}")
    return {"same": same, "sample": sample}


if __name__ == "__main__":
    main()
