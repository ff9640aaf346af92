"""Helpers the tests use to forge bitstreams that pass the integrity checks."""
import struct
import zlib


def reseal(data: bytearray) -> bytes:
    """Recompute both CRC-32s (where the header size byte allows) so a forged file reaches the
    deeper checks."""
    size = data[5]
    if 10 <= size <= len(data) - 4:
        struct.pack_into("<I", data, size - 4, zlib.crc32(bytes(data[:size - 4])))
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[size:-4])))
    return bytes(data)
