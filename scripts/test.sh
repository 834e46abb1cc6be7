#!/usr/bin/env bash
# Run every test of detcore:
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings)
#   2. Rust unit and integration tests (cargo test)
#   3. C/C++/Fortran tests and examples (CMake + ctest), including a build against the
#      installed package; then the C tests again under ASan/UBSan and valgrind
#   4. Python tests (pytest), with the reference client determined==0.38.1 in a venv
#   5. the real launchers (scripts/launchers.sh): Open MPI's mpirun and a one-node Slurm that the
#      tests start themselves; skipped, with a warning, where they are not installed
#   6. the temporary folder of the suite must be empty at the end
# Services the tests need (fake master, S3/GCS/Azure emulators, Slurm) are started by the tests
# themselves on 127.0.0.1 and free ports, and stopped when they end. Every test runs with
# TMPDIR set to a folder of the suite's own, which must be empty at the end: a file left there
# is a leak of detcore or of a test, and fails the run.
#
# The CUDA example is built when CMake finds a CUDA compiler (CUDACXX=/path/to/nvcc; .ci/run
# installs one from PyPI with scripts/cuda_wheels.sh), and run only where there is a GPU.
#
# Environment: DETCORE_BUILD_DIR (default build/), DETCORE_VENV (default .venv/),
# DETCORE_SKIP_LINT=1 to skip step 1, DETCORE_SKIP_SANITIZE=1 to skip the ASan/valgrind pass.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${DETCORE_BUILD_DIR:-$root/build}"
jobs="${DETCORE_JOBS:-$(nproc)}"
step() { printf '\n==== %s ====\n' "$*"; }

suite_tmp="$(mktemp -d "${TMPDIR:-/tmp}/detcore-tests.XXXXXX")"
export TMPDIR="$suite_tmp"

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
if ! cfg="$(cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release 2>&1)"; then
  echo "$cfg"
  exit 1
fi
# What was left out, and which CUDA compiler builds the CUDA example.
grep -E '^-- (detcore:|The CUDA compiler identification)' <<<"$cfg" || true
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
if [ -x "$build/examples/train_cuda" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then
    echo "CUDA example: built and run on this machine's GPU (example_cuda_preempt_restart)"
  else
    echo "CUDA example: compiled and linked against detcore; NOT RUN: no GPU here" \
         "(example_cuda_preempt_restart is skipped). On a GPU machine: scripts/gpu_check.sh"
  fi
else
  echo "CUDA example: not built (no CUDA compiler; CUDACXX=\"\$(scripts/cuda_wheels.sh)\" installs one)"
fi

if [ "${DETCORE_SKIP_SANITIZE:-0}" != 1 ]; then
  step "AddressSanitizer/UBSan and valgrind over the C tests"
  scripts/sanitize.sh
fi

step "pytest"
venv="$(scripts/venv.sh)"
export DETCORE_LIB="$build/cargo/release/libdetcore.so"
export DETCORE_BUILD_DIR="$build"
# (google-api-core's notice about the Python version's end of life is not about detcore.)
"$venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp "$build/tmp/pytest" \
  -W "ignore::FutureWarning:google.api_core._python_version_support" tests/python

step "launchers: mpirun, srun, sbatch"
scripts/launchers.sh

step "leftovers in the suite's temporary folder"
left="$(find "$suite_tmp" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)"
if [ -n "$left" ]; then
  echo "FAIL: the tests left $(wc -l <<<"$left") file(s) in $suite_tmp (their TMPDIR):" >&2
  head -n 40 <<<"$left" | sed 's/^/  /' >&2
  exit 1
fi
rmdir "$suite_tmp"
echo "none"

step "all tests passed"
