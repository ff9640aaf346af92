"""Modulation and masked synthesis on the device (twins of reference.modulate / synthesize), with
one pixel per thread lane and every channel a register.

A block is a 1-D vector of pixels; each channel of a layer is one [BLOCK] variable, so a
multiply-add is one FMA per pixel against a uniform (broadcast) weight load, and the widths are
the live counts after compaction, not powers of two. (The first version used ``tl.dot`` tiles:
in fp32 they paid for padding 7 latents to 16 and 48 modulation channels to 64, and ran 2.1-2.6x
slower on an H200.)

Layers are streamed two at a time: the neurons of a layer are visited in a runtime loop, each
computed, activated and at once scattered into the next layer's accumulators, so one list of
variables per stage exists. Triton has no lists of tensors, so the source of those lists is
generated from (latents, mod_out, live neurons of synthesis layer 1) — a handful of values per
architecture, each compiled once; everything else (live neurons of layers 0 and 2, mod_width)
is a runtime loop bound, so a new mask never recompiles. Three passes; the only full-resolution
tensors in global memory are the mod_out planes o1 and o2 and three planes z0:
- ``head_kernel``: o1 = GELU(W1 GELU(W0 u + b0) + b1), o0 streamed channel by channel, and
  z0 = M3[:, o0] o0, o0's share of the output sums (the last layer is linear, so o0 is computed
  once instead of again in the fused pass: at 70 % kept that was 46 GELUs and ~500 FMAs a pixel);
- ``conv_kernel``: o2 = GELU(conv3x3(o1) + b2 + o1), edges replicated;
- ``fused_kernel``: o3 from o2's 3x3 neighbourhood, the masked random MLP with the rewind
  concatenations, the output sums started from z0, the output transform and 8-bit rounding.
The mask pays through compaction: a hidden neuron whose kept inputs are all pruned outputs
GELU(0) = 0 and one whose outgoing weights are all pruned is never read, so both leave the loops.
"""
from __future__ import annotations

import functools
import hashlib
import linecache
import time
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from ..decoder.reference import live_neurons

BLOCK = 128  # x 4 warps: one pixel per lane; the fastest of six launch shapes on an H200 at 4K
NUM_WARPS = 4


@triton.jit
def _gelu(x):
    # tanh-form GELU as x * sigmoid(2 k); the clamp keeps exp finite (sigmoid(30) == 1 in fp32)
    k = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x / (1.0 + tl.exp(-2.0 * tl.minimum(tl.maximum(k, -15.0), 15.0)))


def _terms(pairs: list[tuple[str, str]]) -> str:
    return " + ".join(f"{v} * tl.load({w})" for v, w in pairs)


def _conv_source(src: str, dst: str, wb: str, mo: int) -> str:
    """dst<c> = GELU(b + src<c> + conv3x3(src)) at (y, x), edges replicated; wb: (mo, mo*9 + 1) rows."""
    lines = []
    for t in range(9):
        dy, dx = t // 3 - 1, t % 3 - 1
        lines.append(f"    at = tl.minimum(tl.maximum(y + {dy}, 0), H - 1) * W + tl.minimum(tl.maximum(x + {dx}, 0), W - 1)")
        for c in range(mo):
            lines.append(f"    n{c}_{t} = tl.load({src} + {c} * HW + at, mask=valid, other=0.0)")
    for c in range(mo):
        row = c * (9 * mo + 1)
        taps = _terms([(f"n{ci}_{t}", f"{wb} + {row + ci * 9 + t}") for ci in range(mo) for t in range(9)])
        lines.append(f"    {dst}{c} = _gelu(tl.load({wb} + {row + 9 * mo}) + n{c}_4 + {taps})")
    return "\n".join(lines)


