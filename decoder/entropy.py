"""Integer-only entropy path: the fixed-point ARM, the shipped tables, latent and mask coding.

Everything that decides a coded symbol's probability is integer arithmetic on int64
arrays whose values provably fit in int32 (checked by :func:`check_arm_bounds` at parse
time), so every decoder on every CPU derives the same frequencies.  Range coding is
constriction's queue coder with ``Categorical(perfect=False)`` fed integer weights
``w`` summing to ``2**24 - n``, which makes every frequency exactly ``w + 1``.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ACT_FRAC, CONTEXT_OFFSETS, PARENT_OFFSETS, RESIDUAL_MAX, ArchConfig, FormatError

PRECISION = 24
MAX_FREQ = (1 << PRECISION) - (1 << 12)
MU_STEPS = 8
SCALE_STEPS_PER_OCTAVE = 4
LOG2_SCALE_MIN = -4
N_SCALES = 48
N_SYMBOLS = 2 * RESIDUAL_MAX + 1
# A latent costs at least -log2(MAX_FREQ / 2^24) > 1/2839 bit, and a stream ends where its words
# do (StreamDecoder.finish), so a substream of L bits holds at most L * 2839 latents; more is a
# forged header, refused before any decoding (docs/FORMAT.md 6.5).
MAX_SYMBOLS_PER_BIT = 2839
INT32_MAX = (1 << 31) - 1
ARM_PARAM_MAX = 1 << 15

TABLES_PATH = Path(__file__).with_name("data") / "laplace_tables.npy"
TABLES_SHA256 = "4fae99fca5c8ea16a717b35c457d63edc87131c2ad1c597db3a5bafabfd5059b"


@functools.lru_cache(maxsize=1)
def load_tables() -> np.ndarray:
    """The (MU_STEPS, N_SCALES, N_SYMBOLS) uint32 weights, verified against the pinned hash."""
    raw = TABLES_PATH.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TABLES_SHA256:
        raise RuntimeError(f"{TABLES_PATH} has hash {digest}, expected {TABLES_SHA256}")
    tables = np.load(TABLES_PATH)
    assert tables.shape == (MU_STEPS, N_SCALES, N_SYMBOLS)
    return tables


def _categorical():
    import constriction
    return constriction.stream.model.Categorical(perfect=False)


@functools.lru_cache(maxsize=MU_STEPS * N_SCALES)
def table_model(f: int, s: int):
    import constriction
    return constriction.stream.model.Categorical(load_tables()[f, s].astype(np.float64), perfect=False)


class StreamDecoder:
    """constriction's queue RangeDecoder, plus the check that the stream ends exactly where the
    encoder ended it (docs/FORMAT.md 5, "Stream end").

    The coder's state (lower, range) follows from the decoded symbols alone, so the decoder
    knows what constriction's encoder emitted: one word per refill, then the seal, the top word
    of lower + 2^32 - 1 and, when that word is also the top word of lower + range, a zero word.
    Any other word count or seal is junk or a forgery: an error, so every decoder accepts exactly
    the files an encoder can write. decode() takes the model's cumulative frequencies (length
    symbols + 1) to follow the state."""

    _MASK = (1 << 64) - 1

    def __init__(self, words: np.ndarray):
        import constriction
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._words = words
        self.lower, self.range, self.reads, self.symbols = 0, self._MASK, 2, 0

    def decode(self, model, cum) -> int:
        s = int(self._dec.decode(model))
        scale = self.range >> PRECISION
        self.lower = (self.lower + scale * int(cum[s])) & self._MASK
        self.range = scale * (int(cum[s + 1]) - int(cum[s]))
        if self.range < 1 << 32:
            self.lower, self.range, self.reads = (self.lower << 32) & self._MASK, self.range << 32, self.reads + 1
            if self.reads > self._words.size + 1:  # past anything an encoder wrote: stop decoding zeros
                raise FormatError("entropy-coded stream read past its end (corrupt or forged)")
        self.symbols += 1
        return s

    def finish(self, what: str) -> None:
        n = int(self._words.size)
        if not self.symbols:
            if n:
                raise FormatError(f"{what}: {n} words where nothing is coded")
            return
        point = (self.lower + (1 << 32) - 1) & self._MASK
        zero_word = ((self.lower + self.range) & self._MASK) >> 32 == point >> 32
        seal = [point >> 32, 0] if zero_word else [point >> 32]
        if n != self.reads - 2 + len(seal) or [int(w) for w in self._words[self.reads - 2:]] != seal:
            raise FormatError(f"{what}: its words do not end where its {self.symbols} symbols do")


@functools.lru_cache(maxsize=1)
def table_cums() -> np.ndarray:
    """(MU_STEPS, N_SCALES, N_SYMBOLS + 1) cumulative frequencies of the tables (StreamDecoder)."""
    freq = load_tables().astype(np.int64) + 1
    return np.concatenate([np.zeros(freq.shape[:2] + (1,), np.int64), np.cumsum(freq, axis=-1)], axis=-1)


class CoderErrors:
    """Turns what constriction raises on garbage input into FormatError.

    Its decoders assert on impossible states and may panic (a BaseException) rather than
    return an error; a corrupt stream is input, not a bug, so it gets the format's one error.
    """

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None or issubclass(kind, FormatError):
            return False
        if issubclass(kind, (AssertionError, ValueError, KeyError, TypeError, OverflowError)) \
                or kind.__name__ == "PanicException":
            raise FormatError(f"corrupt entropy-coded data ({kind.__name__}: {exc})") from None
        return False


# ----------------------------------------------------------------------------- ARM

@dataclass
class IntArm:
    """Integer ARM: per tensor pair an int64 weight matrix (out, in) and bias (out,), as the file
    sends them: the layers, then (``stabiliser``) the linear layer from the inputs to the outputs."""
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    frac_bits: int
    residual: bool = False    # hidden layers add their input before the ReLU (config arm_residual)
    stabiliser: bool = False  # the last pair is the stabiliser (config arm_stabiliser)

    @classmethod
    def of(cls, weights: list[np.ndarray], biases: list[np.ndarray], cfg) -> "IntArm":
        """The ARM of a configuration (frac bits and options from it)."""
        return cls(weights, biases, cfg.arm_frac_bits, bool(cfg.arm_residual), bool(cfg.arm_stabiliser))

    def effective(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
        """(chain, stabiliser): the (weight, bias) pairs a decoder multiplies. A residual hidden
        layer's "+ input" is its weight plus 2^frac on the diagonal: floor((Wx + b + x 2^f) 2^-f) =
        floor((Wx + b) 2^-f) + x exactly for integer x, so the skip is one accumulator, and the bound
        check below (and the C++ core's kernels) see the weights the decoder multiplies."""
        pairs = list(zip(self.weights, self.biases))
        chain, stab = (pairs[:-1], pairs[-1:]) if self.stabiliser else (pairs, [])
        if self.residual:
            eye = np.int64(1 << self.frac_bits)
            chain = [(w + eye * np.eye(*w.shape, dtype=np.int64), b) if l < len(chain) - 1 else (w, b)
                     for l, (w, b) in enumerate(chain)]
        return chain, stab

    def __post_init__(self) -> None:
        # Per layer: W^T and the bias already in accumulator units with the rounding half added.
        # The layers run in float64 (BLAS): check_arm_bounds keeps every accumulator, and so every
        # partial sum in any order, below 2^31, where float64 holds integers exactly; ">> frac" is
        # then floor(x * 2^-frac), also exact.
        half = np.int64(1 << (self.frac_bits - 1))
        chain, stab = self.effective()
        self._chain, self._stab = [[(np.ascontiguousarray(w.T, dtype=np.float64),
                                     ((b << ACT_FRAC) + half).astype(np.float64)) for w, b in part]
                                   for part in (chain, stab)]
        self._shift = 2.0 ** -self.frac_bits

    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """inputs: (n, C) or (C,) integers, the ARM's inputs with ACT_FRAC fractional bits (see
        :func:`unit_inputs`) -> (mu, log2 scale), with ACT_FRAC fractional bits: the last layer's
        output, plus the stabiliser's (its own rounding) where there is one."""
        x0 = inputs.astype(np.float64)
        x = x0
        last = len(self._chain) - 1
        for l, (wt, bias) in enumerate(self._chain):
            x = np.floor((x.dot(wt) + bias) * self._shift)
            if l < last:
                np.maximum(x, 0, out=x)
        for wt, bias in self._stab:
            x = x + np.floor((x0.dot(wt) + bias) * self._shift)
        x = x.astype(np.int64)
        return x[..., 0], x[..., 1]


def check_arm_bounds(arm: IntArm, latent_bound: int) -> None:
    """Reject parameters for which some int32 accumulator could overflow (spec section 6)."""
    for w, b in zip(arm.weights, arm.biases):
        if w.size and np.abs(w).max() > ARM_PARAM_MAX or b.size and np.abs(b).max() > ARM_PARAM_MAX:
            raise FormatError(f"ARM parameter magnitude above {ARM_PARAM_MAX}")
    chain, stab = arm.effective()
    for part in (chain, stab):
        bound = latent_bound << ACT_FRAC
        for w, b in part:
            acc = np.abs(w).sum(axis=1) * bound + (np.abs(b) << ACT_FRAC) + (1 << (arm.frac_bits - 1))
            if acc.size and int(acc.max()) > INT32_MAX:
                raise FormatError("ARM parameters could overflow a 32-bit accumulator")
            bound = int(acc.max() >> arm.frac_bits) if acc.size else 0


def _clip(x, lo: int, hi: int):
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else min(max(x, lo), hi)


def table_index(mu, log2_scale, latent_bound: int):
    """Integer mapping of ARM outputs to (centre m, mu-fraction table f, scale table s).
    Takes int64 arrays (encoder, all latents at once) or Python ints (decoder, one latent)."""
    shift = ACT_FRAC - 3  # MU_STEPS == 8 == 2^3
    mu8 = _clip((mu + (1 << (shift - 1))) >> shift, -MU_STEPS * latent_bound, MU_STEPS * latent_bound - 1)
    m = mu8 >> 3
    f = mu8 & (MU_STEPS - 1)
    s = (log2_scale * SCALE_STEPS_PER_OCTAVE - LOG2_SCALE_MIN * SCALE_STEPS_PER_OCTAVE * (1 << ACT_FRAC)
         + (1 << (ACT_FRAC - 1))) >> ACT_FRAC
    return m, f, _clip(s, 0, N_SCALES - 1)


# ----------------------------------------------------------------------------- latent layout

@dataclass(frozen=True)
class Unit:
    """Rows [row0, row1) of one latent grid, coded with context confined to those rows."""
    grid: int
    row0: int
    row1: int


def substream_plan(cfg: ArchConfig, height: int, width: int) -> list[list[Unit]]:
    """Substreams in file order: first the shared one (small grids, coarsest first), then
    each striped grid's stripes (coarsest grid first, top to bottom)."""
    shapes = cfg.grid_shapes(height, width)
    order = range(cfg.n_grids - 1, -1, -1)
    shared = [Unit(g, 0, shapes[g][0]) for g in order if shapes[g][0] * shapes[g][1] <= cfg.shared_max_pixels]
    plan = [shared] if shared else []
    for g in order:
        h, w = shapes[g]
        if h * w > cfg.shared_max_pixels:
            plan += [[Unit(g, r, min(r + cfg.stripe_height, h))] for r in range(0, h, cfg.stripe_height)]
    return plan


# Parent features are sixteenths: 16 x the bilinear value is an integer, shifted this much more to
# reach the ARM's ACT_FRAC fractional bits.
PARENT_SHIFT = ACT_FRAC - 4


def upsampled_parent(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) int64: 16 x the coarser grid upsampled 2x bilinearly (weights 3/4 and 1/4 per
    axis, the edge sample repeated), the trainer's F.interpolate(scale 2, bilinear) cropped, exact."""
    def taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n)
        near = y >> 1
        far = np.where(y & 1, near + 1, near - 1)
        return near, np.clip(far, 0, size - 1)

    c = coarse.astype(np.int64)
    ny, fy = taps(height, c.shape[0])
    nx, fx = taps(width, c.shape[1])
    rows = 3 * c[ny] + c[fy]
    return 3 * rows[:, nx] + rows[:, fx]


