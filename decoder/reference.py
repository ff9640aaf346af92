"""The numpy reference decoder: the whole decode, one function per stage, the spec in code.

Stage names (decode_latents, upsample, modulate, synthesize) are shared by every backend, and so
are the timed stages (config.DECODE_STAGES). The C++ port keeps one file per stage (csrc/README.md,
"Files"); the Triton port is kernels/decode.py. All float maths is float32 in the written forms of
docs/FORMAT.md section 8.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .config import SYNTH_DENSE, ArchConfig
from .entropy import decode_latents, decode_mask
from .format import Bitstream, Networks, read_bitstream, read_networks
from .philox import synthesis_weights

F32 = np.float32
BAND_ROWS = 64


# ----------------------------------------------------------------------------- pinned formulas

def tanh(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return F32(1) - F32(2) / (np.exp(F32(2) * x) + F32(1))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (torch's approximate="tanh")."""
    inner = F32(0.7978845608028654) * (x + F32(0.044715) * x * x * x)
    return F32(0.5) * x * (F32(1) + tanh(inner))


def output_transform(z: np.ndarray) -> np.ndarray:
    """(tanh(z) + 1) / 2 == sigmoid(2 z)."""
    with np.errstate(over="ignore"):
        return F32(1) / (F32(1) + np.exp(F32(-2) * z))


def to_uint8(y: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(y, F32(0), F32(1)) * F32(255) + F32(0.5)).astype(np.uint8)


def coordinates(n: int) -> np.ndarray:
    """Pixel centres in [-1, 1]: (2 i - (n - 1)) / (n - 1), and 0 when n == 1."""
    if n == 1:
        return np.zeros(1, dtype=F32)
    return (2 * np.arange(n, dtype=np.int64) - (n - 1)).astype(F32) / F32(n - 1)


# ----------------------------------------------------------------------------- dequantized networks

@dataclass
class FloatNetworks:
    ups_kernel: np.ndarray
    mod: list[np.ndarray]

    @staticmethod
    def from_quantized(nets: Networks, cfg: ArchConfig) -> "FloatNetworks":
        ups = nets.ups_kernel.astype(F32) * F32(2.0 ** -cfg.ups_step_exp)
        steps = [F32(2.0 ** -(cfg.mod_weight_step_exp if i % 2 == 0 else cfg.mod_bias_step_exp))
                 for i in range(len(nets.mod))]
        return FloatNetworks(ups, [t.astype(F32) * s for t, s in zip(nets.mod, steps)])


# ----------------------------------------------------------------------------- stages

