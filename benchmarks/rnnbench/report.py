"""Reporting for bench_rnn.py: aggregating the passes, the tables, the configuration
and the goals of the issue "Speed"."""

from __future__ import annotations

import math
from typing import Any

from .problem import SIDE_LABEL, SPREAD_WARN, Config, cfg_key, flops


# ---------------------------------------------------------------- reporting
def aggregate(
    configs: list[Config],
    runs: dict[str, list[dict]],
    peaks: dict[int, list],
    memory: list[dict],
    meta: dict,
    N: int,
    avx512: bool,
    sides: list[str],
) -> dict[str, Any]:
    """Best of per-pass medians, min over all samples, one entry per (side, config)."""
    table: dict[str, dict[str, dict]] = {}
    infos: dict[str, dict] = {}
    for name, passes in runs.items():
        for r in passes:
            if r.get("info"):
                infos.setdefault(name, r["info"])
        cell: dict[str, dict] = {}
        for c in configs:
            k = cfg_key(c)
            per = [r.get("results", {}).get(k) for r in passes]
            oks = [q for q in per if q and q.get("status") == "ok"]
            bad = [q for q in per if q and q.get("status") != "ok"]
            if not any(per):
                crash = next((r["crash"] for r in passes if "crash" in r), None)
                if crash:
                    cell[k] = {"status": "error", "error": "worker crashed: " + crash}
                continue
            if bad and (not oks or any(q["status"] == "wrong" for q in bad)):
                q = next((q for q in bad if q["status"] == "wrong"), bad[0])
                where = f" (in {len(bad)} of {len(per)} passes)" if len(per) > 1 else ""
                cell[k] = {"status": q["status"], "error": q.get("error", "") + where}
                continue
            cell[k] = {
                "status": "ok",
                "median": min(q["median"] for q in oks),
                "min": min(q["min"] for q in oks),
                "pass_medians": [q["median"] for q in oks],
                "samples": [q["samples"] for q in oks],
                "check": oks[0].get("check", {}),
            }
        table[name] = cell
    if "numpy-skx" in sides and not avx512:
        table["numpy-skx"] = {
            cfg_key(c): {"status": "n/a", "error": "n/a (no AVX-512)"} for c in configs
        }

    def best(t: int, field: str) -> float | None:
        vals = [r[field] for r in peaks.get(t, []) if isinstance(r.get(field), float)]
        return max(vals) if vals else None

    peak = {
        t: {"fma": best(t, "fma_gflops"), "sgemm": best(t, "sgemm_gflops")}
        for t in peaks
        if peaks[t]
    }
    fma_err = next((r["fma_error"] for r in peaks.get(N, []) if "fma_error" in r), None)
    if peak.get(N, {}).get("fma"):
        peak_src = "rnnkit._core.fma_peak_gflops (FMA loop, active SIMD path)"
        peak_val = peak[N]["fma"]
    elif peak.get(N, {}).get("sgemm"):
        peak_src = f"NumPy SGEMM estimate (no FMA probe: {fma_err})"
        peak_val = peak[N]["sgemm"]
    else:
        peak_src, peak_val = "unavailable", None
    meta.update(peak_gflops=peak_val, peak_source=peak_src, peaks=peak)
    meta["versions"] = {}
    for name in ("rnnkit", "numpy", "numpy-skx", "torch"):
        info = infos.get(name, {})
        if info:
            meta["versions"][name] = {
                k: v for k, v in info.items() if k != "show_config"
            }
    meta["show_config"] = infos.get("rnnkit", {}).get("show_config")
    return {
        "meta": meta,
        "configs": configs,
        "table": table,
        "memory": memory,
        "sides": sides,
    }


def geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def shape_str(c: Config) -> str:
    if c["mode"] == "gen":
        return f"H={c['H']}"
    return f"{c['T']}x{c['B']}x{c['I']}x{c['H']}"


def entry(report: dict, side: str, c: Config) -> dict | None:
    return report["table"].get(side, {}).get(cfg_key(c))


def med(report: dict, side: str, c: Config) -> float | None:
    e = entry(report, side, c)
    return e["median"] if e and e.get("status") == "ok" else None


def speedup(report: dict, peer: str, c: Config) -> float | None:
    a, b = med(report, "rnnkit", c), med(report, peer, c)
    return b / a if a and b else None


