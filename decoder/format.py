"""The container: header fields declared once, the three payload sections, CRCs.

Byte-level specification: docs/FORMAT.md.  Reading validates everything against the
bytes actually present before anything is allocated or entropy-decoded; every problem
raises :class:`FormatError`.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .config import (CONFIG_FIELDS, MAX_PIXELS, MAX_SIDE, OUT_CHANNELS, SYNTH_DENSE, ArchConfig,
                     FormatError)
from .entropy import ARM_PARAM_MAX, IntArm, check_arm_bounds, substream_plan

MAGIC = b"LOTC"
VERSION = 1
_PREFIX = struct.Struct("<4sBH")  # magic, version, header size
_FIXED = struct.Struct("<HHBBQ")  # width, height, channels, bit depth, seed
_CONFIG = struct.Struct("<" + "".join(f.fmt for f in CONFIG_FIELDS))
_SECTIONS = struct.Struct("<III")  # bytes of networks, mask, latents
_CRC = struct.Struct("<I")
HEADER_SIZE = _PREFIX.size + _FIXED.size + _CONFIG.size + _SECTIONS.size + _CRC.size
_CONFIG_OFFSET = _PREFIX.size + _FIXED.size
NET_VALUE_MAX = 1 << 20
MAX_GOLOMB_ORDER = 24
MAX_STEP_EXP = 24  # quantization steps 2^-e, e in 0..24 (header fields and the dense synthesis')
N_SYNTH_LAYERS = 4


# ----------------------------------------------------------------------------- networks

@dataclass
class Networks:
    """The sent networks as quantized integers (multiply by the header's steps to use)."""
    arm: IntArm
    ups_kernel: np.ndarray          # (2, 2, taps, taps): phase (a, b), tap (p, q)
    mod: list[np.ndarray]           # w0, b0, w1, b1, w2, b2, w3, b3 (convs as (out, in[, 3, 3]))
    bits: dict[str, int] = field(default_factory=dict)  # coded size per module, when read from a file
    # synth_mode 1 only: the trained synthesis weights (out, in) per layer, times 2^-synth_step_exp
    synth: list[np.ndarray] | None = None
    synth_step_exp: int = 0

    def tensors(self):
        for w, b in zip(self.arm.weights, self.arm.biases):
            yield "arm", w
            yield "arm", b
        yield "ups", self.ups_kernel
        for t in self.mod:
            yield "mod", t
        for t in self.synth or []:
            yield "synth", t


def network_shapes(cfg: ArchConfig) -> list[tuple[str, tuple[int, ...]]]:
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for i, o in cfg.arm_in_out:
        shapes += [("arm", (o, i)), ("arm", (o,))]
    shapes.append(("ups", (2, 2, cfg.ups_taps, cfg.ups_taps)))
    mw, mo, L = cfg.mod_width, cfg.mod_out, cfg.n_grids
    shapes += [("mod", (mw, L)), ("mod", (mw,)), ("mod", (mo, mw)), ("mod", (mo,)),
               ("mod", (mo, mo, 3, 3)), ("mod", (mo,)), ("mod", (mo, mo, 3, 3)), ("mod", (mo,))]
    if cfg.synth_mode == SYNTH_DENSE:
        shapes += [("synth", (o, i)) for i, o in cfg.synth_in_out]
    return shapes


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, n: int) -> None:
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def write_signed_golomb(self, v: int, k: int) -> None:
        u = abs(v)
        q = (u >> k) + 1
        n = q.bit_length() - 1
        self.write(0, n)
        self.write(q, n + 1)
        self.write(u & ((1 << k) - 1), k)
        if u:
            self.write(1 if v < 0 else 0, 1)

    def getvalue(self) -> bytes:
        return np.packbits(np.array(self.bits, dtype=np.uint8)).tobytes()


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > self.bits.size:
            raise FormatError("networks section truncated")
        v = 0
        for b in self.bits[self.pos:self.pos + n]:
            v = (v << 1) | int(b)
        self.pos += n
        return v

    def read_signed_golomb(self, k: int) -> int:
        n = 0
        while self.read(1) == 0:
            n += 1
            if n > 40:
                raise FormatError("exp-Golomb prefix too long")
        q = (1 << n) | self.read(n)
        u = ((q - 1) << k) | self.read(k)
        return -u if u and self.read(1) else u