def _source(n_latents: int, mo: int, n1: int) -> str:
    L = n_latents
    u = [f"u{k}" for k in range(L)]
    load_u = "\n".join(f"    u{k} = tl.load(up_ptr + {k} * HW + pos, mask=valid, other=0.0)" for k in range(L))
    prologue = ("    pos = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
                "    valid = pos < HW\n")
    # head rows, one per o0 channel j: [w0[j, :L], b0[j], w1[:, j], M3[:, o0 j]]; o0 is computed
    # once here and its share of the output sums (z0, linear in o0) is stored as three planes
    head = [
        "@triton.jit",
        "def head_kernel(up_ptr, rows_ptr, b1_ptr, o1_ptr, z0_ptr, HW, MW, BLOCK: tl.constexpr):",
        prologue + load_u,
        *[f"    a{c} = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(b1_ptr + {c})" for c in range(mo)],
        *[f"    z{c} = tl.zeros([BLOCK], dtype=tl.float32)" for c in range(3)],
        "    for j in range(MW):",
        f"        r = rows_ptr + j * {L + 1 + mo + 3}",
        f"        t = _gelu(tl.load(r + {L}) + {_terms([(u[k], f'r + {k}') for k in range(L)])})",
        *[f"        a{c} += t * tl.load(r + {L + 1 + c})" for c in range(mo)],
        *[f"        z{c} += t * tl.load(r + {L + 1 + mo + c})" for c in range(3)],
        *[f"    tl.store(o1_ptr + {c} * HW + pos, _gelu(a{c}), mask=valid)" for c in range(mo)],
        *[f"    tl.store(z0_ptr + {c} * HW + pos, z{c}, mask=valid)" for c in range(3)],
    ]
    conv = [
        "@triton.jit",
        "def conv_kernel(src_ptr, wb_ptr, dst_ptr, H, W, BLOCK: tl.constexpr):",
        "    HW = H * W",
        prologue + "    y = pos // W\n    x = pos % W",
        _conv_source("src_ptr", "d", "wb_ptr", mo),
        *[f"    tl.store(dst_ptr + {c} * HW + pos, d{c}, mask=valid)" for c in range(mo)],
    ]
    # Modulation segments, in the order the synthesis concatenates them: o3, o2, o1.
    o3 = [f"o3_{c}" for c in range(mo)]
    o2 = [f"o2_{c}" for c in range(mo)]
    o1 = [f"o1_{c}" for c in range(mo)]
    mods2, mods3 = o3 + o2, o3 + o2 + o1
    l1_mod = [f"    s{j} = {_terms([(v, f'm1_ptr + {i * n1 + j}') for i, v in enumerate(mods2)])}"
              for j in range(n1)]
    z_mod = [f"    z{c} = tl.load(z0_ptr + {c} * HW + pos, mask=valid, other=0.0) + "
             f"{_terms([(v, f'm3_ptr + {i * 3 + c}') for i, v in enumerate(mods3)])}" for c in range(3)]
    l2_stride = n1 + 3 * mo + 3
    l2_terms = _terms([(f"h{j}", f"r + {j}") for j in range(n1)]
                      + [(v, f"r + {n1 + i}") for i, v in enumerate(mods3)])
    fused = [
        "@triton.jit",
        "def fused_kernel(o1_ptr, o2_ptr, z0_ptr, conv3_ptr, m1_ptr, m3_ptr, l0_ptr, l2_ptr, out_ptr,",
        "                 H, W, N0, N2, BLOCK: tl.constexpr):",
        "    HW = H * W",
        prologue + "    y = pos // W\n    x = pos % W",
        *[f"    o2_{c} = tl.load(o2_ptr + {c} * HW + pos, mask=valid, other=0.0)" for c in range(mo)],
        *[f"    o1_{c} = tl.load(o1_ptr + {c} * HW + pos, mask=valid, other=0.0)" for c in range(mo)],
        _conv_source("o2_ptr", "o3_", "conv3_ptr", mo),
        # pixel centres in [-1, 1]; a side of length 1 has coordinate 0
        "    cx = tl.where(W > 1, (2 * x - (W - 1)).to(tl.float32) / tl.maximum(W - 1, 1).to(tl.float32), 0.0)",
        "    cy = tl.where(H > 1, (2 * y - (H - 1)).to(tl.float32) / tl.maximum(H - 1, 1).to(tl.float32), 0.0)",
        *l1_mod,
        # layer 0 (rows [w_x, w_y, M1 column]) streamed into layer 1's sums
        "    for k in range(N0):",
        f"        r = l0_ptr + k * {n1 + 2}",
        "        t = _gelu(cx * tl.load(r) + cy * tl.load(r + 1))",
        *[f"        s{j} += t * tl.load(r + {2 + j})" for j in range(n1)],
        *[f"    h{j} = _gelu(s{j})" for j in range(n1)],
        *z_mod,
        # layer 2 (rows [M2 row over h1, o3, o2, o1, M3 column]) streamed into the output sums
        "    for i in range(N2):",
        f"        r = l2_ptr + i * {l2_stride}",
        f"        t = _gelu({l2_terms})",
        *[f"        z{c} += t * tl.load(r + {n1 + 3 * mo + c})" for c in range(3)],
        *[f"    q{c} = tl.floor(tl.minimum(tl.maximum(1.0 / (1.0 + tl.exp(-2.0 * "
          f"tl.minimum(tl.maximum(z{c}, -15.0), 15.0))), 0.0), 1.0) * 255.0 + 0.5).to(tl.uint8)"
          for c in range(3)],
        *[f"    tl.store(out_ptr + pos * 3 + {c}, q{c}, mask=valid)" for c in range(3)],
    ]
    return "\n\n\n".join("\n".join(k) for k in (head, conv, fused)) + "\n"