def fmt_time(e: dict | None, unit: float) -> str:
    if e is None:
        return "—"
    if e.get("status") != "ok":
        return {"wrong": "WRONG", "n/a": "n/a"}.get(e["status"], "error")
    pm = e.get("pass_medians") or [e["median"]]
    noisy = " †" if max(pm) > SPREAD_WARN * min(pm) else ""
    return f"{e['median'] * unit:.4g} ({e['min'] * unit:.4g}){noisy}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def render_tables(report: dict) -> str:
    meta, configs = report["meta"], report["configs"]
    peers = [s for s in ("numpy", "numpy-skx", "torch") if s in report["table"]]
    peak = meta.get("peak_gflops")
    L: list[str] = []
    L.append("# rnnkit benchmark\n")
    L.append(f"Command: `{meta['command']}`\n")
    L.append(configuration_md(report))
    L.append(
        "Times are ms per call, best of the per-pass medians (min over all samples in "
        "parentheses); speedup = peer median / rnnkit median (> 1: rnnkit is faster). "
        "FLOPs per call = 2·T·B·G·H·(I+H), ×3 for training; % peak against "
        f"{peak:.1f} GFLOP/s ({meta['peak_source']}). † marks a configuration "
        f"whose pass medians differ by more than {SPREAD_WARN}x (a noisy machine: "
        "rerun when idle).\n"
        if peak
        else "Peak: unavailable.\n"
    )
    for mode, title in (
        ("infer", "Inference (train=False)"),
        ("train", "Training (forward + backward, all gradients)"),
    ):
        cs = [c for c in configs if c["mode"] == mode]
        if not cs:
            continue
        L.append(f"## {title}\n")
        head = ["cell", "T×B×I×H", "GFLOP", "rnnkit ms", "GFLOP/s", "% peak"]
        head += [f"{SIDE_LABEL[p]} ms" for p in peers]
        head += [f"vs {SIDE_LABEL[p]}" for p in peers]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for c in cs:
            m = med(report, "rnnkit", c)
            gf = flops(c) / m / 1e9 if m else None
            row = [
                c["cell"],
                shape_str(c),
                f"{flops(c) / 1e9:.3g}",
                fmt_time(entry(report, "rnnkit", c), 1e3),
                f"{gf:.1f}" if gf else "—",
                f"{100 * gf / peak:.0f}%" if gf and peak else "—",
            ]
            row += [fmt_time(entry(report, p, c), 1e3) for p in peers]
            row += [fmt_x(speedup(report, p, c)) for p in peers]
            L.append("| " + " | ".join(row) + " |")
        for cell in dict.fromkeys(c["cell"] for c in cs):
            row = [f"**{cell} geomean**", "", "", "", "", ""]
            row += ["" for _ in peers]
            row += [
                fmt_x(
                    geomean(
                        [speedup(report, p, c) or 0 for c in cs if c["cell"] == cell]
                    )
                )
                for p in peers
            ]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    cs = [c for c in configs if c["mode"] == "gen"]
    if cs:
        L.append(
            "## Generation latency (B=1, T=1, I=H, state carried, Python call "
            "included)\n"
        )
        head = ["cell", "H", "rnnkit µs/step"] + [f"{SIDE_LABEL[p]} µs" for p in peers]
        head += [f"vs {SIDE_LABEL[p]}" for p in peers]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for c in cs:
            row = [c["cell"], str(c["H"]), fmt_time(entry(report, "rnnkit", c), 1e6)]
            row += [fmt_time(entry(report, p, c), 1e6) for p in peers]
            row += [fmt_x(speedup(report, p, c)) for p in peers]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    scal = scaling_rows(report)
    if scal:
        N = meta["threads"]
        pk = meta.get("peaks", {})
        pf = [(pk.get(N) or pk.get(str(N)) or {}), (pk.get(1) or pk.get("1") or {})]
        src = "fma" if pf[0].get("fma") and pf[1].get("fma") else "sgemm"
        p_sc = pf[0][src] / pf[1][src] if pf[0].get(src) and pf[1].get(src) else None
        L.append(f"## Thread scaling of rnnkit (1 vs {N} threads)\n")
        L.append(
            f"Peak probe ({src}) scales {p_sc:.2f}x from 1 to {N} threads on this "
            "machine.\n"
            if p_sc
            else ""
        )
        L.append(f"| mode | cell | T×B×I×H | 1 thread ms | {N} threads ms | speedup |")
        L.append("|---|---|---|---|---|---|")
        for c, e1, eN, s in scal:
            L.append(
                f"| {c['mode']} | {c['cell']} | {shape_str(c)} | {fmt_time(e1, 1e3)} "
                f"| {fmt_time(eN, 1e3)} | {fmt_x(s)} |"
            )
        L.append("")
    if report["memory"]:
        L.append("## Memory of one training step\n")
        L.append(
            "Growth of peak RSS (VmHWM, reset before the step) over the RSS "
            "before it, in a fresh process after a warm-up (thread pools, BLAS "
            "buffers; see README); first step "
            "(second step). Expected = workspace (`layer.workspace_bytes(T, B, "
            "train=True)`, or where the layer lacks it `_core.workspace_size`: the "
            "training reserve + the larger of forward and backward scratch) + "
            "the arrays the step returns (y, dx, h_n[, c_n], dh0[, dc0]).\n"
        )
        L.append(
            "| cell | T×B×I×H | side | measured MiB | workspace MiB | "
            "outputs MiB | measured / expected |"
        )
        L.append("|---|---|---|---|---|---|---|")
        bycfg = {cfg_key(c): c for c in configs}
        for m in report["memory"]:
            c = bycfg.get(m["key"])
            if c is None:
                continue
            if "step_bytes" not in m:
                L.append(
                    f"| {c['cell']} | {shape_str(c)} | {m['target']} | error: "
                    f"{m.get('error', '?')} | | | |"
                )
                continue
            s1, s2 = (b / 2**20 for b in m["step_bytes"])
            outb = output_bytes(c) / 2**20
            ws = m.get("workspace_bytes")
            wsm = ws / 2**20 if ws is not None else None
            ratio = s1 / (wsm + outb) if wsm is not None and wsm + outb > 0 else None
            L.append(
                f"| {c['cell']} | {shape_str(c)} | {m['target']} | {s1:.1f} ({s2:.1f}) "
                f"| {f'{wsm:.1f}' if wsm is not None else 'n/a'} | {outb:.1f} | "
                f"{f'{ratio:.2f}' if ratio else '—'} |"
            )
        L.append("")
    errs = [
        (s, k, e.get("error", ""))
        for s, t in report["table"].items()
        for k, e in t.items()
        if e.get("status") in ("error", "wrong")
    ]
    if errs:
        L.append("## Failures\n")
        for s, k, msg in errs:
            L.append(f"- {s} {k}: {msg}")
        L.append("")
    return "\n".join(L)


