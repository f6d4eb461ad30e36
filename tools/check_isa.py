#!/usr/bin/env python3
"""Checks that nothing outside the per-ISA kernel files needs more than baseline x86-64.

The kernel sources are compiled three times (object libraries ``rnnkit_generic``,
``rnnkit_avx2``, ``rnnkit_avx512``) and the path is chosen at run time, so one wheel
runs on any x86-64 CPU only if

1. the compile flags of every file outside ``rnnkit_avx2``/``rnnkit_avx512`` stay at
   baseline x86-64 (SSE2): no ``-mavx*``, ``-mfma``, ``-msse4*``, ``-march=native``
   ...; the two ISA libraries use only the extensions the dispatcher checks for
   (avx2: AVX2+FMA; avx512: AVX-512F+AVX2+FMA); nothing uses ``-ffast-math``;
2. the ``rnnkit_generic`` objects contain no instruction beyond SSE2 (objdump);
3. the ISA objects define no global or weak code symbol outside their own namespace
   ``rnnkit::avx2`` / ``rnnkit::avx512``: such a symbol (an inline function from a
   shared header, a template instance) is merged with the baseline copy at link time
   and the linker may keep the AVX one, which then runs on every CPU;
4. with ``--link``: the module relinked without stripping (same objects, order and
   flags as the build) has no function outside those two namespaces that uses an
   instruction beyond SSE2. This covers ``bindings.cpp`` and ``dispatch.cpp``, whose
   objects hold LTO bytecode only.

Usage::

    python tools/check_isa.py [BUILD_DIR] [--link]

BUILD_DIR is a CMake build directory of rnnkit (default: ``$RNNKIT_BUILD_DIR`` or the
newest ``build/*/`` of this checkout made without the sanitizer or native options).
Reads ``compile_commands.json`` when present, else ``build.ninja``. Needs binutils
(objdump, nm). Exits 0 when clean, 1 with a list of problems otherwise, 2 when it
cannot check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Object library -> the -m flags it may use (they must match what
# csrc/dispatch.cpp checks before it selects the path).
ISA_TARGETS = {
    "rnnkit_avx2": {"-mavx", "-mavx2", "-mfma"},
    "rnnkit_avx512": {"-mavx", "-mavx2", "-mfma", "-mavx512f"},
}
ISA_NAMESPACE = re.compile(r"rnnkit::(avx2|avx512)::")

# -m options that do not enable instructions.
_HARMLESS_M = re.compile(
    r"^-m(64|tune=.*|no-.*|prefer-vector-width=.*|fpmath=sse|red-zone|"
    r"stackrealign|cmodel=.*|abi=.*|tls-dialect=.*)$"
)
_FORBIDDEN_ANYWHERE = ("-ffast-math", "-Ofast", "-funsafe-math-optimizations")

# Instructions past baseline x86-64 (SSE2) that objdump prints without a "v".
# tzcnt is left out: it is "rep bsf", which runs as bsf on older CPUs, and GCC emits
# it for ctz at any -march.
_BEYOND_SSE2 = {
    # SSE3
    "addsubpd",
    "addsubps",
    "haddpd",
    "haddps",
    "hsubpd",
    "hsubps",
    "lddqu",
    "movddup",
    "movshdup",
    "movsldup",
    "fisttp",
    "fisttps",
    "fisttpl",
    "fisttpll",
    "monitor",
    "mwait",
    # SSSE3
    "pabsb",
    "pabsw",
    "pabsd",
    "palignr",
    "phaddw",
    "phaddd",
    "phaddsw",
    "phsubw",
    "phsubd",
    "phsubsw",
    "pmaddubsw",
    "pmulhrsw",
    "pshufb",
    "psignb",
    "psignw",
    "psignd",
    # SSE4.1
    "blendpd",
    "blendps",
    "blendvpd",
    "blendvps",
    "dppd",
    "dpps",
    "extractps",
    "insertps",
    "movntdqa",
    "mpsadbw",
    "packusdw",
    "pblendvb",
    "pblendw",
    "pcmpeqq",
    "pextrb",
    "pextrd",
    "pextrq",
    "phminposuw",
    "pinsrb",
    "pinsrd",
    "pinsrq",
    "pmaxsb",
    "pmaxsd",
    "pmaxud",
    "pmaxuw",
    "pminsb",
    "pminsd",
    "pminud",
    "pminuw",
    "pmovsxbw",
    "pmovsxbd",
    "pmovsxbq",
    "pmovsxwd",
    "pmovsxwq",
    "pmovsxdq",
    "pmovzxbw",
    "pmovzxbd",
    "pmovzxbq",
    "pmovzxwd",
    "pmovzxwq",
    "pmovzxdq",
    "pmuldq",
    "pmulld",
    "ptest",
    "roundpd",
    "roundps",
    "roundsd",
    "roundss",
    # SSE4.2, POPCNT, LZCNT, BMI1/2, MOVBE, ADX, CX16
    "pcmpestri",
    "pcmpestrm",
    "pcmpistri",
    "pcmpistrm",
    "pcmpgtq",
    "crc32b",
    "crc32w",
    "crc32l",
    "crc32q",
    "crc32",
    "popcnt",
    "popcntw",
    "popcntl",
    "popcntq",
    "lzcnt",
    "lzcntw",
    "lzcntl",
    "lzcntq",
    "andn",
    "bextr",
    "blsi",
    "blsmsk",
    "blsr",
    "bzhi",
    "mulx",
    "pdep",
    "pext",
    "rorx",
    "sarx",
    "shlx",
    "shrx",
    "movbe",
    "adcx",
    "adox",
    "cmpxchg16b",
}
# Mnemonics starting with "v" that are not AVX (virtualisation, segment checks).
_V_NOT_AVX = {
    "verr",
    "verw",
    "vmcall",
    "vmlaunch",
    "vmresume",
    "vmxoff",
    "vmxon",
    "vmread",
    "vmwrite",
    "vmptrld",
    "vmptrst",
    "vmclear",
    "vmfunc",
    "vmrun",
    "vmload",
    "vmsave",
    "vmmcall",
}
_PREFIXES = {
    "rep",
    "repz",
    "repe",
    "repnz",
    "repne",
    "lock",
    "notrack",
    "bnd",
    "data16",
    "addr32",
    "cs",
    "ds",
    "es",
    "fs",
    "gs",
    "ss",
    "rex",
    "rex.w",
    "xacquire",
    "xrelease",
}
_WIDE_REG = re.compile(r"%(ymm|zmm)\d+|%k[0-7]\b")


def beyond_baseline(insn: str) -> bool:
    """True when one objdump instruction text (AT&T syntax) needs more than SSE2."""
    tokens = insn.split()
    while tokens and tokens[0].lower() in _PREFIXES:
        tokens = tokens[1:]
    if not tokens:
        return False
    mnem = tokens[0].lower()
    if mnem.startswith("v") and mnem not in _V_NOT_AVX:
        return True
    if mnem in _BEYOND_SSE2:
        return True
    return bool(_WIDE_REG.search(insn))


# --------------------------------------------------------------- compile commands
@dataclass
class Compile:
    target: str  # CMake target, from the object path (CMakeFiles/<target>.dir/...)
    source: str
    obj: str
    args: list[str] = field(default_factory=list)


def _target_of(obj: str) -> str:
    m = re.search(r"CMakeFiles/([^/]+)\.dir/", obj.replace("\\", "/"))
    return m.group(1) if m else "?"


def compile_commands(build: Path) -> list[Compile]:
    """The compile commands of the build: compile_commands.json, else build.ninja."""
    cc = build / "compile_commands.json"
    if cc.exists():
        out = []
        for e in json.loads(cc.read_text()):
            args = e.get("arguments") or shlex.split(e["command"])
            obj = e.get("output") or args[args.index("-o") + 1]
            out.append(Compile(_target_of(obj), e["file"], obj, args))
        return out
    ninja = build / "build.ninja"
    if not ninja.exists():
        raise FileNotFoundError(
            f"{build}: neither compile_commands.json nor build.ninja"
        )
    out, cur = [], None
    for line in ninja.read_text().splitlines():
        m = re.match(r"^build (\S+\.o): CXX_COMPILER__\S+ (\S+)", line)
        if m:
            cur = Compile(_target_of(m.group(1)), m.group(2), m.group(1))
            out.append(cur)
            continue
        if cur is not None and line.startswith("  "):
            key, _, value = line.strip().partition(" = ")
            if key in ("FLAGS", "DEFINES"):
                cur.args += shlex.split(value)
        elif not line.startswith("  "):
            cur = None
    return out


def check_flags(cmds: Iterable[Compile]) -> list[str]:
    problems = []
    for c in cmds:
        where = f"{c.target}: {Path(c.source).name}"
        for a in c.args:
            if a in _FORBIDDEN_ANYWHERE:
                problems.append(f"{where}: {a} (STYLE.md: no fast-math)")
            if a.startswith("-march="):
                if c.target in ISA_TARGETS or a != "-march=x86-64":
                    problems.append(f"{where}: {a} (only -march=x86-64, or none)")
            elif a.startswith("-m") and not _HARMLESS_M.match(a):
                allowed = ISA_TARGETS.get(c.target, set())
                if a not in allowed:
                    problems.append(
                        f"{where}: {a} is past baseline x86-64"
                        + (
                            f" (this ISA library may use {sorted(allowed)}, what "
                            "csrc/dispatch.cpp checks)"
                            if allowed
                            else " outside the per-ISA kernel libraries"
                        )
                    )
    return problems


# ------------------------------------------------------------------ disassembly
def disassemble(path: str | Path) -> dict[str, list[str]]:
    """Function name (demangled) -> instruction texts, from ``objdump -d``."""
    out = subprocess.run(
        ["objdump", "-d", "-C", "-w", "--no-show-raw-insn", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    funcs: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
        elif cur is not None and "\t" in line:
            insn = line.split("\t", 1)[1].strip()
            if insn and insn != "(bad)":
                cur.append(insn)
    return funcs


def check_baseline_code(
    funcs: dict[str, list[str]], what: str, skip_isa_namespaces: bool
) -> list[str]:
    problems = []
    for name, insns in funcs.items():
        if skip_isa_namespaces and ISA_NAMESPACE.search(name):
            continue
        bad = [i for i in insns if beyond_baseline(i)]
        if bad:
            problems.append(
                f"{what}: {name[:160]} uses {len(bad)} instruction(s) past "
                f"baseline x86-64, e.g. {bad[0]!r}"
            )
    return problems


def is_lto_only(obj: Path) -> bool:
    """A slim LTO object (-flto -fno-fat-lto-objects) holds no machine code."""
    out = subprocess.run(
        ["objdump", "-h", str(obj)], capture_output=True, text=True, check=False
    ).stdout
    return ".gnu.lto_" in out and not re.search(r"\s\.text\S*\s+0*[1-9a-f]", out)


def check_isa_symbols(obj: Path, target: str) -> list[str]:
    out = subprocess.run(
        ["nm", "-C", "--defined-only", str(obj)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    problems = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if (
            len(parts) == 3
            and parts[1] in ("T", "W", "i")
            and not ISA_NAMESPACE.search(parts[2])
        ):
            problems.append(
                f"{target}: {obj.name} defines {parts[1]} symbol {parts[2][:160]!r} "
                "outside its ISA namespace (the linker may keep this copy for "
                "every caller)"
            )
    return problems


# ------------------------------------------------------------------------ relink
def relink_unstripped(build: Path, out: Path) -> None:
    """Links the extension again from build.ninja's objects, flags and libraries
    (same order), without the strip step that pybind11 adds after the link."""
    text = (build / "build.ninja").read_text()
    m = re.search(
        r"^build (\S+\.so): (CXX_\w*LIBRARY_LINKER\w*) (.*)$", text, re.MULTILINE
    )
    if not m:
        raise RuntimeError(f"{build}/build.ninja: no shared-library link statement")
    rule = m.group(2)
    inputs = m.group(3).split(" | ")[0].split(" || ")[0].split()
    vars_: dict[str, str] = {}
    for line in text[m.end() :].splitlines()[1:]:
        if not line.startswith("  "):
            break
        k, _, v = line.strip().partition(" = ")
        vars_[k] = v
    rules = (build / "CMakeFiles" / "rules.ninja").read_text()
    rm = re.search(rf"^rule {re.escape(rule)}\n\s+command = (.*)$", rules, re.MULTILINE)
    if not rm:
        raise RuntimeError(f"rules.ninja: no rule {rule}")
    link = rm.group(1).split("&&")[1].split()
    cxx = link[0]
    cmd = [cxx, "-fPIC"]
    for key in ("LANGUAGE_COMPILE_FLAGS", "ARCH_FLAGS", "LINK_FLAGS"):
        cmd += shlex.split(vars_.get(key, ""))
    cmd += ["-o", str(out), *inputs]
    for key in ("LINK_PATH", "LINK_LIBRARIES"):
        cmd += shlex.split(vars_.get(key, ""))
    subprocess.run(cmd, cwd=build, check=True, capture_output=True, text=True)


# ------------------------------------------------------------------------- main
def find_build_dir() -> Path | None:
    env = os.environ.get("RNNKIT_BUILD_DIR")
    if env:
        return Path(env)
    candidates = []
    for cache in (ROOT / "build").glob("*/CMakeCache.txt"):
        text = cache.read_text(errors="replace")
        if "RNNKIT_SANITIZE:BOOL=ON" in text or "RNNKIT_NATIVE:BOOL=ON" in text:
            continue
        if (cache.parent / "build.ninja").exists() or (
            cache.parent / "compile_commands.json"
        ).exists():
            candidates.append(cache.parent)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def run_checks(build: Path, link: bool = False) -> tuple[list[str], list[str]]:
    """(problems, notes) for the build directory ``build``."""
    notes: list[str] = []
    cmds = compile_commands(build)
    targets = sorted({c.target for c in cmds})
    notes.append(f"{len(cmds)} compile commands, targets {targets}")
    problems = check_flags(cmds)
    for c in cmds:
        obj = Path(c.obj) if Path(c.obj).is_absolute() else build / c.obj
        if not obj.exists():
            problems.append(f"{c.target}: object {c.obj} missing (build incomplete?)")
            continue
        if c.target in ISA_TARGETS:
            problems += check_isa_symbols(obj, c.target)
        elif is_lto_only(obj):
            notes.append(
                f"{c.target}: {obj.name} is LTO bytecode (checked with --link)"
            )
        else:
            problems += check_baseline_code(
                disassemble(obj), f"{c.target}: {obj.name}", skip_isa_namespaces=False
            )
    if link:
        with tempfile.TemporaryDirectory() as tmp:
            so = Path(tmp) / "_core_unstripped.so"
            relink_unstripped(build, so)
            funcs = disassemble(so)
            n_isa = sum(1 for f in funcs if ISA_NAMESPACE.search(f))
            n_vec = sum(
                1
                for f, ins in funcs.items()
                if ISA_NAMESPACE.search(f) and any(beyond_baseline(i) for i in ins)
            )
            notes.append(
                f"relinked module: {len(funcs)} functions, {n_isa} in the avx2/avx512 "
                f"namespaces ({n_vec} of them use AVX), the rest checked"
            )
            if n_vec == 0 and any(t in targets for t in ISA_TARGETS):
                problems.append(
                    "relinked module: no AVX code found at all in the "
                    "ISA namespaces: the check itself is broken"
                )
            problems += check_baseline_code(funcs, "module", skip_isa_namespaces=True)
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir", nargs="?", type=Path)
    ap.add_argument(
        "--link",
        action="store_true",
        help="also relink the module unstripped and check every function",
    )
    args = ap.parse_args(argv)
    build = args.build_dir or find_build_dir()
    if build is None or not build.is_dir():
        print(
            "check_isa: no build directory (pip install . first, or pass one)",
            file=sys.stderr,
        )
        return 2
    for tool in ("objdump", "nm"):
        if shutil.which(tool) is None:
            print(f"check_isa: {tool} not found (binutils)", file=sys.stderr)
            return 2
    problems, notes = run_checks(build, args.link)
    print(f"check_isa: {build}")
    for n in notes:
        print(f"  {n}")
    if problems:
        print(f"check_isa: {len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    print("check_isa: OK: baseline x86-64 outside rnnkit_avx2/rnnkit_avx512")
    return 0


if __name__ == "__main__":
    sys.exit(main())