def parent_features(parent16: np.ndarray | None, row0: int, row1: int, width: int, n_parents: int) -> np.ndarray:
    """(rows*width, n_parents) ARM inputs from the upsampled parent (None: the coarsest grid, all 0)
    for rows [row0, row1): PARENT_OFFSETS[k] = (dy, dx) reads (y + dy, x + dx), 0 outside the grid."""
    if parent16 is None or not n_parents:
        return np.zeros(((row1 - row0) * width, n_parents), np.int64)
    h, w = parent16.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.int64)
    padded[1:-1, 1:-1] = parent16 << PARENT_SHIFT
    out = np.empty(((row1 - row0) * w, n_parents), dtype=np.int64)
    for k, (dy, dx) in enumerate(PARENT_OFFSETS[:n_parents]):
        out[:, k] = padded[1 + row0 + dy:1 + row1 + dy, 1 + dx:1 + dx + w].reshape(-1)
    return out


def grid_parent(grids: list[np.ndarray], g: int, cfg: ArchConfig, cache: dict | None = None) -> np.ndarray | None:
    """Grid g's upsampled parent (16x), or None (no parent features, or g is the coarsest grid).
    cache: per grid, so that a striped grid's units upsample its parent once."""
    if not cfg.arm_parents or g + 1 >= len(grids):
        return None
    if cache is None:
        return upsampled_parent(grids[g + 1], *grids[g].shape)
    if g not in cache:
        cache[g] = upsampled_parent(grids[g + 1], *grids[g].shape)
    return cache[g]


