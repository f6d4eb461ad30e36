#!/usr/bin/env bash
# Builds rnnkit with AddressSanitizer + UndefinedBehaviorSanitizer (the CMake option
# RNNKIT_SANITIZE) into its own virtual environment and runs the test suite on it.
#
#   tools/sanitize.sh [pytest args...]     (default: the whole suite, tests/)
#
# Environment:
#   RNNKIT_ASAN_VENV   the venv to use (default .venv-asan in this checkout; reused,
#                      and the package rebuilt, on every run)
#   CXX                the compiler (default g++; clang++ works too, its runtime is
#                      then preloaded instead)
#
# How it works: the extension is compiled and linked with -fsanitize=address,undefined
# -fno-sanitize-recover=undefined (CMakeLists.txt), in build/asan. Python itself is
# not instrumented, so the ASan runtime must be the first library in the process:
# it is preloaded with LD_PRELOAD (the path comes from the compiler,
# -print-file-name=libasan.so; for clang, libclang_rt.asan-x86_64.so), and
# libstdc++ right after it, so that ASan's C++-exception interceptor finds the real
# __cxa_throw. Options:
#   detect_leaks=0              CPython and NumPy keep allocations until exit "by
#                               design"; leaks of the kernels would show as RSS
#                               growth in benchmarks/soak.py instead
#   allocator_may_return_null=1 tests that ask for absurd sizes get a MemoryError
#                               instead of an ASan abort
#   halt_on_error=1, abort_on_error=1 with UBSan's print_stacktrace=1: the first
#                               report stops the run with a stack trace and a
#                               non-zero exit
# A clean run prints pytest's summary and exits 0.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${RNNKIT_ASAN_VENV:-$ROOT/.venv-asan}"
PY="${PYTHON:-python3}"
CXX="${CXX:-g++}"
export CXX
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

if [[ "$CXX" == *clang* ]]; then
  RUNTIME="$("$CXX" -print-file-name=libclang_rt.asan-x86_64.so)"
else
  RUNTIME="$("$CXX" -print-file-name=libasan.so)"
fi
if [ ! -e "$RUNTIME" ]; then
  echo "sanitize: no ASan runtime for $CXX ($RUNTIME)" >&2
  exit 2
fi
RUNTIME="$(readlink -f "$RUNTIME")"
# libstdc++ too: python does not link it, and ASan resolves the real __cxa_throw at
# start-up; without it the first C++ exception aborts ("real___cxa_throw != 0").
STDCXX="$(readlink -f "$("$CXX" -print-file-name=libstdc++.so)")"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Build requirements live in the venv (no build isolation), so the include paths
# stay the same and a rebuild after an edit only recompiles what changed.
"$VENV/bin/python" -m pip install --quiet "numpy>=1.22" pytest hypothesis \
  "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
SECONDS=0
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps \
  --no-build-isolation "$ROOT" \
  --config-settings=cmake.define.RNNKIT_SANITIZE=ON \
  --config-settings=build-dir="$ROOT/build/asan"
echo "sanitize: built in $SECONDS s with $CXX; runtime $RUNTIME"

# (found without importing it: loading an ASan module without the preload aborts)
SO="$("$VENV/bin/python" -c "import glob, sysconfig
print(glob.glob(sysconfig.get_paths()['platlib'] + '/rnnkit/_core*.so')[0])")"
if ! readelf -d "$SO" | grep -Eq "libasan|libclang_rt.asan"; then
  echo "sanitize: $SO is not linked with ASan (RNNKIT_SANITIZE did not apply)" >&2
  exit 2
fi

# Only the Python process (and what it starts) gets the runtime: shell tools run
# with it preloaded can fail on exit.
PRELOAD="$RUNTIME:$STDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
ASAN="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1"
ASAN="$ASAN:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
cd "$ROOT"
if [ "$#" -eq 0 ]; then set -- tests; fi
SECONDS=0
set +e
env LD_PRELOAD="$PRELOAD" ASAN_OPTIONS="$ASAN" UBSAN_OPTIONS="$UBSAN" \
  RNNKIT_SANITIZED=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
echo "sanitize: pytest exit $rc after $SECONDS s under ASan+UBSan"
exit $rc
