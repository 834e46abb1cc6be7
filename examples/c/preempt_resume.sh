#!/usr/bin/env bash
# Preempt the C training example with SIGTERM part way, run it again, and show that it resumed
# from its checkpoint and finished with exactly the weights of an uninterrupted run.
#
#   examples/c/preempt_resume.sh <path to the built `train` program> [work folder]
#
# Exits non-zero if anything differs. Used by the README demo and by ctest.
set -euo pipefail
train="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="${2:-$(mktemp -d "${TMPDIR:-/tmp}/detcore-demo.XXXXXX")}"
mkdir -p "$work"
cd "$work"
rm -rf data detcore-runs ./*.log   # start both runs fresh
export XDG_DATA_HOME="$work/data"            # default checkpoint storage: $XDG_DATA_HOME/determined
export DET_HPARAMS='{"steps": 2000, "hidden": 256, "batch_size": 256, "checkpoint_every": 100, "report_every": 50, "validate_every": 200}'
export DETCORE_LOG_LEVEL="${DETCORE_LOG_LEVEL:-warning}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. reference: an uninterrupted run (run name: reference)"
DET_RUN_NAME=reference "$train" > reference.log
ref="$(grep -o 'weights checksum [0-9a-f]*' reference.log)"
tail -n 2 reference.log

say "2. the same training (run name: demo), sent SIGTERM after its first checkpoint"
rm -f demo.log
DET_RUN_NAME=demo "$train" > demo.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "^checkpoint .* (periodic)" demo.log 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -TERM "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
grep -E "^(starting|checkpoint|preempted)" demo.log | tail -n 3
echo "exit code: $status"
if [ "$status" != 0 ] || ! grep -q "^preempted at step" demo.log; then
  echo "FAIL: the program did not save and exit 0 on SIGTERM" >&2
  exit 1
fi

say "3. run it again: it resumes from the latest checkpoint of run 'demo' and finishes"
DET_RUN_NAME=demo "$train" > resume.log
grep -E "^(resumed|training finished)" resume.log
got="$(grep -o 'weights checksum [0-9a-f]*' resume.log)"
if ! grep -q "^resumed from checkpoint" resume.log; then
  echo "FAIL: the second run did not resume" >&2
  exit 1
fi
if [ "$got" != "$ref" ]; then
  echo "FAIL: resumed run ended with $got, uninterrupted run with $ref" >&2
  exit 1
fi

metrics=detcore-runs/demo/metrics.jsonl
runs="$(grep -c '"type": "run_start"' "$metrics" || true)"
if [ "$runs" != 2 ]; then
  echo "FAIL: $metrics should start each of the 2 runs with a run_start record, it has $runs" >&2
  exit 1
fi

say "4. result"
echo "resumed run: $got"
echo "reference:   $ref  (identical)"
echo "metrics: $work/$metrics ($(wc -l < "$metrics") lines; each run opens with a \"run_start\" record,"
echo "         and a step reported by both runs counts once: keep the last record per step)"
echo "checkpoints: $XDG_DATA_HOME/determined"
