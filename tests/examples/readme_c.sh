#!/usr/bin/env bash
# README.md's "A minimal C program", exactly as written there: extracted, compiled with
# -Wall -Wextra -Werror, and run as a user would, so that the README cannot drift from the library.
#
#   1. an uninterrupted run (run name "reference");
#   2. run "resumed" with its halt file present: it stops at its first det_should_preempt, saves a
#      checkpoint at step 1 and exits 0;
#   3. the same command again without the halt file: it must resume from that checkpoint, really
#      (its model file, not only the step count), and end with the reference's weights.
#
#   readme_c.sh <C compiler> <include dir> <library dir> <README.md> <work folder>
set -euo pipefail
cc="$1" include="$2" libdir="$3" readme="$4" work="$5"
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
cd "$work"
# The first ```c block after the heading.
awk '/^## A minimal C program/ {found = 1; next}
     found && /^```c$/ {inside = 1; next}
     inside && /^```$/ {exit}
     inside {print}' "$readme" > minimal.c
[ -s minimal.c ] || fail "no \`\`\`c block under \"## A minimal C program\" in $readme"
"$cc" -std=c11 -Wall -Wextra -Werror -I"$include" minimal.c -o minimal -L"$libdir" -Wl,-rpath,"$libdir" -ldetcore

# A clean off-cluster environment: storage under $work, run folders under ./detcore-runs.
unset DETCORE_CHECKPOINT_STORAGE DET_HALT_FILE DET_END_TIME SLURM_JOB_END_TIME SLURM_JOB_ID DETCORE_RUN_DIR \
      DET_HPARAMS DET_RUN_NAME
export XDG_DATA_HOME="$work/data" DET_CLUSTER_INFO_DIR="$work/no-cluster-info" DETCORE_LOG_LEVEL=info

DET_RUN_NAME=reference ./minimal > reference.out 2> reference.err || fail "the reference run failed: $(cat reference.err)"
ref="$(grep '^w = ' reference.out)" || fail "the reference run printed no 'w = ...'"

touch HALT
status=0
DET_RUN_NAME=resumed DET_HALT_FILE="$work/HALT" ./minimal > first.out 2> first.err || status=$?
[ "$status" = 0 ] || fail "the halted run exited with $status: $(cat first.err)"
grep -q "halt file $work/HALT exists" first.err || fail "the halted run did not log the halt file: $(cat first.err)"
grep -q '^w = ' first.out && [ "$(grep '^w = ' first.out)" != "$ref" ] \
  || fail "the halted run should stop early, with other weights than the reference"

rm HALT
DET_RUN_NAME=resumed DET_HALT_FILE="$work/HALT" ./minimal > second.out 2> second.err \
  || fail "the resumed run failed: $(cat second.err)"
grep -q 'run "resumed" (name from DET_RUN_NAME): resuming from checkpoint .* (steps_completed=1)' second.err \
  || fail "the second run did not say that it resumes from step 1: $(cat second.err)"
got="$(grep '^w = ' second.out)"
[ "$got" = "$ref" ] || fail "halted + resumed ended with '$got', the uninterrupted run with '$ref'"

metrics=detcore-runs/resumed/metrics.jsonl
[ "$(grep -c '"type": "run_start"' "$metrics")" = 2 ] || fail "$metrics should hold two run_start records"
grep -q '"resumes_from": {"storage_id": "[0-9a-f-]*", "steps_completed": 1}' "$metrics" \
  || fail "the second run_start of $metrics does not name the step-1 checkpoint"
echo "OK: README's minimal C program compiled as written; halted at step 1, resumed, and ended with $got"