def golomb_bits_per_order(values: np.ndarray) -> np.ndarray:
    """Bits of the signed exp-Golomb code of `values` for every order 0..MAX_GOLOMB_ORDER."""
    u = np.abs(np.asarray(values, np.int64).reshape(-1))
    k = np.arange(MAX_GOLOMB_ORDER + 1, dtype=np.int64)
    n = np.floor(np.log2((u[None, :] >> k[:, None]) + 1)).astype(np.int64)  # prefix zeros
    return 2 * n.sum(axis=1) + u.size * (1 + k) + np.count_nonzero(u)


def best_golomb_order(values: np.ndarray) -> int:
    return int(np.argmin(golomb_bits_per_order(values)))  # the smallest order among equals


def write_networks(nets: Networks) -> tuple[bytes, dict[str, int]]:
    """Exp-Golomb coded tensors, each preceded by its 5-bit order; bits per module."""
    bw = BitWriter()
    bits = {"arm": 0, "ups": 0, "mod": 0, **({"synth": 0} if nets.synth is not None else {})}
    previous = None
    for module, t in nets.tensors():
        flat = np.asarray(t, dtype=np.int64).reshape(-1)
        start = len(bw.bits)
        if module == "synth" and previous != "synth":
            bw.write(nets.synth_step_exp, 5)  # the dense synthesis' step 2^-e, before its first tensor
        previous = module
        k = best_golomb_order(flat) if flat.size else 0
        bw.write(k, 5)
        for v in flat.tolist():
            bw.write_signed_golomb(v, k)
        bits[module] += len(bw.bits) - start
    return bw.getvalue(), bits


def read_networks(data: bytes, cfg: ArchConfig) -> Networks:
    br = BitReader(data)
    tensors = []
    bits = {"arm": 0, "ups": 0, "mod": 0, **({"synth": 0} if cfg.synth_mode == SYNTH_DENSE else {})}
    synth_step_exp = 0
    previous = None
    for module, shape in network_shapes(cfg):
        start = br.pos
        if module == "synth" and previous != "synth":
            synth_step_exp = br.read(5)
            if synth_step_exp > MAX_STEP_EXP:
                raise FormatError(f"synthesis step exponent {synth_step_exp} above {MAX_STEP_EXP}")
        k = br.read(5)
        if k > MAX_GOLOMB_ORDER:
            raise FormatError(f"exp-Golomb order {k} above {MAX_GOLOMB_ORDER}")
        previous = module
        limit = ARM_PARAM_MAX if module == "arm" else NET_VALUE_MAX
        flat = np.empty(int(np.prod(shape)), dtype=np.int64)
        for i in range(flat.size):
            v = br.read_signed_golomb(k)
            if abs(v) > limit:
                raise FormatError(f"{module} parameter {v} above {limit}")
            flat[i] = v
        tensors.append(flat.reshape(shape))
        bits[module] += br.pos - start
    if len(data) * 8 - br.pos >= 8 or br.bits[br.pos:].any():
        raise FormatError("networks section has trailing data")
    n_arm = 2 * len(cfg.arm_in_out)
    arm = IntArm(tensors[0:n_arm:2], tensors[1:n_arm:2], cfg.arm_frac_bits)
    check_arm_bounds(arm, cfg.latent_bound)
    n_mod = n_arm + 1 + 8
    synth = tensors[n_mod:] if cfg.synth_mode == SYNTH_DENSE else None
    return Networks(arm, tensors[n_arm], tensors[n_arm + 1:n_mod], bits, synth, synth_step_exp)


# ----------------------------------------------------------------------------- varints

def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise FormatError("varint truncated")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
    raise FormatError("varint too long")