def output_bytes(c: Config) -> int:
    states = 4 if c["cell"] == "lstm" else 2
    return 4 * (c["T"] * c["B"] * (c["H"] + c["I"]) + states * c["B"] * c["H"])


def scaling_rows(
    report: dict,
) -> list[tuple[Config, dict | None, dict | None, float | None]]:
    one = report["table"].get("rnnkit@1")
    if not one:
        return []
    rows = []
    for c in report["configs"]:
        k = cfg_key(c)
        if k not in one:
            continue
        e1, eN = one.get(k), report["table"].get("rnnkit", {}).get(k)
        s = (
            e1["median"] / eN["median"]
            if e1 and eN and e1.get("status") == eN.get("status") == "ok"
            else None
        )
        rows.append((c, e1, eN, s))
    return rows


def configuration_md(report: dict) -> str:
    meta = report["meta"]
    v = meta.get("versions", {})
    rk_info = v.get("rnnkit", {})

    def ver(side: str, key: str) -> str:
        for s in (side, "rnnkit", "numpy", "torch"):
            if key in v.get(s, {}):
                return str(v[s][key])
        return "n/a"

    ob = next(
        (
            v[s]["openblas"]
            for s in ("numpy", "rnnkit", "torch")
            if v.get(s, {}).get("openblas")
        ),
        {},
    )
    ob_skx = v.get("numpy-skx", {}).get("openblas", {})
    skx_na = "n/a (no AVX-512)" if "avx512f" not in meta["cpu"]["flags"] else "n/a"
    rows = [
        ("date", meta["date"]),
        (
            "CPU",
            (
                f"{meta['cpu']['model']} (family {meta['cpu'].get('family', '?')}, "
                f"model {meta['cpu'].get('model_number', '?')}), "
                f"{meta['cpu']['logical_cpus']} "
                f"logical CPUs; flags: {' '.join(meta['cpu']['flags'])}"
            ),
        ),
        ("ISA (rk.get_simd())", str(rk_info.get("simd", "n/a"))),
        ("threads (every side)", str(meta["threads"])),
        ("rnnkit", f"{ver('rnnkit', 'rnnkit')} (git {meta['git']})"),
        ("numpy", ver("numpy", "numpy")),
        (
            "OpenBLAS (default / SkylakeX side)",
            (
                f"{ob.get('config', ob.get('corename', '?'))} / "
                f"{ob_skx.get('corename', skx_na)}"
            ),
        ),
        ("torch", ver("torch", "torch") if "torch" in v else "not run / not installed"),
        ("python", ver("numpy", "python")),
        ("platform", meta["platform"]),
        (
            "peak GFLOP/s",
            (
                f"{meta['peak_gflops']:.1f} — {meta['peak_source']}"
                if meta.get("peak_gflops")
                else "unavailable"
            ),
        ),
        ("reference", str(meta.get("reference"))),
        (
            "protocol",
            (
                f"{meta['passes']} passes, ≤{meta['repeat']} samples per config and "
                f"pass (≥3, budget {meta['budget_s']} s), samples ≥ "
                f"{meta['min_sample_ms']} ms, 2 warm-up calls, check tol {meta['tol']}"
            ),
        ),
        (
            "load average start / end",
            (
                f"{meta['loadavg_start'][0]:.2f} / "
                f"{meta.get('loadavg_end', [math.nan])[0]:.2f}"
            ),
        ),
        ("elapsed", f"{meta.get('elapsed_s', '?')} s"),
    ]
    s = "## Configuration\n\n| | |\n|---|---|\n"
    s += "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    if meta.get("show_config"):
        s += "\n<details><summary>rk.show_config()</summary>\n\n```\n"
        s += meta["show_config"].rstrip() + "\n```\n</details>\n"
    return s + "\n"