@functools.lru_cache(maxsize=None)
def kernels(n_latents: int, mod_out: int, n1: int) -> dict:
    """The three kernels for these variable-list lengths (Triton reads a kernel's source through
    linecache, so the generated module is registered there under a name keyed by its text)."""
    src = _source(n_latents, mod_out, n1)
    name = f"<lotterycodec-synthesis-{hashlib.sha1(src.encode()).hexdigest()[:16]}>"
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    namespace = {"triton": triton, "tl": tl, "_gelu": _gelu}
    exec(compile(src, name, "exec"), namespace)
    return {k: namespace[k] for k in ("head_kernel", "conv_kernel", "fused_kernel")}


@dataclass
class Prepared:
    """One file's parameters, laid out as the rows the kernels stream: made once per image."""
    head_rows: torch.Tensor
    b1: torch.Tensor
    conv2: torch.Tensor
    conv3: torch.Tensor
    m1: torch.Tensor
    m3: torch.Tensor
    l0_rows: torch.Tensor
    l2_rows: torch.Tensor
    mod_width: int
    mod_out: int
    live: tuple[int, int, int]


def _rows(*blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), np.float32)


def prepare(mod: list[np.ndarray], weights: list, device) -> Prepared:
    """mod: w0, b0, w1, b1, w2, b2, w3, b3 (float32); weights: masked synthesis matrices (out, in)."""
    w0, b0, w1, b1, w2, b2, w3, b3 = (np.asarray(a, np.float32) for a in mod)
    mw, mo = w0.shape[0], w1.shape[0]
    m = [w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float32) for w in weights]
    live = live_neurons(m)
    widths = [w.shape[0] for w in m[:-1]]
    l0 = m[0][live[0]]                                            # (n0, 2)
    l1 = m[1][live[1]]
    l1h, l1m = l1[:, live[0]], l1[:, widths[0]:]                  # (n1, n0), (n1, 2 mo)
    l2 = m[2][live[2]]
    l2h, l2m = l2[:, live[1]], l2[:, widths[1]:]                  # (n2, n1), (n2, 3 mo)
    l3h, l3m, l3o0 = (m[3][:, live[2]], m[3][:, widths[2]:widths[2] + 3 * mo], m[3][:, widths[2] + 3 * mo:])
    conv = [_rows(w.reshape(mo, mo * 9), b[:, None]) for w, b in ((w2, b2), (w3, b3))]  # (out, in*9 + 1)
    as_dev = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32).ravel()).to(device)  # noqa: E731
    return Prepared(
        head_rows=as_dev(_rows(w0, b0[:, None], w1.T, l3o0.T)), b1=as_dev(b1),
        conv2=as_dev(conv[0]), conv3=as_dev(conv[1]),
        m1=as_dev(l1m.T), m3=as_dev(l3m.T),
        l0_rows=as_dev(_rows(l0, l1h.T)), l2_rows=as_dev(_rows(l2h, l2m, l3h.T)),
        mod_width=mw, mod_out=mo, live=tuple(len(a) for a in live))


def run(up: torch.Tensor, p: Prepared, block: int = BLOCK, num_warps: int = NUM_WARPS,
        times: dict | None = None) -> torch.Tensor:
    """up: (L, H, W) float32 on the device -> (H, W, 3) uint8. times: when a dict, gets the
    "modulation" (head and conv passes) and "synthesis" (the fused pass, o3 included) seconds,
    synchronising between them."""
    L, H, W = up.shape
    n0, n1, n2 = p.live
    k = kernels(L, p.mod_out, n1)
    up = up.contiguous()
    o1 = torch.empty((p.mod_out, H, W), dtype=torch.float32, device=up.device)
    o2 = torch.empty_like(o1)
    z0 = torch.empty((3, H, W), dtype=torch.float32, device=up.device)
    out = torch.empty((H, W, 3), dtype=torch.uint8, device=up.device)
    grid = (triton.cdiv(H * W, block),)
    t0 = time.perf_counter()
    k["head_kernel"][grid](up, p.head_rows, p.b1, o1, z0, H * W, p.mod_width, BLOCK=block, num_warps=num_warps)
    k["conv_kernel"][grid](o1, p.conv2, o2, H, W, BLOCK=block, num_warps=num_warps)
    if times is not None:
        _sync(up.device)
        t1 = time.perf_counter()
        times["modulation"] = t1 - t0
    k["fused_kernel"][grid](o1, o2, z0, p.conv3, p.m1, p.m3, p.l0_rows, p.l2_rows, out,
                            H, W, n0, n2, BLOCK=block, num_warps=num_warps)
    if times is not None:
        _sync(up.device)
        times["synthesis"] = time.perf_counter() - t1
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
