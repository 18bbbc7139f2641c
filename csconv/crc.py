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


def _power_table() -> list[list[int]]:
    """table[i][j] = x^(8 * j * 16^i) modulo the polynomial: appending j * 16^i zero bytes.

    Sixteen nibbles cover any length below 2^64 bytes; a 10 MB record then costs six
    multiplications instead of one per set bit of its length.
    """
    table = []
    step = _ONE >> 8  # x^8: one zero byte
    for _ in range(16):
        row = [_ONE]
        for _ in range(15):
            row.append(_multiply(row[-1], step))
        table.append(row)
        step = _multiply(row[-1], step)  # x^(8 * 16^(i+1))
    return table


_POWERS = _power_table()


def _x_to_the_bits_of(length: int) -> int:
    """x^(8 * length): what appending `length` zero bytes multiplies a CRC by."""
    result, nibble = _ONE, 0
    while length:
        if length & 15:
            result = _multiply(_POWERS[nibble][length & 15], result)
        length >>= 4
        nibble += 1
    return result


def crc32c_combine(crc_first: int, crc_second: int, length_second: int) -> int:
    """CRC32C of A + B from CRC32C(A), CRC32C(B) and len(B)."""
    if length_second == 0:
        return crc_first
    return _multiply(_x_to_the_bits_of(length_second), crc_first) ^ crc_second
