#!/usr/bin/env bash
# Memory-safety checks of the C ABI:
#   1. the C tests and examples built with AddressSanitizer + UndefinedBehaviorSanitizer
#      (a separate build folder, DETCORE_SANITIZE=ON), run under ctest, the JSON fuzzer
#      (tests/c/fuzz_json.c) included for DETCORE_FUZZ_SECONDS (default 60);
#   2. the C tests run under valgrind (memcheck), failing on any error or definite leak.
#
#   scripts/sanitize.sh            # both
#   scripts/sanitize.sh asan|valgrind
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
what="${1:-all}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

if [ "$what" = all ] || [ "$what" = asan ]; then
  b="$root/build-asan"
  # The Rust library is the same as the main build's: share its cargo folder.
  # fuzz_json (a mutational fuzzer of the JSON entry points) runs a minute under ASan here.
  cmake -S "$root" -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDETCORE_SANITIZE=ON \
        -DDETCORE_FUZZ_SECONDS="${DETCORE_FUZZ_SECONDS:-60}" \
        -DDETCORE_CARGO_TARGET_DIR="${DETCORE_BUILD_DIR:-$root/build}/cargo" >/dev/null
  cmake --build "$b" >/dev/null
  # The Rust library is not instrumented; ASan still checks every access the C side makes to
  # memory detcore hands out, and LSan every string/list the tests must free.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$b" --output-on-failure -E install_and_consume
fi

if [ "$what" = all ] || [ "$what" = valgrind ]; then
  b="$root/build"
  cmake -S "$root" -B "$b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$b" >/dev/null
  mkdir -p "$b/tmp"
  for t in "$b"/tests/c/test_*; do
    [ -x "$t" ] || continue
    # The test's output (its log lines included) is shown only when valgrind or the test fails.
    log="$b/tmp/valgrind-$(basename "$t").log"
    if ! TMPDIR="$b/tmp" valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
         --show-leak-kinds=definite "$t" >"$log" 2>&1; then
      cat "$log" >&2
      echo "FAIL: valgrind $(basename "$t")" >&2
      exit 1
    fi
    echo "valgrind $(basename "$t"): $(grep -c '^ok ' "$log") tests ok"
    rm -f "$log"
  done
fi
echo "sanitizer checks passed"
