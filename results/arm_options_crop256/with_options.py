"""A file rewritten with the ARM options, coding the same latents with the same distributions: what
the options cost a decoder, apart from what training would make of them.

    python results/arm_options_crop256/with_options.py results/cpu_decoder_kodim14/cpu_full.lotc OUT_DIR

Writes OUT_DIR/NAME_stabiliser.lotc (a stabiliser of zeros: the same mu and scale for every latent,
but the decoder runs it), NAME_residual.lotc (hidden diagonals sent as W - 2^F, so the effective
weights, and everything decoded, are the original's) and NAME_both.lotc; checks that each decodes
to the original's latents and image.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lotterycodec.decoder import reference
from lotterycodec.decoder.entropy import IntArm, encode_latents
from lotterycodec.decoder.format import read_bitstream, read_networks, rewrite_bitstream, write_networks


def with_options(data: bytes, residual: bool, stabiliser: bool) -> bytes:
    bs = read_bitstream(data)
    cfg = bs.cfg.replace(arm_residual=int(residual), arm_stabiliser=int(stabiliser)).validate()
    nets = read_networks(bs.networks, bs.cfg)
    weights = [w.copy() for w in nets.arm.weights]
    biases = [b.copy() for b in nets.arm.biases]
    if residual:
        for w in weights[:-1]:
            w -= np.eye(*w.shape, dtype=np.int64) << cfg.arm_frac_bits
    if stabiliser:
        weights.append(np.zeros((2, cfg.arm_inputs), np.int64))
        biases.append(np.zeros(2, np.int64))
    nets.arm = IntArm.of(weights, biases, cfg)
    grids = reference.decode(data).latents
    return rewrite_bitstream(data, cfg=cfg, networks=write_networks(nets)[0],
                             latent_words=encode_latents(grids, nets.arm, cfg))


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    want = reference.decode(data)
    for name, residual, stabiliser in (("stabiliser", False, True), ("residual", True, False), ("both", True, True)):
        new = with_options(data, residual, stabiliser)
        got = reference.decode(new)
        assert all(np.array_equal(a, b) for a, b in zip(want.latents, got.latents)) and np.array_equal(want.image, got.image)
        path = out / f"{src.stem}_{name}.lotc"
        path.write_bytes(new)
        print(f"{path}: {len(new)} bytes ({len(new) - len(data):+d}), same latents and image")


if __name__ == "__main__":
    main()
