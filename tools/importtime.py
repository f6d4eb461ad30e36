#!/usr/bin/env python3
"""How long ``import rnnkit`` takes, and how much of it is rnnkit's own.

    python tools/importtime.py [--runs 9] [--python PYTHON]

Runs ``PYTHON -X importtime -c "import rnnkit"`` in fresh processes and reports the
median cumulative time of ``rnnkit`` and of the modules it imports that rnnkit does
not own (numpy first): rnnkit's own share is the difference. The ten slowest
modules of the median run are listed. OPENBLAS_NUM_THREADS=1, so NumPy's thread pool
does not take part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys


def one_run(python: str) -> dict[str, tuple[int, int]]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    r = subprocess.run(
        [python, "-X", "importtime", "-c", "import rnnkit"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows: dict[str, tuple[int, int]] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = (p.strip() for p in line.split(":", 1)[1].split("|"))
        rows[name.strip()] = (int(self_us), int(cum_us))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    runs = [one_run(args.python) for _ in range(args.runs)]
    total = [r["rnnkit"][1] for r in runs]
    numpy = [r.get("numpy", (0, 0))[1] for r in runs]
    own = [
        sum(s for name, (s, _) in r.items() if name.split(".")[0] == "rnnkit")
        for r in runs
    ]
    med = statistics.median
    print(
        f"import rnnkit ({args.runs} runs, median): {med(total) / 1e3:.1f} ms, of "
        f"which numpy {med(numpy) / 1e3:.1f} ms; rnnkit's own modules (self time) "
        f"{med(own) / 1e3:.1f} ms"
    )
    mid = sorted(range(len(runs)), key=lambda i: total[i])[len(runs) // 2]
    top = sorted(runs[mid].items(), key=lambda kv: -kv[1][0])[:10]
    print("slowest modules of the median run (self time):")
    for name, (s, c) in top:
        print(f"  {s / 1e3:7.2f} ms  (cumulative {c / 1e3:7.2f} ms)  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
