"""Writes the seed corpus of the fuzz target (csrc/fuzz/corpus): small valid files of several
configurations and sizes (the current version, and versions 2 and 3), and the hostile shapes every decoder must refuse (junk after a
section, doubled or empty substreams, a coarse step, truncations, resealed byte flips).

    python csrc/fuzz/make_corpus.py      # from the repository root; rewrites the folder

libFuzzer adds what it finds to the folder it is given; commit finds that reached new code.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from lotterycodec.decoder.config import ArchConfig
from lotterycodec.decoder.format import read_bitstream, rewrite_bitstream
from lotterycodec.decoder.synthetic import synthetic_bitstream

OUT = Path(__file__).with_name("corpus")


def reseal(data: bytes) -> bytes:
    b = bytearray(data)
    h = b[5]
    if 10 <= h <= len(b) - 4:
        struct.pack_into("<I", b, h - 4, zlib.crc32(bytes(b[:h - 4])))
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[h:-4])))
    return bytes(b)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    small = dict(stripe_height=4, shared_max_pixels=16)
    valid = {
        "tiny_1x1": synthetic_bitstream(1, 1, ArchConfig(arm_context=8, arm_width=8, kept_weights=300, **small)),
        "odd_45x23": synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, kept_weights=900, **small)),
        "default_32x24": synthetic_bitstream(32, 24, ArchConfig(kept_weights=1206, **small), seed=7),
        "no_context_9x7": synthetic_bitstream(9, 7, ArchConfig(arm_context=0, ups_kernel_size=12, kept_weights=500,
                                                               **small)),
        "no_hidden_2x40": synthetic_bitstream(2, 40, ArchConfig(arm_layers=0, kept_weights=700, **small)),
        "wide_arm_17x33": synthetic_bitstream(17, 33, ArchConfig(arm_context=32, arm_width=64, kept_weights=1000,
                                                                 **small)),
        # version 3: the ARM's inputs from the coarser grid (every offset; one, with a wide context)
        "parents_45x23": synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, kept_weights=900,
                                                                arm_parents=9, **small), seed=3),
        "parents_wide_33x17": synthetic_bitstream(33, 17, ArchConfig(arm_context=32, arm_width=16, kept_weights=900,
                                                                     arm_parents=1, **small), seed=4),
        # the ARM options: residual hidden layers and the stabiliser (the small-ARM path; with parents)
        "arm_options_45x23": synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, kept_weights=900,
                                                                    arm_residual=1, arm_stabiliser=1, **small), seed=5),
        "arm_options_parents_33x17": synthetic_bitstream(33, 17, ArchConfig(
            arm_context=12, arm_width=16, kept_weights=900, arm_parents=4, arm_residual=1, arm_stabiliser=1, **small),
            seed=6),
        # the older headers (every config field listed) that decoders keep reading
        "v2_odd_45x23": synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, kept_weights=900, **small),
                                            version=2),
        "v3_parents_45x23": synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, kept_weights=900,
                                                                   arm_parents=9, **small), seed=3, version=3),
    }
    files = dict(valid)
    base = valid["odd_45x23"]
    bs = read_bitstream(base)
    junk = np.array([0x12345678], np.uint32)
    files.update({
        "networks_junk_word": rewrite_bitstream(base, networks=bs.networks + junk.tobytes()),
        "mask_junk_word": rewrite_bitstream(base, mask_words=np.concatenate([bs.mask_words, junk])),
        "substreams_doubled": rewrite_bitstream(base, latent_words=[np.concatenate([w, w]) for w in bs.latent_words]),
        "substreams_empty": rewrite_bitstream(base, latent_words=[np.zeros(0, np.uint32) for _ in bs.latent_words]),
        "mod_step_0": rewrite_bitstream(base, cfg=bs.cfg.replace(mod_weight_step_exp=0, mod_bias_step_exp=0)),
        "truncated": base[:len(base) // 2],
        "trailing_byte": base + b"\0",
    })
    rng = np.random.default_rng(0)
    for k in range(12):  # resealed byte changes: past the CRCs into the parsers and the coder
        bad = bytearray(base)
        for j in rng.integers(6, len(bad) - 4, 3):
            bad[int(j)] = int(rng.integers(0, 256))
        files[f"resealed_{k:02d}"] = reseal(bytes(bad))
    rng = np.random.default_rng(3)
    for k in range(6):  # the same with parent inputs: their buffers and the threads' wait
        bad = bytearray(valid["parents_45x23"])
        for j in rng.integers(6, len(bad) - 4, 3):
            bad[int(j)] = int(rng.integers(0, 256))
        files[f"parents_resealed_{k:02d}"] = reseal(bytes(bad))
    rng = np.random.default_rng(7)
    for k in range(4):  # the same with the ARM options
        bad = bytearray(valid["arm_options_45x23"])
        for j in rng.integers(6, len(bad) - 4, 3):
            bad[int(j)] = int(rng.integers(0, 256))
        files[f"arm_options_resealed_{k:02d}"] = reseal(bytes(bad))
    rng = np.random.default_rng(5)
    for k in range(4):  # and in the version 2 header's fields
        bad = bytearray(valid["v2_odd_45x23"])
        for j in rng.integers(6, 40, 2):
            bad[int(j)] = int(rng.integers(0, 256))
        files[f"v2_resealed_{k:02d}"] = reseal(bytes(bad))
    for name, data in files.items():
        (OUT / f"{name}.lotc").write_bytes(data)
    print(f"{len(files)} files in {OUT}")


if __name__ == "__main__":
    main()
