#!/usr/bin/env bash
# Tests of detcore under the real launchers (tests/launchers): Open MPI's mpirun, and a one-node
# Slurm cluster (munge, slurmctld, slurmd) that the tests start in a temporary folder, as root,
# and stop by PID. Needs the CMake build (DETCORE_BUILD_DIR, default build/) and the Debian
# packages openmpi-bin, libopenmpi-dev, slurm-wlm and munge (.ci/run installs them).
#
# Where the launchers are not installed the tests are skipped, and this script says so loudly:
# a skip here means those code paths were not tested on this machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export DETCORE_BUILD_DIR="${DETCORE_BUILD_DIR:-$root/build}"
export DETCORE_LIB="${DETCORE_LIB:-$DETCORE_BUILD_DIR/cargo/release/libdetcore.so}"
missing=()
for p in mpirun mpicc munged slurmctld slurmd sbatch srun squeue scontrol; do
  command -v "$p" >/dev/null || missing+=("$p")
done
if [ "$(id -u)" != 0 ]; then
  missing+=("root (the test Slurm runs its daemons as root)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  printf '\n*** WARNING: launcher tests will be SKIPPED in part or whole; missing: %s ***\n' "${missing[*]}" >&2
  printf '*** install: apt-get install openmpi-bin libopenmpi-dev slurm-wlm munge (as .ci/run does) ***\n\n' >&2
fi
venv="$(scripts/venv.sh)"
# pytest's own folders under the build folder: $TMPDIR is the suite's, checked for leftovers.
exec "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider --basetemp "$DETCORE_BUILD_DIR/tmp/launchers" \
  tests/launchers "$@"
