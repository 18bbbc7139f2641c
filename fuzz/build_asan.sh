#!/bin/sh
# Build the C extension (csconv/core/_pngunfilter.c) with AddressSanitizer and UBSan into
# fuzz/build-asan/, beside the normal build, which stays as it is. The harnesses load it
# instead of the normal one when CSCONV_ASAN_UNFILTER names it (fuzz/common.py).
#
# Python itself is not built with ASan, so libasan must be loaded first, by LD_PRELOAD;
# leak detection is off because the interpreter's own allocations look like leaks. The
# inputs come from fuzz/asan_mutate.py, not libFuzzer: preloaded gcc libasan breaks
# atheris' coverage, and atheris' asan_with_fuzzer.so (clang's runtime) refuses a
# gcc-built module (both tried; see FUZZING.md):
#
#   fuzz/build_asan.sh
#   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
#   ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
#   CSCONV_ASAN_UNFILTER="$(ls fuzz/build-asan/_pngunfilter*.so)" \
#   python fuzz/asan_mutate.py label16 1800
#
# With clang (not installed here), build with -fsanitize=address,fuzzer-no-link and preload
# atheris' asan_with_fuzzer.so to keep coverage guidance: atheris' using_sanitizers.md.
set -eu
cd "$(dirname "$0")/.."
out=fuzz/build-asan
mkdir -p "$out"
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$include" csconv/core/_pngunfilter.c -o "$out/_pngunfilter$suffix"
echo "$out/_pngunfilter$suffix"
