"""The container: header fields declared once, the three payload sections, CRCs.

Byte-level specification: docs/FORMAT.md.  Reading validates everything against the
bytes actually present before anything is allocated or entropy-decoded; every problem
raises :class:`FormatError`.
"""
from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .config import (CONFIG_FIELDS, LimitError, MAX_PIXELS, MAX_SIDE, OUT_CHANNELS, RESIDUAL_MAX, SYNTH_DENSE, ArchConfig,
                     FormatError)
from .entropy import (ARM_PARAM_MAX, N_SCALES, PRECISION, IntArm, CoderErrors, StreamDecoder, table_cums, table_model, check_arm_bounds,
                      load_tables, substream_plan)

MAGIC = b"LOTC"
VERSION = 4  # what the writer writes; this decoder reads VERSIONS
VERSIONS = (2, 3, 4)
# Versions 2 and 3 list every config field; version 4 sends a bit set of the fields that differ from
# their defaults (ArchConfig's, pinned in docs/FORMAT.md) and only those: 9-15 bytes less per file
# (the cpu preset's 256x256 files), 0.6-0.7 % of one at the lowest rates.
COMPACT_CONFIG_VERSION = 4
_PREFIX = struct.Struct("<4sBB")  # magic, version, header size (every header byte, its CRC included)
_CRC = struct.Struct("<I")
# The header's varints: at most this many bytes each (a u64 seed needs 10, every other field fits 5).
SEED_VARINT_BYTES, FIELD_VARINT_BYTES = 10, 5
NET_VALUE_MAX = 1 << 20
MAX_STEP_EXP = 24  # quantization steps 2^-e, e in 0..24 (header fields and the dense synthesis')
N_SYNTH_LAYERS = 4
# Networks section: each tensor picks one latent table (mu fraction 0) by a uniform symbol; values
# beyond the table's alphabet escape at its edge and send |v| - RESIDUAL_MAX in uniform base-64
# digits with a continuation flag, low digit first.
NET_SCALE_SYMBOLS = 64
ESCAPE_DIGIT_BITS = 6
ESCAPE_SYMBOLS = 1 << (ESCAPE_DIGIT_BITS + 1)
MAX_ESCAPE_DIGITS = 4
SYNTH_STEP_SYMBOLS = 32


# ----------------------------------------------------------------------------- networks

@dataclass
class Networks:
    """The sent networks as quantized integers (multiply by the header's steps to use)."""
    arm: IntArm
    ups_kernel: np.ndarray          # (2, 2, taps, taps): phase (a, b), tap (p, q)
    mod: list[np.ndarray]           # w0, b0, w1, b1, w2, b2, w3, b3 (convs as (out, in[, 3, 3]))
    bits: dict[str, float] = field(default_factory=dict)  # information content per module, when read from a file
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


