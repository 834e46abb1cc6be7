#!/usr/bin/env bash
# detcore's off-cluster hot-path benchmarks, each beside Python determined==0.38.1 doing the same
# on this machine in the same run, printed as ratios (medians of repeated runs; the machine is
# shared and noisy, so only ratios and medians are reported).
#
#   bench/run.sh            # all benchmarks
#   REPEAT=9 bench/run.sh   # more repetitions
#
# Targets (issue 2): should_preempt <= 20 ns, two-scalar report <= 500 ns, init+close <= 5 ms.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${DETCORE_BUILD_DIR:-$root/build}"
out="$root/bench/out"
repeat="${REPEAT:-5}"
mkdir -p "$out"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target detcore_cargo >/dev/null
lib="$build/cargo/release"
cc -O2 -std=c11 -I"$root/include" -o "$out/bench_core" "$root/bench/bench_core.c" -L"$lib" -ldetcore -Wl,-rpath,"$lib"
venv="$("$root/scripts/venv.sh")"
py="$venv/bin/python"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export XDG_DATA_HOME="$work/data" DETCORE_LOG_LEVEL=warning DET_RUN_NAME=bench
export PYTHONWARNINGS=ignore

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
runs() { for _ in $(seq "$repeat"); do "$@"; done | median; }
# Wall time of one whole process, in ms.
proc_ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo "scale=3; ($t1 - $t0) / 1000000" | bc; }

row() { # name detcore python unit target
  local ratio
  ratio=$(echo "scale=1; $3 / $2" | bc)
  printf '%-28s detcore %10s %-6s python %10s %-6s  python/detcore = %7sx   (target: %s)\n' "$1" "$2" "$4" "$3" "$4" "$ratio" "$5"
}

echo "detcore bench (off-cluster), median of $repeat runs, $(nproc) CPUs, $(date -u +%FT%TZ)"
sp_d=$(runs "$out/bench_core" should_preempt 20000000)
sp_p=$(runs "$py" "$root/bench/py_offcluster.py" should_preempt 200000)
row "should_preempt" "$sp_d" "$sp_p" "ns" "<= 20 ns"
rp_d=$(runs "$out/bench_core" report 1000000)
rp_p=$(runs "$py" "$root/bench/py_offcluster.py" report 100000)
row "report (2 scalars, typed)" "$rp_d" "$rp_p" "ns" "<= 500 ns"
rj_d=$(runs "$out/bench_core" report_json 1000000)
row "report (2 scalars, JSON)" "$rj_d" "$rp_p" "ns" "-"
# A run of its own: the start-up and shutdown cost, not a final sync of the report runs' files.
ic_d=$(for _ in $(seq "$repeat"); do DET_RUN_NAME=bench-init proc_ms "$out/bench_core" init_close; done | median)
ic_p=$(for _ in $(seq "$repeat"); do proc_ms "$py" "$root/bench/py_offcluster.py" init_close; done | median)
row "init+close (whole process)" "$ic_d" "$ic_p" "ms" "<= 5 ms"