def unit_inputs(grids: list[np.ndarray], unit: Unit, cfg: ArchConfig, parent16: np.ndarray | None) -> np.ndarray:
    """(rows*w, C + P) ARM inputs of a whole unit at once (encoder side), ACT_FRAC fractional bits:
    the causal spatial contexts (zero outside the unit), then the parent features."""
    rows = grids[unit.grid][unit.row0:unit.row1]
    h, w = rows.shape
    padded = np.zeros((h + 4, w + 8), dtype=np.int64)
    padded[4:, 4:4 + w] = rows
    ctx = np.empty((h * w, cfg.arm_inputs), dtype=np.int64)
    for c, (dy, dx) in enumerate(CONTEXT_OFFSETS[:cfg.arm_context]):
        ctx[:, c] = padded[4 - dy:4 - dy + h, 4 - dx:4 - dx + w].reshape(-1) << ACT_FRAC
    ctx[:, cfg.arm_context:] = parent_features(parent16, unit.row0, unit.row1, w, cfg.arm_parents)
    return ctx


def _symbol_bound_check(n_symbols: int, n_words: int, what: str) -> None:
    if n_symbols > 32 * n_words * MAX_SYMBOLS_PER_BIT:
        raise FormatError(f"{what}: {n_symbols} symbols cannot fit in {4 * n_words} bytes")


