"""The chart of bench_rnn.py: GFLOP/s per side with the peak line, µs per step."""

from __future__ import annotations

from pathlib import Path

from .problem import SIDE_LABEL, SIDES, flops
from .report import entry, med, shape_str


# ----------------------------------------------------------------------- chart
def plot_chart(report: dict, path: Path) -> str | None:
    """Bar chart: GFLOP/s per side (inference, training), µs per generation step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install matplotlib): no chart"
    configs = report["configs"]
    sides = [s for s in SIDES if s in report["table"]]
    colors = {
        "rnnkit": "#d62728",
        "numpy": "#1f77b4",
        "numpy-skx": "#17becf",
        "torch": "#ff7f0e",
    }
    panels = [
        m for m in ("infer", "train", "gen") if any(c["mode"] == m for c in configs)
    ]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(13, 4.2 * len(panels)), squeeze=False
    )
    peak = report["meta"].get("peak_gflops")
    for ax, mode in zip(axes[:, 0], panels):
        cs = [c for c in configs if c["mode"] == mode]
        w = 0.8 / max(len(sides), 1)
        for j, s in enumerate(sides):
            vals = []
            for c in cs:
                m = med(report, s, c)
                vals.append(
                    (m * 1e6 if mode == "gen" else flops(c) / m / 1e9) if m else 0
                )
            ax.bar(
                [i + (j - (len(sides) - 1) / 2) * w for i in range(len(cs))],
                vals,
                w,
                label=SIDE_LABEL[s],
                color=colors[s],
            )
        ax.set_xticks(range(len(cs)))
        ax.set_xticklabels([f"{c['cell']}\n{shape_str(c)}" for c in cs], fontsize=7)
        if mode == "gen":
            ax.set_ylabel("µs per step (lower is better)")
            ax.set_yscale("log")
            ax.set_title("Generation latency (B=1, T=1, I=H)")
        else:
            ax.set_ylabel("GFLOP/s (higher is better)")
            ax.set_title("Inference" if mode == "infer" else "Training (fwd + bwd)")
            if peak:
                ax.axhline(
                    peak, ls="--", color="k", lw=1, label=f"peak {peak:.0f} GFLOP/s"
                )
        missing = [
            f"{SIDE_LABEL[s]}: {st}"
            for s in sides
            for st in dict.fromkeys(
                (entry(report, s, c) or {}).get("status", "not run") for c in cs
            )
            if st != "ok"
        ]
        if missing:
            ax.text(
                0.01,
                0.98,
                "no bar = " + "; ".join(missing),
                fontsize=7,
                transform=ax.transAxes,
                va="top",
            )
        ax.set_ylim(top=ax.get_ylim()[1] * (3 if mode == "gen" else 1.25))
        ax.legend(fontsize=8, ncols=5, loc="upper right")
    m = report["meta"]
    fig.suptitle(
        f"rnnkit {m.get('versions', {}).get('rnnkit', {}).get('rnnkit', '')} — "
        f"{m['cpu']['model']}, {m['threads']} threads",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