# ---------------------------------------------------------------------- goals
def goals(report: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, status) per goal of the issue "Speed"."""
    configs, meta = report["configs"], report["meta"]
    rows: list[tuple[str, str, str]] = []
    present = set(report["table"])

    def judge(
        goal: str, cs: list[Config], peer: str, every: float | None, gm: float | None
    ) -> None:
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
            return
        if peer not in present:
            rows.append((goal, f"{SIDE_LABEL[peer]} side not run", "n/a"))
            return
        first = entry(report, peer, cs[0])
        if first and first.get("status") == "n/a":
            rows.append((goal, first.get("error", "n/a"), "n/a"))
            return
        sp = [(c, speedup(report, peer, c)) for c in cs]
        have = [(c, s) for c, s in sp if s is not None]
        if not have:
            rows.append((goal, why_none(report, cs, peer), "n/a"))
            return
        parts, ok = [], True
        if every is not None:
            cmin, smin = min(have, key=lambda q: q[1])
            parts.append(f"min {smin:.2f}x ({cmin['cell']} {shape_str(cmin)})")
            ok &= smin >= every
        if gm is not None:
            g = geomean([s for _, s in have])
            parts.append(f"geomean {g:.2f}x")
            ok &= g is not None and g >= gm
        partial = (
            f"; partial: {len(have)}/{len(sp)} configs" if len(have) < len(sp) else ""
        )
        rows.append((goal, ", ".join(parts) + partial, "met" if ok else "NOT met"))

    def sel(mode: str, cells: tuple[str, ...]) -> list[Config]:
        return [c for c in configs if c["mode"] == mode and c["cell"] in cells]

    judge(
        "training vs torch, LSTM: >= 1.5x geomean and >= 1.1x every shape",
        sel("train", ("lstm",)),
        "torch",
        1.1,
        1.5,
    )
    for cell in ("gru", "rnn"):
        judge(
            f"training vs torch, {cell.upper()}: >= 3x geomean and >= 2x every shape",
            sel("train", (cell,)),
            "torch",
            2.0,
            3.0,
        )
    judge(
        "inference vs torch, LSTM: >= 1.0x every shape",
        sel("infer", ("lstm",)),
        "torch",
        1.0,
        None,
    )
    for cell in ("gru", "rnn"):
        judge(
            f"inference vs torch, {cell.upper()}: >= 3x geomean",
            sel("infer", (cell,)),
            "torch",
            None,
            3.0,
        )
    both = [c for c in configs if c["mode"] in ("infer", "train")]
    judge(
        "vs NumPy (OpenBLAS default), inference and training: >= 2x every shape and "
        ">= 4x geomean",
        both,
        "numpy",
        2.0,
        4.0,
    )
    judge(
        "vs NumPy (OpenBLAS SkylakeX), inference and training: >= 1.3x every shape",
        both,
        "numpy-skx",
        1.3,
        None,
    )

    peak = meta.get("peak_gflops")
    for cell in ("lstm", "gru"):
        goal = f"{cell.upper()} training at 35x128x1024x1024: >= 80% of peak"
        cs = [
            c
            for c in configs
            if c["mode"] == "train"
            and c["cell"] == cell
            and (c["T"], c["B"], c["I"], c["H"]) == (35, 128, 1024, 1024)
        ]
        m = med(report, "rnnkit", cs[0]) if cs else None
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
        elif not m or not peak:
            rows.append((goal, "no valid timing" if not m else "no peak", "n/a"))
        else:
            frac = flops(cs[0]) / m / 1e9 / peak
            rows.append(
                (
                    goal,
                    (
                        f"{100 * frac:.0f}% of {peak:.0f} GFLOP/s "
                        f"({meta['peak_source'].split(' (')[0]})"
                    ),
                    "met" if frac >= 0.8 else "NOT met",
                )
            )

    def gen_goal(goal: str, cs: list[Config], limit_us: float) -> None:
        if not cs:
            rows.append((goal, "not run in this subset", "n/a"))
            return
        vals = [(c, med(report, "rnnkit", c)) for c in cs]
        have = [(c, v) for c, v in vals if v]
        if not have:
            rows.append((goal, why_none(report, cs), "n/a"))
            return
        cmax, vmax = max(have, key=lambda q: q[1])
        partial = f"; partial: {len(have)}/{len(vals)}" if len(have) < len(vals) else ""
        rows.append(
            (
                goal,
                f"max {vmax * 1e6:.2f} µs ({cmax['cell']})" + partial,
                "met" if vmax * 1e6 <= limit_us else "NOT met",
            )
        )

    gen_goal(
        "generation step <= 3 µs at H=128 (every cell)",
        [c for c in configs if c["mode"] == "gen" and c["H"] == 128],
        3.0,
    )
    gen_goal(
        "generation step <= 20 µs for LSTM at H=512",
        [
            c
            for c in configs
            if c["mode"] == "gen" and c["H"] == 512 and c["cell"] == "lstm"
        ],
        20.0,
    )

    N = meta["threads"]
    goal = f"scaling: {N} threads >= 1.85x one thread on the three large shapes"
    sc = scaling_rows(report)
    have = [(c, s) for c, _, _, s in sc if s is not None]
    if N != 2:
        goal += f" (goal is stated for 2 threads; run has {N})"
    if not sc:
        rows.append((goal, "not run (needs --threads > 1 and a large shape)", "n/a"))
    elif not have:
        rows.append((goal, why_none(report, [c for c, *_ in sc]), "n/a"))
    else:
        cmin, smin = min(have, key=lambda q: q[1])
        partial = f"; partial: {len(have)}/{len(sc)}" if len(have) < len(sc) else ""
        rows.append(
            (
                goal,
                f"min {smin:.2f}x ({cmin['mode']} {cmin['cell']} "
                f"{shape_str(cmin)})" + partial,
                "met" if smin >= 1.85 else "NOT met",
            )
        )
    return rows


def why_none(report: dict, cs: list[Config], peer: str | None = None) -> str:
    """Why no configuration in ``cs`` has valid timings (for the goals table)."""
    parts = []
    for side in ["rnnkit"] + ([peer] if peer else []):
        st = [(entry(report, side, c) or {}).get("status", "not run") for c in cs]
        counts = {k: st.count(k) for k in dict.fromkeys(st)}
        parts.append(
            f"{side} "
            + ", ".join(
                f"{'WRONG' if k == 'wrong' else k} {n}/{len(cs)}"
                for k, n in counts.items()
            )
        )
    return "no valid timings: " + "; ".join(parts)


def render_goals(report: dict) -> str:
    rows = goals(report)
    s = '# rnnkit speed goals (issue "Speed")\n\n'
    s += (
        f"Command: `{report['meta']['command']}` — {report['meta']['date']}, "
        f"{report['meta']['threads']} threads, "
        f"CPU {report['meta']['cpu']['model']}.\n\n"
    )
    s += "Speedup = peer time / rnnkit time. A goal judged on a subset says so.\n\n"
    s += "| goal | measured | status |\n|---|---|---|\n"
    s += "\n".join(
        f"| {g} | {m} | {'**' + st + '**' if st == 'NOT met' else st} |"
        for g, m, st in rows
    )
    met = sum(st == "met" for _, _, st in rows)
    judged = sum(st != "n/a" for _, _, st in rows)
    return s + f"\n\n{met} of {judged} judged goals met ({len(rows) - judged} n/a).\n"
