"""The one architecture record, written in every header and read by every part.

Each field is declared once, in header order (each a LEB128 varint there), with its allowed range
(inclusive).  "Impossible configuration" means a value outside these ranges, or a
combination rejected by :func:`ArchConfig.validate`; every decoder applies the same
rules, because they all read this table (the C++ port mirrors it field for field).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator

# Fixed-point format of the ARM activations: values carry ACT_FRAC fractional bits.
ACT_FRAC = 8
# The residual alphabet of the shipped frequency tables: r in [-RESIDUAL_MAX, RESIDUAL_MAX].
RESIDUAL_MAX = 127
# Number of modulation outputs (o0 .. o3) and so of modulated synthesis layers + 1.
N_MOD_OUTPUTS = 4
OUT_CHANNELS = 3
# synth_mode values: the lottery (masked random weights from the seed) and its ablation.
SYNTH_LOTTERY, SYNTH_DENSE = 0, 1
# The decoder's stages, in order, as every backend times them (Decoded.times, `lotterycodec-dec
# --time`, bench JSON), plus "all": file bytes to 8-bit image. parse: header, networks, mask and the
# synthesis weights regenerated from the seed; entropy: the latents (ARM + range decoding);
# upsampling: the latent cascade; modulation: o0..o3; synthesis: the masked MLP and the output
# transform. Backends that fuse stages share the fused wall time by where their threads spend it.
DECODE_STAGES = ("parse", "entropy", "upsampling", "modulation", "synthesis")
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26


class FormatError(ValueError):
    """Raised for every malformed, truncated, corrupted or unsupported bitstream."""


class LimitError(ValueError):
    """Raised for a file the caller's limits refuse (e.g. more pixels than max_pixels)."""


@dataclass(frozen=True)
class Field:
    name: str
    lo: int
    hi: int
    doc: str
    since: int = 2  # the first format version whose header carries it (older files: the default)


# Order here is the order in the header.
CONFIG_FIELDS: tuple[Field, ...] = (
    Field("n_grids", 1, 8, "latent grids; grid l has ceil(H/2^l) x ceil(W/2^l) values"),
    Field("latent_bound", 1, 64, "A: latent values lie in [-A, A-1]"),
    Field("stripe_height", 1, 65535, "rows per independent stripe of a striped grid"),
    Field("shared_max_pixels", 0, MAX_PIXELS, "grids with at most this many values share one substream"),
    Field("arm_context", 0, 32, "causal context pixels of the ARM (first n of CONTEXT_OFFSETS)"),
    Field("arm_layers", 0, 4, "hidden layers of the ARM"),
    Field("arm_width", 1, 64, "width of each ARM hidden layer"),
    Field("arm_frac_bits", 1, 12, "ARM weights and biases are integers times 2^-arm_frac_bits"),
    Field("ups_kernel_size", 4, 12, "even: 2x transposed-conv kernel is size x size (size/2 taps per phase)"),
    Field("ups_step_exp", 0, 24, "upsampling kernel step 2^-e"),
    Field("mod_width", 1, 64, "channels of modulation output o0"),
    Field("mod_out", 1, 16, "channels of modulation outputs o1, o2, o3"),
    Field("mod_weight_step_exp", 0, 24, "modulation weight step 2^-e"),
    Field("mod_bias_step_exp", 0, 24, "modulation bias step 2^-e"),
    Field("synth_width0", 1, 64, "synthesis layer 0 outputs"),
    Field("synth_width1", 1, 64, "synthesis layer 1 outputs"),
    Field("synth_width2", 1, 64, "synthesis layer 2 outputs"),
    Field("synth_mode", 0, 1, "0: masked random weights regenerated from the seed; "
          "1: trained dense weights sent in the networks section (the lottery ablation)"),
    Field("kept_weights", 0, 1 << 20, "synthesis weights kept by the mask (all layers)"),
    Field("arm_parents", 0, 9, "ARM inputs from the next coarser grid, upsampled 2x (first n of PARENT_OFFSETS)",
          since=3),
    Field("arm_residual", 0, 1, "1: every hidden ARM layer adds its input to its output before the ReLU "
          "(needs arm_width == arm inputs)", since=4),
    Field("arm_stabiliser", 0, 1, "1: a linear layer from the ARM's inputs to (mu, log2 scale), added to the "
          "last layer's output; its weight and bias follow the ARM's layers", since=4),
)


def _context_offsets() -> tuple[tuple[int, int], ...]:
    # Neighbour (y - dy, x - dx) is causal in raster order when dy > 0, or dy == 0 and dx > 0.
    cands = [(dy, dx) for dy in range(0, 5) for dx in range(-4, 5) if dy > 0 or dx > 0]
    cands.sort(key=lambda o: (o[0] ** 2 + o[1] ** 2, o[0], o[1]))
    return tuple(cands[:32])


