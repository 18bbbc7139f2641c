"""Run a harness under the sanitized C unfilter (fuzz/build_asan.sh) without libFuzzer.

gcc's libasan, preloaded into a Python not built with it, provides the coverage symbols
atheris needs and breaks its coverage ("Coverage symbols are being provided by a library
other than libFuzzer"); atheris' own asan_with_fuzzer.so is clang's runtime, which a
gcc-built module cannot use ("incompatible ASan runtimes"). So under the sanitizers the
inputs come from here instead: the corpus a coverage-guided run left (fuzz/corpus/<harness>),
each mutated at random (bit flips, byte runs, cuts, splices), for SECONDS.

  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  CSCONV_ASAN_UNFILTER="$(ls fuzz/build-asan/_pngunfilter*.so)" \
  python fuzz/asan_mutate.py label16 600
"""

from __future__ import annotations

import importlib
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mutate(data: bytes, corpus: list[bytes], rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.randrange(6)
        position = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[min(position, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            out[position:position] = bytes([rng.randrange(256)]) * rng.randint(1, 64)
        elif choice == 2:
            del out[position : position + rng.randint(1, 64)]
        elif choice == 3 and out:
            out[min(position, len(out) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif choice == 4:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            out[position:] = other[start:]
        else:
            out[position:position] = rng.randbytes(rng.randint(1, 16))
    return bytes(out[:4096])


def main(harness: str, seconds: float, seed: int = 0) -> None:
    sys.argv = sys.argv[:1]
    module = importlib.import_module(f"fuzz_{harness}")
    corpus = [p.read_bytes() for p in sorted((HERE / "corpus" / harness).iterdir())] or [b""]
    rng = random.Random(seed)
    runs, started = 0, time.monotonic()
    for data in corpus:
        module.test_one_input(data)
        runs += 1
    while time.monotonic() - started < seconds:
        data = mutate(rng.choice(corpus), corpus, rng)
        try:
            module.test_one_input(data)
        except BaseException:
            name = HERE / "findings" / f"{harness}-asan-{runs}"
            name.parent.mkdir(exist_ok=True)
            name.write_bytes(data)
            print(f"finding: input kept in {name}", file=sys.stderr)
            raise
        runs += 1
    print(f"Done {runs} runs in {time.monotonic() - started:.0f} s ({len(corpus)} corpus inputs, seed {seed})",
          file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
