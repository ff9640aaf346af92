"""Helpers the tests use to forge bitstreams that pass the integrity checks, and to read an output
written into a FIFO."""
import struct
import threading
import zlib


def read_fifo_in_background(fifo):
    """(thread, dict): the thread reads the FIFO to its end into dict["bytes"] (a writer that opens
    a FIFO blocks until a reader has it open)."""
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["bytes"] = f.read()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t, got


def reseal(data: bytearray) -> bytes:
    """Recompute both CRC-32s (where the header size byte allows) so a forged file reaches the
    deeper checks."""
    size = data[5]
    if 10 <= size <= len(data) - 4:
        struct.pack_into("<I", data, size - 4, zlib.crc32(bytes(data[:size - 4])))
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[size:-4])))
    return bytes(data)


def forge_header(data: bytes, width=None, height=None, channels=3, bit_depth=8, **config) -> bytes:
    """The same file with a rewritten (validly sealed) header."""
    from lotterycodec.decoder.config import CONFIG_FIELDS
    from lotterycodec.decoder.format import pack_header, read_bitstream
    bs = read_bitstream(data)
    version = data[4]
    values = [config.get(f.name, getattr(bs.cfg, f.name)) for f in CONFIG_FIELDS if f.since <= version]
    b = bs.section_bytes
    head = pack_header(bs.width if width is None else width, bs.height if height is None else height, channels,
                       bit_depth, bs.seed, values,
                       [b["networks"], b["mask"], b["latent_index"] + b["latents"]], version)
    return head + data[data[5]:]
