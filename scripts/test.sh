#!/usr/bin/env bash
# Run every test of detcore:
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings)
#   2. Rust unit and integration tests (cargo test)
#   3. C/C++/Fortran tests and examples (CMake + ctest), including a build against the
#      installed package; then the C tests again under ASan/UBSan and valgrind
#   4. Python tests (pytest), with the reference client determined==0.38.1 in a venv
#   5. the real launchers (scripts/launchers.sh): Open MPI's mpirun and a one-node Slurm that the
#      tests start themselves; skipped, with a warning, where they are not installed
# Services the tests need (fake master, S3/GCS/Azure emulators, Slurm) are started by the tests
# themselves on 127.0.0.1 and free ports, and stopped when they end.
#
# Environment: DETCORE_BUILD_DIR (default build/), DETCORE_VENV (default .venv/),
# DETCORE_SKIP_LINT=1 to skip step 1, DETCORE_SKIP_SANITIZE=1 to skip the ASan/valgrind pass.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${DETCORE_BUILD_DIR:-$root/build}"
jobs="${DETCORE_JOBS:-$(nproc)}"
step() { printf '\n==== %s ====\n' "$*"; }

if [ "${DETCORE_SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --check / clippy"
  cargo fmt --check
  cargo clippy --all-targets --quiet -- -D warnings
fi

step "cargo test"
cargo test --quiet

step "CMake build + ctest ($build)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"

if [ "${DETCORE_SKIP_SANITIZE:-0}" != 1 ]; then
  step "AddressSanitizer/UBSan and valgrind over the C tests"
  scripts/sanitize.sh
fi

step "pytest"
venv="$(scripts/venv.sh)"
export DETCORE_LIB="$build/cargo/release/libdetcore.so"
export DETCORE_BUILD_DIR="$build"
"$venv/bin/python" -m pytest -q tests/python

step "launchers: mpirun, srun, sbatch"
scripts/launchers.sh

step "all tests passed"
