#!/usr/bin/env bash
# Install detcore from a build tree into a temporary prefix, then build the C example against the
# installed package three ways — CMake find_package (shared and static) and pkg-config — and run
# each build briefly.
#   tests/install/run.sh <build dir> <source dir>
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
work="$build/tmp/install-test"
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir="$prefix/lib"
[ -d "$libdir" ] || libdir="$prefix/lib64"
for f in include/detcore.h "$(basename "$libdir")/libdetcore.a" "$(basename "$libdir")/pkgconfig/detcore.pc" \
         "$(basename "$libdir")/cmake/detcore/detcoreConfig.cmake" "$(basename "$libdir")/cmake/detcore/detcoreConfigVersion.cmake"; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f was not installed" >&2; exit 1; }
done
soname="$(readlink "$libdir/libdetcore.so")"
[ -e "$libdir/$soname" ] || { echo "FAIL: libdetcore.so -> $soname is dangling" >&2; exit 1; }

cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DEXAMPLE_SOURCE="$src/examples/c/train.c" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" >/dev/null

PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -O2 -o "$work/train_pkgconfig" "$src/examples/c/train.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs detcore) -Wl,-rpath,"$libdir" -lm
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -O2 -o "$work/train_pkgconfig_static" "$src/examples/c/train.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags detcore) "$libdir/libdetcore.a" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --static --libs-only-l detcore | sed 's/-ldetcore//') -lm

export XDG_DATA_HOME="$work/data" DETCORE_LOG_LEVEL=warning DET_HPARAMS='{"steps": 30, "checkpoint_every": 10}'
for b in "$work/consumer/train_shared" "$work/consumer/train_static" "$work/train_pkgconfig" "$work/train_pkgconfig_static"; do
  (cd "$work" && DET_RUN_NAME="$(basename "$b")" "$b" | grep -q "training finished at step 30") \
    || { echo "FAIL: $b did not run" >&2; exit 1; }
  echo "ok $(basename "$b")"
done
# The shared builds load the installed library, not the build tree's.
shared_deps="$(ldd "$work/consumer/train_shared")"
static_deps="$(ldd "$work/consumer/train_static")"
case "$shared_deps" in *"$libdir/libdetcore.so"*) ;; *) echo "FAIL: train_shared does not use $libdir" >&2; exit 1 ;; esac
case "$static_deps" in *libdetcore*) echo "FAIL: train_static links libdetcore.so" >&2; exit 1 ;; esac
echo "install test passed"