@functools.cache
def _uniform(symbols: int):
    """A uniform model over a power-of-two alphabet: every frequency exactly 2^24 / symbols."""
    import constriction
    return constriction.stream.model.Categorical(np.full(symbols, (1 << PRECISION) // symbols - 1.0), perfect=False)


@functools.lru_cache(maxsize=None)
def _uniform_cum(symbols: int) -> tuple[int, ...]:
    """_uniform's cumulative frequencies (StreamDecoder follows the coder's state with them)."""
    return tuple(i * ((1 << PRECISION) // symbols) for i in range(symbols + 1))


@functools.lru_cache(maxsize=1)
def _value_bits() -> np.ndarray:
    """(N_SCALES, N_SYMBOLS) bits of each table symbol at mu fraction 0 (what a tensor is coded with)."""
    return -np.log2((load_tables()[0].astype(np.float64) + 1) / (1 << PRECISION))


def _escape_symbols(excess: int) -> list[int]:
    """|v| - RESIDUAL_MAX of an escaped value as Uniform(ESCAPE_SYMBOLS) symbols: base-64 digits,
    low first, each plus 64 while another follows."""
    symbols = []
    while True:
        digit, excess = excess & ((1 << ESCAPE_DIGIT_BITS) - 1), excess >> ESCAPE_DIGIT_BITS
        symbols.append(digit | (1 << ESCAPE_DIGIT_BITS if excess else 0))
        if not excess:
            return symbols


def tensor_bits(values: np.ndarray) -> float:
    """Information content of one sent tensor as the networks section codes it (the encoder's
    quantization searches minimise it)."""
    return _tensor_coding(values)[0]


def _tensor_coding(values: np.ndarray) -> tuple[float, int]:
    """(bits, table): the table (scale index) costing the fewest bits, which the writer uses;
    0 bits for an empty tensor."""
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    if not flat.size:
        return 0.0, 0
    per_table = _value_bits()[:, np.clip(flat, -RESIDUAL_MAX, RESIDUAL_MAX) + RESIDUAL_MAX].sum(axis=1)
    s = int(np.argmin(per_table))
    escapes = sum(len(_escape_symbols(int(v) - RESIDUAL_MAX)) for v in np.abs(flat[np.abs(flat) >= RESIDUAL_MAX]))
    return float(per_table[s]) + math.log2(NET_SCALE_SYMBOLS) + escapes * math.log2(ESCAPE_SYMBOLS), s


def network_bits(nets: Networks) -> dict[str, float]:
    """Information content of each module as the networks section codes it, in bits (to 0.1)."""
    bits = {"arm": 0.0, "ups": 0.0, "mod": 0.0}
    if nets.synth is not None:
        bits["synth"] = math.log2(SYNTH_STEP_SYMBOLS)  # the dense synthesis' step symbol
    for module, t in nets.tensors():
        bits[module] += tensor_bits(t)
    return {k: round(v, 1) for k, v in bits.items()}


def write_networks(nets: Networks) -> tuple[bytes, dict[str, float]]:
    """The networks section (range-coded words) and :func:`network_bits`."""
    import constriction
    enc = constriction.stream.queue.RangeEncoder()
    previous = None
    for module, t in nets.tensors():
        if module == "synth" and previous != "synth":  # the dense synthesis' step, before its first tensor
            enc.encode(nets.synth_step_exp, _uniform(SYNTH_STEP_SYMBOLS))
        previous = module
        flat = np.asarray(t, dtype=np.int64).reshape(-1)
        if not flat.size:
            continue
        s = _tensor_coding(flat)[1]
        enc.encode(s, _uniform(NET_SCALE_SYMBOLS))
        symbols = (np.clip(flat, -RESIDUAL_MAX, RESIDUAL_MAX) + RESIDUAL_MAX).astype(np.int32)
        cuts = np.flatnonzero(np.abs(flat) >= RESIDUAL_MAX) + 1
        for run, values in zip(np.split(symbols, cuts), np.split(flat, cuts)):  # all but the last end escaped
            if run.size:
                enc.encode(run, table_model(0, s))
            if run.size and abs(int(values[-1])) >= RESIDUAL_MAX:
                enc.encode(np.array(_escape_symbols(abs(int(values[-1])) - RESIDUAL_MAX), np.int32),
                           _uniform(ESCAPE_SYMBOLS))
    return np.asarray(enc.get_compressed(), "<u4").tobytes(), network_bits(nets)


def read_networks(data: bytes, cfg: ArchConfig) -> Networks:
    words = _words(data, "networks section")
    with CoderErrors():
        dec = StreamDecoder(words)
        tensors, synth_step_exp, previous = [], 0, None
        for module, shape in network_shapes(cfg):
            if module == "synth" and previous != "synth":
                synth_step_exp = dec.decode(_uniform(SYNTH_STEP_SYMBOLS), _uniform_cum(SYNTH_STEP_SYMBOLS))
                if synth_step_exp > MAX_STEP_EXP:
                    raise FormatError(f"synthesis step exponent {synth_step_exp} above {MAX_STEP_EXP}")
            previous = module
            tensors.append(_read_tensor(dec, shape, ARM_PARAM_MAX if module == "arm" else NET_VALUE_MAX, module))
        dec.finish("networks section")
    n_arm = 2 * len(cfg.arm_in_out)
    arm = IntArm.of(tensors[0:n_arm:2], tensors[1:n_arm:2], cfg)
    check_arm_bounds(arm, cfg.latent_bound)
    n_mod = n_arm + 1 + 8
    synth = tensors[n_mod:] if cfg.synth_mode == SYNTH_DENSE else None
    nets = Networks(arm, tensors[n_arm], tensors[n_arm + 1:n_mod], synth=synth, synth_step_exp=synth_step_exp)
    nets.bits = network_bits(nets)
    return nets


def _read_tensor(dec, shape: tuple[int, ...], limit: int, module: str) -> np.ndarray:
    flat = np.zeros(int(np.prod(shape)), dtype=np.int64)
    if not flat.size:
        return flat.reshape(shape)
    s = dec.decode(_uniform(NET_SCALE_SYMBOLS), _uniform_cum(NET_SCALE_SYMBOLS))
    if s >= N_SCALES:
        raise FormatError(f"{module} tensor table {s} above {N_SCALES - 1}")
    model, cum = table_model(0, s), table_cums()[0, s]
    for i in range(flat.size):
        v = dec.decode(model, cum) - RESIDUAL_MAX
        if abs(v) == RESIDUAL_MAX:
            excess = 0
            for d in range(MAX_ESCAPE_DIGITS + 1):
                if d == MAX_ESCAPE_DIGITS:
                    raise FormatError(f"{module} parameter escape longer than {MAX_ESCAPE_DIGITS} digits")
                digit = dec.decode(_uniform(ESCAPE_SYMBOLS), _uniform_cum(ESCAPE_SYMBOLS))
                excess |= (digit & ((1 << ESCAPE_DIGIT_BITS) - 1)) << (ESCAPE_DIGIT_BITS * d)
                if not digit >> ESCAPE_DIGIT_BITS:
                    break
            v += excess if v > 0 else -excess
        if abs(v) > limit:
            raise FormatError(f"{module} parameter {v} above {limit}")
        flat[i] = v
    return flat.reshape(shape)


# ----------------------------------------------------------------------------- varints

def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, max_bytes: int = FIELD_VARINT_BYTES) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * max_bytes, 7):
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
                    latent_words: list[np.ndarray], version: int = VERSION) -> bytes:
    """A file in ``version`` (older versions only for the tests of old files: a configuration they
    cannot hold, or one they would write in the other old version, is refused)."""
    cfg.validate()
    _check_dimensions(width, height)
    if version not in VERSIONS:
        raise ValueError(f"format version {version} is not one of {VERSIONS}")
    if version < COMPACT_CONFIG_VERSION and cfg.min_version != version:
        raise ValueError(f"a configuration of version {cfg.min_version} written as version {version}")
    if len(latent_words) != len(substream_plan(cfg, height, width)):
        raise ValueError("latent substreams do not match the configuration's plan")
    mask = b"".join(encode_varint(k) for k in mask_counts) + np.asarray(mask_words, "<u4").tobytes()
    latents = (b"".join(encode_varint(w.size) for w in latent_words)
               + b"".join(np.asarray(w, "<u4").tobytes() for w in latent_words))
    payload = networks + mask + latents
    head = pack_header(width, height, OUT_CHANNELS, 8, seed & 0xFFFFFFFFFFFFFFFF, [v for _, v in cfg.fields(version)],
                       [len(networks), len(mask), len(latents)], version)
    return head + payload + _CRC.pack(zlib.crc32(payload))


def rewrite_bitstream(data: bytes, version: int = VERSION, **parts) -> bytes:
    """The file ``data`` written again in ``version``, with any of write_bitstream's parts replaced
    (networks, mask_counts, mask_words, latent_words, cfg): repacking and forging for tools and tests."""
    bs = read_bitstream(data)
    fields = dict(cfg=bs.cfg, networks=bs.networks, mask_counts=bs.mask_counts, mask_words=bs.mask_words,
                  latent_words=bs.latent_words)
    fields.update(parts)
    return write_bitstream(bs.width, bs.height, bs.seed, version=version, **fields)


def config_record(values: list[int], version: int = VERSION) -> bytes:
    """The config record's bytes: versions 2 and 3 list every field they carry (``values``, in
    CONFIG_FIELDS order); version 4 a varint bit set (bit i: field i differs from its default)
    followed by those fields' values."""
    if version < COMPACT_CONFIG_VERSION:
        return b"".join(encode_varint(v) for v in values)
    default = ArchConfig()
    present = [i for i, (f, v) in enumerate(zip(CONFIG_FIELDS, values)) if v != getattr(default, f.name)]
    return encode_varint(sum(1 << i for i in present)) + b"".join(encode_varint(values[i]) for i in present)


def pack_header(width: int, height: int, channels: int, bit_depth: int, seed: int, config_values: list[int],
                section_sizes: list[int], version: int = VERSION, config: bytes | None = None) -> bytes:
    """The header bytes, CRC included, of exactly these values (no checks: tests forge with it;
    ``config`` replaces the config record's bytes)."""
    record = config_record(config_values, version) if config is None else config
    body = (encode_varint(width) + encode_varint(height) + bytes([channels, bit_depth]) + encode_varint(seed)
            + record + b"".join(encode_varint(n) for n in section_sizes))
    head = _PREFIX.pack(MAGIC, version, _PREFIX.size + len(body) + _CRC.size) + body
    return head + _CRC.pack(zlib.crc32(head))


def _check_dimensions(width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise FormatError(f"image size {width}x{height} outside 1..{MAX_SIDE} per side, "
                          f"{MAX_PIXELS} pixels in all")


@dataclass
class Header:
    size: int
    width: int
    height: int
    channels: int
    bit_depth: int
    seed: int
    cfg: ArchConfig  # not yet validated
    section_sizes: list[int]
    version: int


def _parse_header(data: bytes) -> Header:
    """The header's fields, read within its announced size; ranges are the caller's to check."""
    if len(data) < _PREFIX.size:
        raise FormatError(f"file of {len(data)} bytes is too short for a LotteryCodec header")
    magic, version, size = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError("not a LotteryCodec file (bad magic)")
    if version not in VERSIONS:
        raise FormatError(f"unsupported format version {version} (this decoder reads versions "
                          f"{', '.join(map(str, VERSIONS))})")
    if size < _PREFIX.size + _CRC.size:
        raise FormatError(f"header size {size} is too small")
    if len(data) < size:
        raise FormatError("file truncated inside the header")
    body = data[:size - _CRC.size]
    width, pos = read_varint(body, _PREFIX.size)
    height, pos = read_varint(body, pos)
    if pos + 2 > len(body):
        raise FormatError("header fields run past the header")
    channels, depth = body[pos], body[pos + 1]
    seed, pos = read_varint(body, pos + 2, SEED_VARINT_BYTES)
    if seed >> 64:
        raise FormatError("seed above 2^64 - 1")
    if version < COMPACT_CONFIG_VERSION:
        fields = [f for f in CONFIG_FIELDS if f.since <= version]
        values = []
        for _ in fields:
            v, pos = read_varint(body, pos)
            values.append(v)
        cfg = ArchConfig(**{f.name: v for f, v in zip(fields, values)})
        if cfg.min_version != version:  # one way to write each file: in the oldest version that fits
            raise FormatError(f"a version {version} header for a configuration of version {cfg.min_version}")
    else:
        present, pos = read_varint(body, pos)
        if present >> len(CONFIG_FIELDS):
            raise FormatError(f"config bit set {present:#x} names fields beyond the {len(CONFIG_FIELDS)} there are")
        default, changes = ArchConfig(), {}
        for i, f in enumerate(CONFIG_FIELDS):
            if present >> i & 1:
                v, pos = read_varint(body, pos)
                if v == getattr(default, f.name):  # one way to write each file: defaults are left out
                    raise FormatError(f"config field {f.name} sent with its default value {v}")
                changes[f.name] = v
        cfg = default.replace(**changes)
    sections = []
    for _ in range(3):
        n, pos = read_varint(body, pos)
        sections.append(n)
    if pos != len(body):
        raise FormatError(f"header fields end at byte {pos}, header announces {len(body)}")
    return Header(size, width, height, channels, depth, seed, cfg, sections, version)


def peek_config(data: bytes) -> ArchConfig | None:
    """The header's config record without its CRC or ranges checked (None when it cannot be
    read): for choosing a backend, never for decoding."""
    try:
        return _parse_header(bytes(data)).cfg
    except FormatError:
        return None


def check_pixel_limit(data: bytes, max_pixels: int | None) -> None:
    """The caller's cap on a file's declared pixels (None or 0: the format's own bound), judged from
    the header before anything is decoded or allocated, as the C++ core's max_pixels does."""
    if not max_pixels:
        return
    if max_pixels < 0:
        raise ValueError("max_pixels must be positive")
    head = _parse_header(bytes(data))
    pixels = head.width * head.height
    if pixels > max_pixels:
        raise LimitError(f"the image has {pixels} pixels, above the caller's limit of {max_pixels}")


def read_bitstream(data: bytes) -> Bitstream:
    data = bytes(data)
    head = _parse_header(data)
    size = head.size
    (crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(data[:size - _CRC.size]) != crc:
        raise FormatError("header CRC mismatch (corrupted file)")
    width, height, seed, cfg = head.width, head.height, head.seed, head.cfg
    n_nets, n_mask, n_lat = head.section_sizes
    if head.channels != OUT_CHANNELS or head.bit_depth != 8:
        raise FormatError(f"unsupported {head.channels} channels at {head.bit_depth} bits "
                          f"(version {head.version}: 3 at 8)")
    _check_dimensions(width, height)
    cfg.validate()
    expected = size + n_nets + n_mask + n_lat + _CRC.size
    if len(data) < expected:
        raise FormatError(f"file truncated: {len(data)} bytes, header announces {expected}")
    if len(data) > expected:
        raise FormatError(f"{len(data) - expected} bytes of trailing data after the payload")
    payload = data[size:expected - _CRC.size]
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
    breakdown = {"header": size, "networks": n_nets, "mask": n_mask,
                 "latent_index": p, "latents": n_lat - p, "crc": _CRC.size}
    return Bitstream(width, height, seed, cfg, nets, counts, mask_words, latent_words, breakdown)
