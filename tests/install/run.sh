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
# libdetcore.so -> libdetcore.so.<abi> (the SONAME) -> libdetcore.so.<abi>.<minor>.<patch> (the file).
macro() { sed -n "s/^#define $1 \(.*\)$/\1/p" "$prefix/include/detcore.h"; }
abi="$(macro DET_ABI_VERSION)"
real="libdetcore.so.$abi.$(macro DET_VERSION_MINOR).$(macro DET_VERSION_PATCH)"
[ "$(readlink "$libdir/libdetcore.so")" = "libdetcore.so.$abi" ] || { echo "FAIL: libdetcore.so -> $(readlink "$libdir/libdetcore.so")" >&2; exit 1; }
[ "$(readlink "$libdir/libdetcore.so.$abi")" = "$real" ] || { echo "FAIL: libdetcore.so.$abi -> $(readlink "$libdir/libdetcore.so.$abi"), not $real" >&2; exit 1; }
[ -f "$libdir/$real" ] && [ ! -L "$libdir/$real" ] || { echo "FAIL: $real is not a file" >&2; exit 1; }
readelf -d "$libdir/$real" | grep -q "SONAME.*\[libdetcore.so.$abi\]" || { echo "FAIL: $real: SONAME is not libdetcore.so.$abi" >&2; exit 1; }
# Lean libraries (DETCORE_INSTALL_DEBUG_INFO=split): no debug info nor LLVM bitcode installed in
# them; the shared library's debug info is in .debug/, named by its .gnu_debuglink.
if grep -q '^DETCORE_INSTALL_DEBUG_INFO:STRING=split' "$build/CMakeCache.txt"; then
  for f in "$libdir/$real" "$libdir/libdetcore.a"; do
    if readelf -S -W "$f" | grep -q -E '\.debug_info|\.llvmbc'; then
      echo "FAIL: $f was installed with debug info or bitcode ($(du -h "$f" | cut -f1))" >&2; exit 1
    fi
  done
  readelf --string-dump=.gnu_debuglink "$libdir/$real" | grep -q "$real.debug" || { echo "FAIL: $real has no debuglink to $real.debug" >&2; exit 1; }
  readelf -S -W "$libdir/.debug/$real.debug" | grep -q '\.debug_info' || { echo "FAIL: .debug/$real.debug holds no debug info" >&2; exit 1; }
  echo "ok lean: $(du -h "$libdir/$real" | cut -f1) $real, $(du -h "$libdir/libdetcore.a" | cut -f1) libdetcore.a, $(du -h "$libdir/.debug/$real.debug" | cut -f1) .debug/$real.debug"
fi

cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DEXAMPLE_SOURCE="$src/examples/c/train.c" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" >/dev/null

PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -O2 -o "$work/train_pkgconfig" "$src/examples/c/train.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs detcore) -Wl,-rpath,"$libdir" -lm
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -O2 -o "$work/train_pkgconfig_static" "$src/examples/c/train.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags detcore) \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --variable=static_libs detcore) -lm

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
