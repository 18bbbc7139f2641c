#!/bin/sh
# Build the C extension (csconv/core/_pngunfilter.c) with AddressSanitizer and UBSan into
# fuzz/build-asan/, beside the normal build, which stays as it is. The harnesses load it
# instead of the normal one when CSCONV_ASAN_UNFILTER names it (fuzz/common.py).
# Prints the built file's path and, on its second line, the compiler family used.
#
# Python itself is not built with ASan, so the ASan runtime must be loaded first, by
# LD_PRELOAD; leak detection is off because the interpreter's own allocations look like
# leaks.
#
# With clang (preferred: `apt-get install clang-14`, or CC=clang-N), the module is also
# built with -fsanitize=fuzzer-no-link, so its edges feed libFuzzer's coverage, and the
# runtime preloaded is atheris' own asan_with_fuzzer.so (clang's ASan and UBSan with
# libFuzzer linked in): coverage-guided AND sanitized. See FUZZING.md for the command.
#
# With gcc only, the build is sanitized but uninstrumented for coverage: preloading gcc's
# libasan breaks atheris' coverage, and atheris' asan_with_fuzzer.so refuses a gcc-built
# module ("incompatible ASan runtimes"); fuzz/asan_mutate.py then drives the harness
# (random mutation of a corpus, no coverage feedback), with gcc's libasan and libubsan
# preloaded.
set -eu
cd "$(dirname "$0")/.."
out=fuzz/build-asan
mkdir -p "$out"
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
cc=${CC:-}
if [ -z "$cc" ]; then
    for candidate in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14 gcc; do
        if command -v "$candidate" >/dev/null 2>&1; then cc=$candidate; break; fi
    done
fi
case "$("$cc" --version 2>/dev/null | head -1)" in
    *clang*) family=clang; sanitizers=address,undefined,fuzzer-no-link ;;
    *) family=gcc; sanitizers=address,undefined ;;
esac
# -fno-sanitize-recover: a UBSan report aborts, so libFuzzer keeps the input as a finding.
"$cc" -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize="$sanitizers" -fno-sanitize-recover=undefined \
    -I"$include" csconv/core/_pngunfilter.c -o "$out/_pngunfilter$suffix"
echo "$out/_pngunfilter$suffix"
echo "$family"
