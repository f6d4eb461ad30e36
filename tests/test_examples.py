"""Every script in examples/ runs to the end with tiny settings (``--quick``), so the
examples cannot rot; the full settings are what the README quotes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script -> a line its output must contain
CASES = {
    "one_to_one.py": "test accuracy:",
    "one_to_many.py": "held-out characters right:",
    "many_to_one.py": "test accuracy:",
    "forecast_sunspots.py": "naive last-value baseline",
    "dates_seq2seq.py": "exact-match accuracy",
    "seed_text_generator.py": "generated text",
    "serve_onnx.py": "onnxruntime == rnnkit: True",
}


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(CASES), (
        f"untested or missing examples: {scripts ^ set(CASES)}"
    )


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script):
    if script == "serve_onnx.py":  # the onnx extra (in `test`; not in bare venvs)
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # small problems: one thread, no oversubscription
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        cwd=str(EXAMPLES.parent),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert CASES[script] in proc.stdout, proc.stdout[-2000:]