CONTEXT_OFFSETS = _context_offsets()
# Inter-grid context: grid l's ARM may also read grid l + 1 (already decoded: grids are coded coarsest
# first) upsampled 2x by bilinear interpolation (weights 3/4, 1/4 per axis, edges repeated; in
# sixteenths it is an integer), at the latent's own position and its eight neighbours, nearest
# first; offsets that fall outside the grid read 0, as the spatial contexts do. Unlike the spatial
# contexts these are not causal: the coarser grid is known everywhere, so they also predict the
# latents below and to the right.
PARENT_OFFSETS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass(frozen=True)
class ArchConfig:
    n_grids: int = 7
    latent_bound: int = 64
    stripe_height: int = 64
    shared_max_pixels: int = 4096
    arm_context: int = 24
    arm_layers: int = 2
    arm_width: int = 24
    arm_frac_bits: int = 8
    ups_kernel_size: int = 8
    ups_step_exp: int = 8
    mod_width: int = 48
    mod_out: int = 3
    mod_weight_step_exp: int = 8
    mod_bias_step_exp: int = 8
    synth_width0: int = 32
    synth_width1: int = 24
    synth_width2: int = 16
    synth_mode: int = 0
    kept_weights: int = 1206  # 70 % of the default 1723
    arm_parents: int = 0
    arm_residual: int = 0
    arm_stabiliser: int = 0

    # ---- derived shapes (all parts read these; none recomputes them) ----
    @property
    def synth_in_out(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each synthesis layer, modulation inputs included."""
        w = [self.synth_width0, self.synth_width1, self.synth_width2, OUT_CHANNELS]
        mods = self.synth_mod_channels
        ins = [2] + [w[k - 1] + mods[k] for k in range(1, 4)]
        return list(zip(ins, w))

    @property
    def synth_mod_channels(self) -> list[int]:
        """Modulation channels concatenated to each synthesis layer's input ("rewind")."""
        return [0, 2 * self.mod_out, 3 * self.mod_out, 3 * self.mod_out + self.mod_width]

    @property
    def synth_weight_count(self) -> int:
        return sum(i * o for i, o in self.synth_in_out)

    @property
    def synth_macs_weights(self) -> int:
        """Synthesis weights a decoder multiplies: the kept ones, or all of a dense synthesis."""
        return self.synth_weight_count if self.synth_mode == SYNTH_DENSE else self.kept_weights

    @property
    def arm_inputs(self) -> int:
        """The ARM's inputs: the causal spatial contexts, then the parent (coarser grid) features."""
        return self.arm_context + self.arm_parents

    @property
    def arm_in_out(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every ARM tensor pair the file sends: the layers, then the stabiliser."""
        dims = [self.arm_inputs] + [self.arm_width] * self.arm_layers + [2]
        return list(zip(dims[:-1], dims[1:])) + [(self.arm_inputs, 2)] * self.arm_stabiliser

    @property
    def ups_taps(self) -> int:
        return self.ups_kernel_size // 2

    def grid_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        return [(-(-height // (1 << l)), -(-width // (1 << l))) for l in range(self.n_grids)]

    def fields(self, version: int | None = None) -> Iterator[tuple[Field, int]]:
        """Every field, or those a header of the given format version carries."""
        for f in CONFIG_FIELDS:
            if version is None or f.since <= version:
                yield f, getattr(self, f.name)

    @property
    def min_version(self) -> int:
        """The oldest version that can express this configuration (fields a version lacks must hold
        their default): 2 or 3, the listing versions, whose files were written in it (a decoder
        refuses one that is not), or 4 for the fields only version 4 carries (version 4 files hold
        every configuration)."""
        default = ArchConfig()
        return max([2] + [f.since for f, v in self.fields() if v != getattr(default, f.name)])

    def validate(self) -> "ArchConfig":
        for f, v in self.fields():
            if not isinstance(v, int) or not f.lo <= v <= f.hi:
                raise FormatError(f"config field {f.name}={v!r} outside [{f.lo}, {f.hi}]")
        if self.ups_kernel_size % 2:
            raise FormatError(f"ups_kernel_size={self.ups_kernel_size} must be even")
        if self.synth_mode == SYNTH_DENSE and self.kept_weights:
            raise FormatError("a dense (synth_mode 1) synthesis has no mask: kept_weights must be 0")
        # One way to write each file: the ARM options only where they change the computation.
        if self.arm_residual and (not self.arm_layers or self.arm_width != self.arm_inputs):
            raise FormatError(f"arm_residual needs hidden layers as wide as the ARM's {self.arm_inputs} inputs")
        if self.arm_stabiliser and (not self.arm_layers or not self.arm_inputs):
            raise FormatError("arm_stabiliser needs ARM inputs and hidden layers (else the ARM is linear already)")
        if self.kept_weights > self.synth_weight_count:
            raise FormatError(
                f"kept_weights={self.kept_weights} exceeds the {self.synth_weight_count} synthesis weights")
        return self

    def replace(self, **changes) -> "ArchConfig":
        return dataclasses.replace(self, **changes)


def kept_weights_for(cfg: ArchConfig, kept_ratio: float) -> int:
    if not 0.0 <= kept_ratio <= 1.0:
        raise ValueError(f"kept ratio {kept_ratio} must lie in [0, 1]")
    return int(math.floor(kept_ratio * cfg.synth_weight_count + 0.5))