def upsample_2x(x: np.ndarray, kernel: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """out[2i+a, 2j+b] = sum_pq K[a,b,p,q] x[clamp(i+a-T/2+p), clamp(j+b-T/2+q)], cropped."""
    taps = kernel.shape[-1]
    h, w = x.shape
    xp = np.pad(x, taps // 2, mode="edge")
    out = np.empty((h, 2, w, 2), dtype=F32)
    for a in range(2):
        for b in range(2):
            acc = np.zeros((h, w), dtype=F32)
            for p in range(taps):
                for q in range(taps):
                    acc += kernel[a, b, p, q] * xp[a + p:a + p + h, b + q:b + q + w]
            out[:, a, :, b] = acc
    return out.reshape(2 * h, 2 * w)[:out_h, :out_w]


def upsample(latents: list[np.ndarray], kernel: np.ndarray) -> np.ndarray:
    """(L, H, W): grid l brought to full resolution by l successive 2x steps."""
    shapes = [g.shape for g in latents]
    planes = []
    for l, grid in enumerate(latents):
        x = grid.astype(F32)
        for level in range(l - 1, -1, -1):
            x = upsample_2x(x, kernel, *shapes[level])
        planes.append(x)
    return np.stack(planes)


def conv3x3_replicate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (O, H, W), 3x3 with edge replication."""
    c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.zeros((w.shape[0], h, wd), dtype=F32)
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, ky, kx], xp[:, ky:ky + h, kx:kx + wd])
    return out


def modulate(up: np.ndarray, mod: list[np.ndarray]) -> list[np.ndarray]:
    """Modulation outputs o0 (mod_width ch), o1, o2, o3 (mod_out ch each)."""
    w0, b0, w1, b1, w2, b2, w3, b3 = mod
    o0 = gelu(np.einsum("oc,chw->ohw", w0, up) + b0[:, None, None])
    o1 = gelu(np.einsum("oc,chw->ohw", w1, o0) + b1[:, None, None])
    o2 = gelu(conv3x3_replicate(o1, w2) + b2[:, None, None] + o1)
    o3 = gelu(conv3x3_replicate(o2, w3) + b3[:, None, None] + o2)
    return [o0, o1, o2, o3]


def rewind_inputs(o: list[np.ndarray]) -> list[np.ndarray]:
    """Modulation concatenated to synthesis layers 1, 2, 3: [o3,o2], [o3,o2,o1], [o3,o2,o1,o0]."""
    return [np.concatenate(o[::-1][:k + 1]) for k in range(1, 4)]


def synthesize(rows: np.ndarray, width: int, height: int, mods: list[np.ndarray],
               weights: list[np.ndarray]) -> np.ndarray:
    """Masked random MLP over pixels (rows given by index) -> (n_rows, W, 3) floats in [0, 1]."""
    n = rows.size * width
    ys, xs = coordinates(height)[rows], coordinates(width)
    h = np.stack([np.tile(xs, rows.size), np.repeat(ys, width)], axis=1)
    for l, w in enumerate(weights):
        if l:
            m = mods[l - 1]
            h = np.concatenate([h, m.reshape(m.shape[0], n).T], axis=1)
        h = h @ w.T
        if l < len(weights) - 1:
            h = gelu(h)
    return output_transform(h).reshape(rows.size, width, 3)


# ----------------------------------------------------------------------------- whole decode

@dataclass
class Decoded:
    image: np.ndarray                     # (H, W, 3) uint8
    latents: list[np.ndarray]
    bitstream: Bitstream
    times: dict[str, float] = field(default_factory=dict)


def live_neurons(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Indices of the hidden neurons of each hidden layer that can change the output (the stage every
    fast backend runs before the synthesis: C++ pack_synthesis, Triton prepare; this decoder keeps
    the dead neurons, whose terms are exact zeros).

    weights[l]: (out, in) masked, hidden input columns first. A neuron with no kept input is
    GELU(0) = 0 and one with no kept output is never read; removing one can starve another, so
    the sweep repeats until nothing changes."""
    nz = [np.asarray(w) != 0 for w in weights]
    live = [np.ones(w.shape[0], bool) for w in weights[:-1]]
    while True:
        before = [a.copy() for a in live]
        for l in range(len(live)):
            fan_in = nz[l][:, :live[l - 1].size][:, live[l - 1]] if l else nz[l]
            fans_in_mods = nz[l][:, live[l - 1].size:] if l else np.zeros((nz[l].shape[0], 0), bool)
            live[l] &= fan_in.any(axis=1) | fans_in_mods.any(axis=1)
            nxt = nz[l + 1][:, :live[l].size]
            if l + 1 < len(live):
                nxt = nxt[live[l + 1]]
            live[l] &= nxt.any(axis=0)
        if all(np.array_equal(a, b) for a, b in zip(live, before)):
            return [np.flatnonzero(a) for a in live]


def masked_weights(bs: Bitstream) -> list[np.ndarray]:
    in_out = bs.cfg.synth_in_out
    masks = decode_mask(bs.mask_counts, bs.mask_words, in_out)
    return [np.where(m, w, np.float32(0)) for w, m in zip(synthesis_weights(bs.seed, in_out), masks)]


def synthesis_layers(bs: Bitstream, nets: Networks) -> list[np.ndarray]:
    """The weights the synthesis multiplies: masked random ones, or the sent dense ones (synth_mode 1)."""
    if bs.cfg.synth_mode == SYNTH_DENSE:
        step = np.float32(2.0 ** -nets.synth_step_exp)
        return [w.astype(F32) * step for w in nets.synth]
    return masked_weights(bs)


def reconstruct(latents: list[np.ndarray], fnets: FloatNetworks, weights: list[np.ndarray],
                height: int, width: int, times: dict[str, float] | None = None) -> np.ndarray:
    """Upsampling, modulation and synthesis in row bands, so memory stays bounded."""
    times = {} if times is None else times
    t = time.perf_counter()
    up = upsample(latents, fnets.ups_kernel)
    times["upsampling"] = time.perf_counter() - t
    times.setdefault("modulation", 0.0)
    times.setdefault("synthesis", 0.0)
    image = np.empty((height, width, 3), dtype=np.uint8)
    for r0 in range(0, height, BAND_ROWS):
        r1 = min(r0 + BAND_ROWS, height)
        e0, e1 = max(r0 - 2, 0), min(r1 + 2, height)  # two 3x3 convs need a 2-row halo
        t = time.perf_counter()
        mods = [o[:, r0 - e0:r1 - e0] for o in modulate(up[:, e0:e1], fnets.mod)]
        times["modulation"] += time.perf_counter() - t
        t = time.perf_counter()
        band = synthesize(np.arange(r0, r1), width, height, rewind_inputs(mods), weights)
        image[r0:r1] = to_uint8(band)
        times["synthesis"] += time.perf_counter() - t
    return image


def decode(data: bytes) -> Decoded:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    bs = read_bitstream(data)
    nets = read_networks(bs.networks, bs.cfg)
    weights = synthesis_layers(bs, nets)
    t1 = time.perf_counter()
    times["parse"] = t1 - t0
    latents = decode_latents(bs.latent_words, nets.arm, bs.cfg, bs.height, bs.width)
    times["entropy"] = time.perf_counter() - t1
    image = reconstruct(latents, FloatNetworks.from_quantized(nets, bs.cfg), weights,
                        bs.height, bs.width, times)
    times["all"] = time.perf_counter() - t0
    return Decoded(image, latents, bs, times)