def encode_latents(grids: list[np.ndarray], arm: IntArm, cfg: ArchConfig) -> list[np.ndarray]:
    """One array of uint32 words per substream of :func:`substream_plan`."""
    import constriction
    tables = load_tables()
    height, width = grids[0].shape
    out, parents = [], {}
    for units in substream_plan(cfg, height, width):
        enc = constriction.stream.queue.RangeEncoder()
        for unit in units:
            values = grids[unit.grid][unit.row0:unit.row1].reshape(-1).astype(np.int64)
            if values.size == 0:
                continue
            if values.min() < -cfg.latent_bound or values.max() >= cfg.latent_bound:
                raise ValueError("latent outside the alphabet [-A, A-1]")
            mu, ls = arm.forward(unit_inputs(grids, unit, cfg, grid_parent(grids, unit.grid, cfg, parents)))
            m, f, s = table_index(mu, ls, cfg.latent_bound)
            symbols = (values - m + RESIDUAL_MAX).astype(np.int32)
            for start in range(0, values.size, 4096):
                sl = slice(start, start + 4096)
                probs = tables[f[sl], s[sl]].astype(np.float64)
                enc.encode(symbols[sl], _categorical(), probs)
        out.append(enc.get_compressed())
    return out


def decode_latents(substreams: list[np.ndarray], arm: IntArm, cfg: ArchConfig,
                   height: int, width: int) -> list[np.ndarray]:
    """Sequential raster decoding of every unit (the reference; slow is fine)."""
    plan = substream_plan(cfg, height, width)
    if len(substreams) != len(plan):
        raise FormatError(f"expected {len(plan)} latent substreams, found {len(substreams)}")
    shapes = cfg.grid_shapes(height, width)
    for units, words in zip(plan, substreams):  # every bound before any allocation or decoding
        n_symbols = sum((u.row1 - u.row0) * shapes[u.grid][1] for u in units)
        _symbol_bound_check(n_symbols, words.size, "latent substream")
    grids = [np.zeros(s, dtype=np.int64) for s in shapes]
    parents = {}
    for units, words in zip(plan, substreams):
        with CoderErrors():
            dec = StreamDecoder(words)
            _decode_substream(dec, units, grids, arm, cfg, parents)
            dec.finish("latent substream")
    return grids


