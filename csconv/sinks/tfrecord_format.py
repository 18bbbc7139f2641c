"""TFRecord framing and tf.train.Example encoding, without TensorFlow.

A record on disk is: uint64 length, masked CRC32C of the length, the data, masked
CRC32C of the data (all little-endian). An Example is a small protobuf message, so it
is written and parsed by hand here. Payloads travel as lists of buffers so the 8 MiB
panoptic label is never copied just to be framed.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Union

from crc32c import crc32c

Buffer = Union[bytes, bytearray, memoryview]
FeatureValue = Union[Buffer, str, int, Sequence[int]]

_MASK_DELTA = 0xA282EAD8


def crc32c_of(parts: Sequence[Buffer]) -> int:
    crc = 0
    for part in parts:
        crc = crc32c(part, crc)
    return crc


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(parts: Sequence[Buffer] | Buffer) -> int:
    if isinstance(parts, (bytes, bytearray, memoryview)):
        parts = (parts,)
    return _mask(crc32c_of(parts))


def frame_around(parts: Sequence[Buffer]) -> tuple[bytes, int, bytes]:
    """What goes before and after the data of one record, and the data's plain CRC32C."""
    length = struct.pack("<Q", sum(memoryview(p).nbytes for p in parts))
    data_crc = crc32c_of(parts)
    return length + struct.pack("<I", masked_crc32c(length)), data_crc, struct.pack("<I", _mask(data_crc))


def frame(parts: Sequence[Buffer]) -> list[Buffer]:
    """The buffers of one framed record, ready for writelines/writev."""
    header, _, footer = frame_around(parts)
    return [header, *parts, footer]


class RecordError(ValueError):
    def __init__(self, index: int, offset: int, problem: str):
        super().__init__(f"record {index} at byte {offset}: {problem}")
        self.index, self.offset, self.problem = index, offset, problem


def _file_size(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def iter_records(stream: BinaryIO, check_crc: bool = True) -> Iterator[bytes]:
    index, offset = 0, 0
    size = _file_size(stream)
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RecordError(index, offset, "truncated length header")
        length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
        if check_crc and masked_crc32c(length_bytes) != length_crc:
            raise RecordError(index, offset, "length CRC mismatch")
        (length,) = struct.unpack("<Q", length_bytes)
        # A file read allocates the length asked for before it reads: a header may claim
        # up to 2^64 bytes, so a length beyond the file's end is refused unread.
        if size is not None and offset + 16 + length > size:
            raise RecordError(index, offset, f"truncated record (its header claims {length:,} bytes)")
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4:
            raise RecordError(index, offset, "truncated record")
        if check_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise RecordError(index, offset, "data CRC mismatch")
        yield data
        index += 1
        offset += 16 + length


def index_records(stream: BinaryIO) -> list[tuple[int, int]]:
    """(offset, data length) of every record, for random access: only the 12-byte
    headers are read (their CRCs checked), the data is skipped."""
    index: list[tuple[int, int]] = []
    offset = 0
    size = stream.seek(0, 2)
    while offset < size:
        stream.seek(offset)
        header = stream.read(12)
        if len(header) < 12:
            raise RecordError(len(index), offset, "truncated length header")
        if masked_crc32c(header[:8]) != struct.unpack("<I", header[8:])[0]:
            raise RecordError(len(index), offset, "length CRC mismatch")
        (length,) = struct.unpack("<Q", header[:8])
        if offset + 16 + length > size:
            raise RecordError(len(index), offset, "truncated record")
        index.append((offset, length))
        offset += 16 + length
    return index


def check_record(framed: Buffer, index: int, offset: int) -> memoryview:
    """The data of one record read at an index_records() position (data and its CRC)."""
    view = memoryview(framed)
    if len(view) < 4:
        raise RecordError(index, offset, "truncated record")
    data = view[:-4]
    if masked_crc32c(data) != struct.unpack("<I", view[-4:])[0]:
        raise RecordError(index, offset, "data CRC mismatch")
    return data


# --- protobuf: just what tf.train.Example needs -------------------------------------

def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 values take ten bytes, two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, parts: Sequence[Buffer]) -> list[Buffer]:
    """A length-delimited field, its body left as separate buffers."""
    return [_varint(number << 3 | 2) + _varint(sum(len(p) for p in parts)), *parts]


