#!/usr/bin/env bash
# Install NVIDIA's CUDA compiler from PyPI into a virtual environment (no CUDA toolkit, no GPU
# needed) and print the path of its nvcc, for CMake (`CUDACXX=... cmake ...` or
# -DCMAKE_CUDA_COMPILER=...). .ci/run uses it so that CI compiles and links the CUDA example.
#
#   CUDACXX="$(scripts/cuda_wheels.sh)"             # default venv: .venv-cuda/
#   DETCORE_CUDA_VENV=/some/where scripts/cuda_wheels.sh
#
# Which wheels: NVIDIA's CUDA 12 wheels (nvidia-cuda-nvcc-cu12, every version from 12.0 to 12.9)
# carry ptxas and the device headers but not the nvcc driver, so they cannot compile a .cu file.
# The CUDA 13 wheels do: nvidia-cuda-nvcc (nvcc, cudafe++, fatbinary, nvlink), nvidia-nvvm
# (cicc), nvidia-cuda-crt (its headers) and nvidia-cuda-runtime (cudart), all into one
# toolkit-shaped folder, site-packages/nvidia/cu13/. ~120 MB to download, ~320 MB installed.
# nvcc 13 accepts the host compilers of current distributions (Debian 12's GCC 12 included);
# binaries it builds need an NVIDIA driver of the CUDA 13 generation (R580 or newer) to run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${DETCORE_CUDA_VENV:-$root/.venv-cuda}"
version=13.5.37
want="nvidia-cuda-nvcc==$version nvidia-nvvm==$version nvidia-cuda-crt==$version nvidia-cuda-runtime==$version"
stamp="$venv/.detcore-cuda"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log="$venv/.pip.log"
  # shellcheck disable=SC2086
  if ! "$venv/bin/pip" install -q --disable-pip-version-check --no-deps $want >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  printf '%s' "$want" > "$stamp"
fi
toolkit="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$toolkit/bin/nvcc" ] || { echo "cuda_wheels.sh: no nvcc in $toolkit" >&2; exit 1; }
# The development link a toolkit has (CMAKE_CUDA_RUNTIME_LIBRARY=Shared, FindCUDAToolkit).
[ -e "$toolkit/lib/libcudart.so" ] || ln -s libcudart.so.13 "$toolkit/lib/libcudart.so"
echo "$toolkit/bin/nvcc"
