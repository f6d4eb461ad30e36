#!/usr/bin/env bash
# Installs a built wheel into a fresh virtual environment and runs the test suite
# against the installed package, with no compiler on PATH.
#
#   tools/test_wheel.sh WHEEL [pytest args...]   (test paths relative to the checkout:
#                                                  tests/test_build.py -rs)
#
# - The venv gets the wheel plus numpy, pytest and hypothesis from the index (the
#   wheel itself is installed with --no-index: nothing is built).
# - pytest runs from an empty directory on this checkout's tests/ with PATH holding
#   only the venv's bin/ and a folder of a few non-compiler tools; CC/CXX point
#   nowhere. tests/test_build.py then checks (RNNKIT_TEST_INSTALLED) that rnnkit was
#   imported from the venv, that every package file made it into the wheel, that no
#   compiler is reachable and that the bundled OpenMP runtime is the one loaded.
# - With qemu-user installed, tools/cpu_probe.py then runs the installed package on
#   emulated CPUs without AVX-512 and without AVX (see there).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WHEEL="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rnnkit-wheel-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install --quiet --upgrade pip
"$V/python" -m pip install --quiet --no-index --no-deps "$WHEEL"
"$V/python" -m pip install --quiet "numpy>=1.22" pytest hypothesis
"$V/python" -m pip check

# Non-compiler tools the tests may call through a shell.
mkdir -p "$WORK/bin"
for tool in sh bash env cat ls uname; do
  if command -v "$tool" >/dev/null; then ln -sf "$(command -v "$tool")" "$WORK/bin/$tool"; fi
done
ARGS=()
HAVE_PATH=0
for a in "$@"; do
  if [[ "$a" == tests* ]]; then ARGS+=("$ROOT/$a"); HAVE_PATH=1; else ARGS+=("$a"); fi
done
[ "$HAVE_PATH" = 1 ] || ARGS=("$ROOT/tests" ${ARGS[@]+"${ARGS[@]}"})
mkdir -p "$WORK/run"
SITE=$("$V/python" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
cd "$WORK/run"
env -u CC -u CXX -u PYTHONPATH \
  PATH="$V:$WORK/bin" CC=/nonexistent/cc CXX=/nonexistent/c++ \
  RNNKIT_TEST_INSTALLED="$SITE" \
  "$V/python" -c "import rnnkit, sys; rnnkit.show_config(); print('rnnkit from', rnnkit.__file__)"
env -u CC -u CXX -u PYTHONPATH \
  PATH="$V:$WORK/bin" CC=/nonexistent/cc CXX=/nonexistent/c++ \
  RNNKIT_TEST_INSTALLED="$SITE" \
  "$V/python" -m pytest -q -p no:cacheprovider ${ARGS[@]+"${ARGS[@]}"}

# The same installed package on emulated CPUs: one without AVX (Nehalem) and one
# with AVX2 but no AVX-512 (Haswell); any instruction the model lacks is a SIGILL.
if command -v qemu-x86_64 >/dev/null; then
  "$V/python" "$ROOT/tools/cpu_probe.py" --qemu --python "$V/python"
else
  echo "test_wheel: qemu-x86_64 not found: emulated-CPU probe skipped" \
    "(apt-get install qemu-user)"
fi
