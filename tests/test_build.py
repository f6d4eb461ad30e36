"""The build and the installed package: one wheel for every x86-64 CPU, a light import.

- Compile flags past baseline x86-64 appear only on the per-ISA kernel libraries, and
  only the extensions the dispatcher checks for; the portable kernels contain no
  instruction past SSE2; the ISA objects define nothing outside their namespaces
  (``tools/check_isa.py``, run here on this checkout's build directory; CI also runs
  it with ``--link`` on the relinked module).
- ``import rnnkit`` does no work beyond choosing the SIMD path: no threads started,
  no optional heavy modules imported.
- With ``RNNKIT_TEST_INSTALLED=<site-packages>`` (the fresh-venv wheel job,
  ``tools/test_wheel.sh``): the package under test is the installed one, complete,
  and no compiler is reachable.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnnkit as rk

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "check_isa.py"


def _tool():
    if not TOOL.exists():
        pytest.skip("tools/check_isa.py not in this checkout")
    spec = importlib.util.spec_from_file_location("check_isa", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_isa", mod)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------ the checker itself
@pytest.mark.parametrize(
    "insn, beyond",
    [
        ("vmovups %ymm0,(%rdi)", True),
        ("vfmadd231ps %xmm1,%xmm2,%xmm3", True),  # VEX on xmm: still AVX
        ("vaddss %xmm1,%xmm0,%xmm0", True),
        ("kmovw %k1,%eax", True),
        ("vpxord %zmm0,%zmm0,%zmm0", True),
        ("pshufb %xmm1,%xmm0", True),  # SSSE3
        ("roundps $0x1,%xmm0,%xmm0", True),  # SSE4.1
        ("popcnt %rax,%rax", True),
        ("shlx %rax,%rbx,%rcx", True),  # BMI2
        ("lock cmpxchg16b (%rdi)", True),
        ("movups %xmm0,(%rdi)", False),
        ("mulps %xmm1,%xmm0", False),
        ("cvttss2si %xmm0,%eax", False),
        ("pextrw $0x0,%xmm0,%eax", False),  # SSE2 form
        ("tzcnt %eax,%eax", False),  # rep bsf: runs anywhere
        ("rep stos %rax,%es:(%rdi)", False),
        ("verw (%rax)", False),
        ("call 1040 <memcpy@plt>", False),
    ],
)
def test_instruction_classifier(insn, beyond):
    assert _tool().beyond_baseline(insn) is beyond


def test_flag_checker_catches_leaks():
    t = _tool()
    C = t.Compile
    bad = [
        C("_core", "csrc/bindings.cpp", "b.o", ["-O3", "-mavx2"]),
        C("rnnkit_generic", "csrc/rnn.cpp", "r.o", ["-march=native"]),
        C("rnnkit_avx2", "csrc/rnn.cpp", "r.o", ["-mavx2", "-mfma", "-mbmi2"]),
        C("rnnkit_avx512", "csrc/rnn.cpp", "r.o", ["-mavx512f", "-mavx512bw"]),
        C("rnnkit_generic", "csrc/gemm.cpp", "g.o", ["-ffast-math"]),
    ]
    problems = t.check_flags(bad)
    assert len(problems) == 5, problems
    good = [
        C("_core", "csrc/bindings.cpp", "b.o", ["-O3", "-fPIC", "-mtune=generic"]),
        C("rnnkit_avx2", "csrc/rnn.cpp", "r.o", ["-mavx2", "-mfma"]),
        C(
            "rnnkit_avx512",
            "csrc/rnn.cpp",
            "r.o",
            ["-mavx512f", "-mavx2", "-mfma", "-mprefer-vector-width=512"],
        ),
    ]
    assert t.check_flags(good) == []


# ------------------------------------------------------------- this build's objects
@pytest.fixture(scope="module")
def build_dir() -> Path:
    t = _tool()
    if shutil.which("objdump") is None or shutil.which("nm") is None:
        pytest.skip("binutils (objdump, nm) not installed")
    d = t.find_build_dir()
    if d is None:
        pytest.skip(
            "no CMake build directory in this checkout (pip install . makes one)"
        )
    return d


def test_build_is_baseline_outside_isa_kernels(build_dir):
    problems, notes = _tool().run_checks(build_dir, link=False)
    assert not problems, "\n".join([str(build_dir), *notes, *problems])


def test_isa_objects_do_use_their_isa(build_dir):
    """The checker sees AVX where it must be (so a clean result means something)."""
    t = _tool()
    cmds = [c for c in t.compile_commands(build_dir) if c.target == "rnnkit_avx2"]
    if not cmds:
        pytest.skip("no AVX2 library in this build (not x86-64)")
    obj = next(
        build_dir / c.obj for c in cmds if c.source.endswith(("lstm.cpp", "gemm.cpp"))
    )
    funcs = t.disassemble(obj)
    assert any(t.beyond_baseline(i) for ins in funcs.values() for i in ins), obj


def test_show_config_reports_the_build():
    info = rk.show_config(print_fn=None)
    assert "-march=native" not in info["cxx_flags"]
    assert "-ffast-math" not in info["cxx_flags"] + info["isa_flags"]
    assert "generic" in info["simd_compiled"]
    if info["machine"] in ("x86_64", "AMD64"):
        assert set(info["simd_compiled"]) == {"avx512", "avx2", "generic"}


# ---------------------------------------------------------------------- import
def _python(code: str, **env: str) -> str:
    e = dict(os.environ, **env)
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=e,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_import_starts_no_threads_and_loads_nothing_heavy():
    """``import rnnkit`` only picks the SIMD path: the OpenMP team starts at the
    first kernel call, and optional heavy packages are not imported."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc")
    out = _python(
        "import os, sys\n"
        "import numpy\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "import rnnkit\n"
        "after = len(os.listdir('/proc/self/task'))\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'scipy', 'pandas',\n"
        "    'hypothesis', 'rnnkit.bench', 'rnnkit.cli', 'multiprocessing')\n"
        "    if m in sys.modules)\n"
        "print(before, after, ','.join(heavy) or '-')\n",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="4",
    )
    before, after, heavy = out.split()
    assert before == after, f"import rnnkit started threads: {before} -> {after}"
    assert heavy == "-", f"import rnnkit imported {heavy}"


