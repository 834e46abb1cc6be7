#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one command (CI has no GPU: it only compiles the CUDA
# example). On a machine with a GPU and its driver:
#   1. build detcore and the CUDA example (examples/cpp/train_cuda.cpp + cuda_model.cu);
#   2. run the example end to end: uninterrupted, then preempted with SIGTERM after its first
#      checkpoint and restarted; both must end with the same weights (ctest
#      example_cuda_preempt_restart, which must pass, not be skipped);
#   3. compare the profiler's NVML `gpu` group with nvidia-smi, idle and while the example keeps
#      the GPU busy (tests/gpu/nvml_check.py).
#
#   scripts/gpu_check.sh
#
# The CUDA compiler: $CUDACXX, else nvcc on PATH (a CUDA toolkit that matches the driver), else
# NVIDIA's CUDA 13 compiler from PyPI (scripts/cuda_wheels.sh; its programs need a driver of
# the CUDA 13 generation, R580 or newer). Build folder: $DETCORE_GPU_BUILD_DIR, default build-gpu/.
# Exits 0 when every check passed, 77 when there is no GPU here, 1 otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${DETCORE_GPU_BUILD_DIR:-$root/build-gpu}"
cargo_dir="${DETCORE_BUILD_DIR:-$root/build}/cargo"   # shared with the main build: compiled once
say() { printf '\n==== %s ====\n' "$*"; }

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi -L fails); nothing to check" >&2
  exit 77
fi
say "GPU"
nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total --format=csv

nvcc="${CUDACXX:-$(command -v nvcc || true)}"
if [ -z "$nvcc" ]; then
  nvcc="$("$root/scripts/cuda_wheels.sh")"
fi
say "CUDA compiler"
"$nvcc" --version | tail -n 2

say "build ($build)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" \
      -DDETCORE_CARGO_TARGET_DIR="$cargo_dir" >/dev/null
cmake --build "$build" --target detcore_train_cuda
[ -x "$build/examples/train_cuda" ] || { echo "FAIL: the CUDA example was not built" >&2; exit 1; }

say "the CUDA example, uninterrupted and preempted + restarted"
out="$(ctest --test-dir "$build" -R '^example_cuda_preempt_restart$' --output-on-failure 2>&1)" || {
  echo "$out"
  echo "FAIL: example_cuda_preempt_restart" >&2
  exit 1
}
echo "$out" | tail -n 4
if ! grep -q 'example_cuda_preempt_restart .*Passed' <<<"$out"; then
  echo "FAIL: example_cuda_preempt_restart did not run (skipped: the example found no usable GPU;" \
       "a driver older than the CUDA compiler?)" >&2
  exit 1
fi

say "profiler: NVML's gpu group against nvidia-smi"
DETCORE_LIB="$cargo_dir/release/libdetcore.so" python3 "$root/tests/gpu/nvml_check.py" \
  --load "$build/examples/train_cuda"

say "GPU checks passed"