def _decode_substream(dec, units: list[Unit], grids: list[np.ndarray], arm: IntArm, cfg: ArchConfig,
                      parents: dict) -> None:
    """Decodes the units in order; a unit's parent grid (the next coarser one) is complete by then:
    substream_plan puts coarser grids first."""
    offsets = CONTEXT_OFFSETS[:cfg.arm_context]
    A = cfg.latent_bound
    cums = table_cums()
    for unit in units:
        h, w = unit.row1 - unit.row0, grids[unit.grid].shape[1]
        features = parent_features(grid_parent(grids, unit.grid, cfg, parents), unit.row0, unit.row1, w,
                                   cfg.arm_parents)
        pitch = w + 8
        buf = np.zeros((h + 4) * pitch, dtype=np.int64)
        rel = np.array([dy * pitch + dx for dy, dx in offsets], dtype=np.int64)
        for y in range(h):
            for x in range(w):
                pos = (y + 4) * pitch + x + 4
                mu, ls = arm.forward(np.concatenate([buf[pos - rel] << ACT_FRAC, features[y * w + x]]))
                m, f, s = table_index(int(mu), int(ls), A)
                v = m + dec.decode(table_model(f, s), cums[f, s]) - RESIDUAL_MAX
                if not -A <= v < A:
                    raise FormatError("decoded latent outside the alphabet (corrupt substream)")
                buf[pos] = v
        grids[unit.grid][unit.row0:unit.row1] = buf.reshape(h + 4, pitch)[4:, 4:4 + w]


def latent_inputs(grids: list[np.ndarray], cfg: ArchConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, contexts) of every coded unit: what :func:`latent_bits` reads, computed once for
    the several ARMs an encoder compares."""
    height, width = grids[0].shape
    out, parents = [], {}
    for units in substream_plan(cfg, height, width):
        for unit in units:
            values = grids[unit.grid][unit.row0:unit.row1].reshape(-1).astype(np.int64)
            if values.size:
                out.append((values, unit_inputs(grids, unit, cfg, grid_parent(grids, unit.grid, cfg, parents))))
    return out


def latent_bits(grids: list[np.ndarray], arm: IntArm, cfg: ArchConfig,
                inputs: list[tuple[np.ndarray, np.ndarray]] | None = None) -> float:
    """Exact information content (bits) of the latents under the integer ARM and tables."""
    tables = load_tables()
    bits = 0.0
    for values, ctx in latent_inputs(grids, cfg) if inputs is None else inputs:
        mu, ls = arm.forward(ctx)
        m, f, s = table_index(mu, ls, cfg.latent_bound)
        freq = tables[f, s, np.clip(values - m + RESIDUAL_MAX, 0, N_SYMBOLS - 1)].astype(np.float64) + 1
        bits += float(np.sum(PRECISION - np.log2(freq)))
    return bits


# ----------------------------------------------------------------------------- mask

def _mask_weights(remaining_kept: int, remaining: int) -> list[int]:
    """Integer model of the next mask bit given how many of the remaining bits are set."""
    f1 = min(max((remaining_kept << PRECISION) // remaining, 1), (1 << PRECISION) - 1)
    return [(1 << PRECISION) - f1 - 1, f1 - 1]


def encode_mask(masks: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
    """Kept count per layer and the range-coded bits (enumerative: ~log2 C(n, k) bits)."""
    import constriction
    enc = constriction.stream.queue.RangeEncoder()
    counts = []
    for mask in masks:
        bits = mask.reshape(-1).astype(np.int64)
        n, k = bits.size, int(bits.sum())
        counts.append(k)
        kept_before = np.concatenate([[0], np.cumsum(bits)[:-1]])
        rem_k = k - kept_before
        rem_n = n - np.arange(n)
        coded = (rem_k > 0) & (rem_k < rem_n)
        if coded.any():
            probs = np.array([_mask_weights(int(a), int(b)) for a, b in zip(rem_k[coded], rem_n[coded])],
                             dtype=np.float64)
            enc.encode(bits[coded].astype(np.int32), _categorical(), probs)
    return counts, enc.get_compressed()


def decode_mask(counts: list[int], words: np.ndarray, in_out: list[tuple[int, int]]) -> list[np.ndarray]:
    with CoderErrors():
        dec = StreamDecoder(words)
        masks = _decode_mask_bits(dec, counts, in_out)
        dec.finish("mask section")
    return masks


def _decode_mask_bits(dec, counts: list[int], in_out: list[tuple[int, int]]) -> list[np.ndarray]:
    import constriction
    masks = []
    for k, (fan_in, fan_out) in zip(counts, in_out):
        n = fan_in * fan_out
        if k > n:
            raise FormatError(f"mask layer keeps {k} of {n} weights")
        bits = np.zeros(n, dtype=bool)
        rem_k = k
        for i in range(n):
            rem_n = n - i
            if rem_k == 0:
                break
            if rem_k == rem_n:
                bits[i:] = True
                break
            weights = _mask_weights(rem_k, rem_n)
            model = constriction.stream.model.Categorical(np.array(weights, dtype=np.float64), perfect=False)
            if dec.decode(model, (0, weights[0] + 1, 1 << PRECISION)):
                bits[i] = True
                rem_k -= 1
        masks.append(bits.reshape(fan_out, fan_in))
    return masks
