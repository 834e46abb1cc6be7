#!/usr/bin/env bash
# Create (or update) the Python virtual environment used by the tests and benchmarks:
# determined==0.38.1 (the reference client, installed without its heavy optional
# dependencies), pytest and the packages in tests/requirements.txt.
#
#   scripts/venv.sh            # prints the venv's path
#   DETCORE_VENV=/some/where scripts/venv.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${DETCORE_VENV:-$root/.venv}"
stamp="$venv/.detcore-requirements"
want="$(cat "$root/tests/requirements.txt"; echo determined==0.38.1)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log="$venv/.pip.log"
  if ! { "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt" &&
         "$venv/bin/pip" install -q --disable-pip-version-check --no-deps determined==0.38.1; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  printf '%s' "$want" > "$stamp"
fi
echo "$venv"
