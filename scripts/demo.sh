#!/usr/bin/env bash
# The main demo: build detcore and its C training example with CMake, run the example
# off-cluster, preempt it with SIGTERM part way, run it again and show that it resumed from its
# checkpoint and finished with the same weights as an uninterrupted run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${DETCORE_BUILD_DIR:-$root/build}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target detcore_train_c
work="$build/demo"
rm -rf "$work"
"$root/examples/c/preempt_resume.sh" "$build/examples/train" "$work"
