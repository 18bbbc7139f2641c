"""CRC32C of a concatenation from the CRC32C of its pieces.

A TFRecord shard is its records' bytes end to end, and the TFRecord format already
computes the CRC32C of every record's data. Combining those costs microseconds per
record, where checksumming the shard again costs a second pass over about 10 MB per
panoptic frame.

Arithmetic is over GF(2) polynomials in the reflected bit order the CRC uses: bit 31
holds the coefficient of x^0.
"""

from __future__ import annotations

_POLY = 0x82F63B78  # Castagnoli, reflected
_ONE = 1 << 31  # the polynomial 1


def _multiply(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial."""
    product = 0
    bit = _ONE
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _squares() -> list[int]:
    """x^(2^k) modulo the polynomial, k = 0..63: enough for any length below 2^61 bytes."""
    powers = [_ONE >> 1]  # x
    for _ in range(63):
        powers.append(_multiply(powers[-1], powers[-1]))
    return powers


_X_TO_2_TO_THE = _squares()


def _x_to_the_bits_of(length: int) -> int:
    """x^(8 * length): what appending `length` zero bytes multiplies a CRC by."""
    result, k = _ONE, 3  # 8 * length = length * 2^3
    while length:
        if length & 1:
            result = _multiply(_X_TO_2_TO_THE[k], result)
        length >>= 1
        k += 1
    return result


def crc32c_combine(crc_first: int, crc_second: int, length_second: int) -> int:
    """CRC32C of A + B from CRC32C(A), CRC32C(B) and len(B)."""
    if length_second == 0:
        return crc_first
    return _multiply(_x_to_the_bits_of(length_second), crc_first) ^ crc_second
