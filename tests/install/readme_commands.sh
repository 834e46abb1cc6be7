#!/usr/bin/env bash
# Run the README's install-and-link commands exactly as written (ctest readme_link_commands):
# the shell block that follows the marker `<!-- tested: tests/install/readme_commands.sh -->`
# in README.md, with the README's minimal C program as train.c and the Fortran example as
# heat.f90. Only the install prefix is changed (/opt/detcore → a temporary folder, which the
# README leaves to the reader anyway); `build` is the build folder under test. No
# LD_LIBRARY_PATH or PKG_CONFIG_PATH comes from outside: each program must run because of what
# the commands themselves do (an rpath, LD_LIBRARY_PATH, or static linking).
#   tests/install/readme_commands.sh <build dir> <source dir> <ON|OFF: Fortran>
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
fortran="${3:-OFF}"
work="$build/tmp/readme-commands"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
ln -s "$build" build
prefix="$work/opt/detcore"

# The marked shell block of the README.
awk '/<!-- tested: tests\/install\/readme_commands.sh -->/ {m = 1; next}
     m == 1 && /^```sh/ {m = 2; next}
     m == 2 && /^```/ {exit}
     m == 2 {print}' "$src/README.md" > commands.sh
[ -s commands.sh ] || { echo "FAIL: no marked sh block in README.md" >&2; exit 1; }
grep -q -- '-Wl,-rpath' commands.sh || { echo "FAIL: the README block shows no rpath" >&2; exit 1; }
grep -q 'LD_LIBRARY_PATH' commands.sh || { echo "FAIL: the README block shows no LD_LIBRARY_PATH" >&2; exit 1; }
# The README's C program (the first C block) and the Fortran example.
awk '/^```c$/ {m = 1; next} m && /^```/ {exit} m {print}' "$src/README.md" > train.c
[ -s train.c ] || { echo "FAIL: no C program in README.md" >&2; exit 1; }
cp "$src/examples/fortran/heat.f90" heat.f90
if [ "$fortran" != ON ]; then
  # Built without a Fortran compiler: the Fortran lines have nothing to link against.
  grep -v -E '^(gfortran|\./heat)' commands.sh > c-only.sh && mv c-only.sh commands.sh
fi
# /opt/detcore → the temporary prefix (lib64 where GNUInstallDirs chose it).
libdir_name="$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$build/CMakeCache.txt")"
sed -i -e "s#/opt/detcore/lib\\b#@LIBDIR@#g" -e "s#/opt/detcore#@PREFIX@#g" \
       -e "s#@LIBDIR@#$prefix/${libdir_name:-lib}#g" -e "s#@PREFIX@#$prefix#g" commands.sh
echo "--- the README's commands, as run here:"
cat commands.sh
echo "---"

unset LD_LIBRARY_PATH PKG_CONFIG_PATH
export XDG_DATA_HOME="$work/data" DETCORE_RUN_DIR="$work/runs" DETCORE_LOG_LEVEL=warning
export DET_HPARAMS='{"nx": 16, "ny": 16, "steps": 200, "checkpoint_every": 100, "validate_every": 100}'
bash -eux -o pipefail commands.sh

echo "readme commands passed"
