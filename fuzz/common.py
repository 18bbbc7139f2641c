"""What every harness shares: the import of csconv under atheris' coverage, and the oracle.

The rule every harness checks: any input either succeeds or raises csconv's CsconvError
(InputError is one), which the command line prints as one line. Any other exception
escapes the harness, and libFuzzer reports it as a finding with the input that caused it.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import zlib

import atheris

with atheris.instrument_imports(include=["csconv"]):
    from csconv.inspection import verify
    from csconv.core import panoptic, png, samples, semantic, sources
    from csconv.core.errors import CsconvError, InputError
    from csconv.sinks import tfrecord_format

# fuzz/build_asan.sh's build of the C unfilter, in place of the normal one, when named.
if os.environ.get("CSCONV_ASAN_UNFILTER"):
    spec = importlib.util.spec_from_file_location("csconv.core._pngunfilter", os.environ["CSCONV_ASAN_UNFILTER"])
    panoptic._pngunfilter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(panoptic._pngunfilter)
    print(f"INFO: C unfilter from {panoptic._pngunfilter.__file__} (sanitized)", file=sys.stderr)

# Fuzzed headers claim sizes at random; a small limit keeps each execution fast and in
# memory. The limit's own check is what tests/test_bombs.py covers.
png.set_max_pixels(1 << 16)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def fix_crcs(data: bytes) -> bytes:
    """The same chunks with every CRC made right, so mutations reach past the CRC check."""
    if len(data) < 8:
        return data
    out, pos = [data[:8]], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            out.append(data[pos:])
            break
        out.append(chunk(kind, body))
        pos += 12 + length
    else:
        out.append(data[pos:])
    return b"".join(out)


def structured_png(fdp: atheris.FuzzedDataProvider, bit_depth: int, colour_type: int) -> bytes:
    """A PNG whose header is sane and whose filtered scanlines are fuzzed, deflated right.

    The scanlines may be too few or too many for the header: the decoder must say so.
    """
    width, height = fdp.ConsumeIntInRange(1, 64), fdp.ConsumeIntInRange(1, 64)
    interlace = fdp.ConsumeIntInRange(0, 1) if fdp.ConsumeBool() else 0
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20000))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_input(data: bytes, bit_depth: int = 16, colour_type: int = 0) -> bytes:
    """Three ways of reading the fuzzer's bytes, picked by the first: a PNG as it is,
    one with its CRCs made right, or one built from a fuzzed header and scanlines."""
    if not data:
        return data
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        return rest
    if mode == 1:
        return fix_crcs(rest)
    return structured_png(atheris.FuzzedDataProvider(rest), bit_depth, colour_type)


def read_shard_as_csconv_does(sink, path: str) -> None:
    """Every way csconv reads a shard of an output: verify's scan (read_shard, each sample
    checked by verify.check_sample), csconv.read()'s random access (open_random_access,
    get), and --against's serialized Examples for the sinks that store them. The first
    two must refuse a bad shard with CsconvError alone; the Example parser, whose callers
    (verify --against) report its refusal as a difference, with ValueError alone."""
    try:
        for sample in sink.read_shard(path):
            verify.check_sample(sample)
    except CsconvError:
        pass
    try:
        shard = sink.open_random_access(path)
    except CsconvError:
        shard = None
    if shard is not None:
        try:
            for index in range(min(len(shard), 8)):
                try:
                    verify.check_sample(shard.get(index))
                except CsconvError:
                    pass
        finally:
            shard.close()
    examples = getattr(sink, "serialized_examples", None)
    if examples is not None:
        try:
            for record in examples(path):
                try:
                    tfrecord_format.decode_example(record)
                except ValueError:
                    pass
        except CsconvError:
            pass


def shard_file_harness(sink, file_name: str, repair=None):
    """test_one_input for a shard reader that takes a path: each input is written to one
    file named like a shard, then read as csconv reads shards. With `repair` (a function
    making the format's checksums right), the first byte picks whether the rest is
    repaired first, so mutations also get past the checksums."""
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="csconv-fuzz-"), file_name)

    def test_one_input(data: bytes) -> None:
        if repair is not None:
            if not data:
                return
            data = repair(data[1:]) if data[0] & 1 else data[1:]
        with open(path, "wb") as f:
            f.write(data)
        read_shard_as_csconv_does(sink, path)

    return test_one_input


def run(test_one_input) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