def _words(data: bytes, what: str) -> np.ndarray:
    if len(data) % 4:
        raise FormatError(f"{what} is not a whole number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


# ----------------------------------------------------------------------------- container

@dataclass
class Bitstream:
    width: int
    height: int
    seed: int
    cfg: ArchConfig
    networks: bytes
    mask_counts: list[int]
    mask_words: np.ndarray
    latent_words: list[np.ndarray]
    section_bytes: dict[str, int] = field(default_factory=dict)


def write_bitstream(width: int, height: int, seed: int, cfg: ArchConfig, networks: bytes,
                    mask_counts: list[int], mask_words: np.ndarray,
                    latent_words: list[np.ndarray]) -> bytes:
    cfg.validate()
    _check_dimensions(width, height)
    if len(latent_words) != len(substream_plan(cfg, height, width)):
        raise ValueError("latent substreams do not match the configuration's plan")
    mask = b"".join(encode_varint(k) for k in mask_counts) + np.asarray(mask_words, "<u4").tobytes()
    latents = (b"".join(encode_varint(w.size) for w in latent_words)
               + b"".join(np.asarray(w, "<u4").tobytes() for w in latent_words))
    head = (_PREFIX.pack(MAGIC, VERSION, HEADER_SIZE)
            + _FIXED.pack(width, height, OUT_CHANNELS, 8, seed & 0xFFFFFFFFFFFFFFFF)
            + _CONFIG.pack(*(v for _, v in cfg.fields()))
            + _SECTIONS.pack(len(networks), len(mask), len(latents)))
    head += _CRC.pack(zlib.crc32(head))
    payload = networks + mask + latents
    return head + payload + _CRC.pack(zlib.crc32(payload))


def _check_dimensions(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise FormatError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side, "
                          f"{MAX_PIXELS} pixels in all")


def peek_config(data: bytes) -> ArchConfig | None:
    """The header's config record without any validation (None when too short to hold one):
    for choosing a backend, never for decoding."""
    if len(data) < _CONFIG_OFFSET + _CONFIG.size or data[:4] != MAGIC:
        return None
    return _unpack_config(data)


def _unpack_config(data: bytes) -> ArchConfig:
    return ArchConfig(**{f.name: v for f, v in zip(CONFIG_FIELDS, _CONFIG.unpack_from(data, _CONFIG_OFFSET))})


def read_bitstream(data: bytes) -> Bitstream:
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise FormatError(f"file of {len(data)} bytes is too short for a LotteryCodec header")
    magic, version, header_size = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError("not a LotteryCodec file (bad magic)")
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this decoder reads version {VERSION})")
    if header_size != HEADER_SIZE:
        raise FormatError(f"header size {header_size} != {HEADER_SIZE} for version {VERSION}")
    if len(data) < HEADER_SIZE + _CRC.size:
        raise FormatError("file truncated inside the header")
    (crc,) = _CRC.unpack_from(data, HEADER_SIZE - _CRC.size)
    if zlib.crc32(data[:HEADER_SIZE - _CRC.size]) != crc:
        raise FormatError("header CRC mismatch (corrupted file)")
    pos = _PREFIX.size
    width, height, channels, depth, seed = _FIXED.unpack_from(data, pos)
    pos += _FIXED.size
    cfg = _unpack_config(data)
    pos += _CONFIG.size
    n_nets, n_mask, n_lat = _SECTIONS.unpack_from(data, pos)
    if channels != OUT_CHANNELS or depth != 8:
        raise FormatError(f"unsupported {channels} channels at {depth} bits (version 1: 3 at 8)")
    _check_dimensions(width, height)
    cfg.validate()
    expected = HEADER_SIZE + n_nets + n_mask + n_lat + _CRC.size
    if len(data) < expected:
        raise FormatError(f"file truncated: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise FormatError(f"{len(data) - expected} bytes of trailing data after the payload")
    payload = data[HEADER_SIZE:expected - _CRC.size]
    if zlib.crc32(payload) != _CRC.unpack_from(data, expected - _CRC.size)[0]:
        raise FormatError("payload CRC mismatch (corrupted file)")

    nets = payload[:n_nets]
    mask = payload[n_nets:n_nets + n_mask]
    counts, p = [], 0
    for _ in range(N_SYNTH_LAYERS):
        k, p = read_varint(mask, p)
        counts.append(k)
    if sum(counts) != cfg.kept_weights:
        raise FormatError(f"mask keeps {sum(counts)} weights, header says {cfg.kept_weights}")
    mask_words = _words(mask[p:], "mask section")

    lat = payload[n_nets + n_mask:]
    n_sub = len(substream_plan(cfg, height, width))
    sizes, p = [], 0
    for _ in range(n_sub):
        n, p = read_varint(lat, p)
        sizes.append(n)
    if p + 4 * sum(sizes) != len(lat):
        raise FormatError("latent substream index does not match the latent section size")
    words = _words(lat[p:], "latent section")
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    latent_words = [words[starts[i]:starts[i + 1]] for i in range(n_sub)]
    breakdown = {"header": HEADER_SIZE, "networks": n_nets, "mask": n_mask,
                 "latent_index": p, "latents": n_lat - p, "crc": _CRC.size}
    return Bitstream(width, height, seed, cfg, nets, counts, mask_words, latent_words, breakdown)
