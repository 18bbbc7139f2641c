"""crc32c_combine agrees with checksumming the concatenation."""

from __future__ import annotations

from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from csconv.crc import crc32c_combine


@settings(max_examples=200)
@given(first=st.binary(max_size=300), second=st.binary(max_size=300))
def test_combining_two_crcs_equals_the_crc_of_the_concatenation(first, second):
    assert crc32c_combine(crc32c(first), crc32c(second), len(second)) == crc32c(first + second)


def test_long_second_parts():
    # Lengths with high bits set exercise the larger powers of x.
    first = b"csconv"
    for length in (4096, 8 << 20, (8 << 20) + 4099, 3_000_001):
        second = bytes(range(256)) * (length // 256) + b"\x07" * (length % 256)
        assert crc32c_combine(crc32c(first), crc32c(second), length) == crc32c(first + second)