def _feature(value: FeatureValue) -> list[Buffer]:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        bytes_list = _field(1, [value])
        return _field(1, bytes_list)  # Feature.bytes_list
    values = [value] if isinstance(value, int) else list(value)
    packed = b"".join(_varint(v) for v in values)
    return _field(3, _field(1, [packed]))  # Feature.int64_list, packed


def encode_example(features: dict[str, FeatureValue]) -> list[Buffer]:
    """A serialized tf.train.Example as a list of buffers, keys in sorted order."""
    entries: list[Buffer] = []
    for key in sorted(features):
        entry = _field(1, [key.encode()]) + _field(2, _feature(features[key]))
        entries += _field(1, entry)  # Features.feature map entry
    return _field(1, entries)  # Example.features


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: memoryview) -> Iterator[tuple[int, int, object]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _delimited(number: int, wire: int, value) -> memoryview:
    """The body of a field that must be length-delimited (a message, bytes, a packed list).

    Taken on trust, a varint there would be a length: bytes(varint) allocates that many.
    """
    if wire != 2:
        raise ValueError(f"field {number} has wire type {wire} where a length-delimited value belongs")
    return value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_example(data: Buffer) -> dict[str, list[bytes] | list[int] | list[float]]:
    """Parse a serialized tf.train.Example into key -> list of bytes, ints or floats.

    Any valid Example parses, whatever order its writer put the map entries in
    (TensorFlow's own protobuf writes them in an order that changes from run to run).
    """
    features: dict[str, list[bytes] | list[int] | list[float]] = {}
    for number, wire, body in _fields(memoryview(data)):
        if number != 1:
            continue
        for entry_number, entry_wire, entry in _fields(_delimited(number, wire, body)):
            if entry_number != 1:
                continue
            key, value = None, []
            for part_number, part_wire, part in _fields(_delimited(entry_number, entry_wire, entry)):
                if part_number == 1:
                    key = bytes(_delimited(part_number, part_wire, part)).decode()
                elif part_number == 2:
                    value = _decode_feature(_delimited(part_number, part_wire, part))
            if key is None:
                raise ValueError("feature map entry without a key")
            features[key] = value
    return features


def _decode_feature(data: memoryview) -> list[bytes] | list[int] | list[float]:
    for kind, kind_wire, body in _fields(data):
        if kind == 1:
            return [bytes(_delimited(n, wire, v)) for n, wire, v in _fields(_delimited(kind, kind_wire, body)) if n == 1]
        if kind == 3:
            values: list[int] = []
            for n, wire, v in _fields(_delimited(kind, kind_wire, body)):
                if n != 1:
                    continue
                if wire == 0:
                    values.append(_signed(v))
                else:
                    packed, pos = _delimited(n, wire, v), 0
                    while pos < len(packed):
                        item, pos = _read_varint(packed, pos)
                        values.append(_signed(item))
            return values
        if kind == 2:
            return _floats(_delimited(kind, kind_wire, body))
    return []


def _floats(data: memoryview) -> list[float]:
    # csconv never writes floats, but a foreign Example may carry some: reading them
    # lets a comparison name the feature instead of failing on the whole record.
    values: list[float] = []
    for n, wire, v in _fields(data):
        if n != 1:
            continue
        if wire == 5:
            values.append(struct.unpack("<f", v)[0])
        elif wire == 2:
            if len(v) % 4:
                raise ValueError("packed float_list length is not a multiple of 4")
            values += [x for (x,) in struct.iter_unpack("<f", v)]
    return values
