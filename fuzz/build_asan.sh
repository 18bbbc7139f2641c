#!/bin/sh
# Build the C extension (csconv/core/_pngunfilter.c) with AddressSanitizer and UBSan into
# fuzz/build-asan/, beside the normal build, which stays as it is. The harnesses load it
# instead of the normal one when CSCONV_ASAN_UNFILTER names it (fuzz/common.py).
#
# Python itself is not built with ASan, so libasan must be loaded first, by LD_PRELOAD;
# leak detection is off because the interpreter's own allocations look like leaks:
#
#   fuzz/build_asan.sh
#   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
#   ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
#   CSCONV_ASAN_UNFILTER="$(ls fuzz/build-asan/_pngunfilter*.so)" \
#   python fuzz/fuzz_label16.py -max_total_time=1800 fuzz/corpus/label16
#
# (gcc 12 here; with clang, use -print-file-name=libclang_rt.asan-x86_64.so instead.)
set -eu
cd "$(dirname "$0")/.."
out=fuzz/build-asan
mkdir -p "$out"
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$include" csconv/core/_pngunfilter.c -o "$out/_pngunfilter$suffix"
echo "$out/_pngunfilter$suffix"