# ------------------------------------------------------- the installed wheel job
INSTALLED = os.environ.get("RNNKIT_TEST_INSTALLED")
installed_only = pytest.mark.skipif(
    not INSTALLED, reason="set RNNKIT_TEST_INSTALLED=<site-packages> (wheel job)"
)


@installed_only
def test_package_under_test_is_the_installed_one():
    pkg = Path(rk.__file__).resolve().parent
    assert pkg.is_relative_to(Path(INSTALLED).resolve()), pkg
    assert not pkg.is_relative_to(ROOT), f"testing the source tree: {pkg}"


@installed_only
def test_installed_package_is_complete():
    pkg = Path(rk.__file__).resolve().parent
    src = ROOT / "python" / "rnnkit"
    if src.is_dir():  # every source file made it into the wheel
        want = {
            p.relative_to(src).as_posix()
            for p in src.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
        }
        have = {
            p.relative_to(pkg).as_posix()
            for p in pkg.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert want <= have, f"missing from the wheel: {sorted(want - have)}"
    assert (pkg / "py.typed").exists()
    assert list(pkg.glob("_core*.so")), "no compiled module"
    from importlib import metadata

    assert metadata.version("rnnkit") == rk.__version__


@installed_only
def test_no_compiler_reachable():
    found = {c: shutil.which(c) for c in ("cc", "gcc", "g++", "c++", "clang", "cmake")}
    assert not any(found.values()), f"compilers on PATH: {found}"


@installed_only
def test_installed_wheel_bundles_or_finds_openmp():
    """The repaired wheel carries its OpenMP runtime (rnnkit.libs/) and the module
    resolves it from there, not from a system compiler's directory."""
    pkg = Path(rk.__file__).resolve().parent
    libs = pkg.parent / "rnnkit.libs"
    if not libs.is_dir():
        pytest.skip("not an auditwheel-repaired wheel")
    assert any("gomp" in p.name for p in libs.iterdir()), list(libs.iterdir())
    maps = Path("/proc/self/maps")
    if maps.exists():
        gomp = {
            line.split()[-1] for line in maps.read_text().splitlines() if "gomp" in line
        }
        assert gomp and all(str(libs) in g for g in gomp), gomp
