"""Encode 256x256 centre crops at several lambdas and compare each point with JPEG on the same crop.

    python benchmarks/crop_rd.py DATASET_DIR --images kodim23 --lmbda 4e-3,1e-3,3e-4 \
        --preset cpu --out results/crop256_cpu [--stripe-heights 8,16,32,64,128,0]

Writes OUT/summary.json (every encode summary, JPEG's PSNR at the same bpp, the stripe-height
sweep) and OUT/table.md. bpp is always 8 x file bytes / pixels; PSNR is RGB on the decoded
8-bit file. JPEG: Pillow, 4:2:0, optimize=True, quality 1..100; its PSNR at our bpp is
interpolated linearly in log(bpp) between the two neighbouring qualities.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lotterycodec.api import encode
from lotterycodec.decoder.entropy import decode_latents, encode_latents, substream_plan
from lotterycodec.decoder.format import encode_varint, read_bitstream, read_networks
from lotterycodec.decoder.imageio import center_crop, load_image, psnr


def jpeg_curve(image: np.ndarray) -> list[tuple[float, float]]:
    pixels = image.shape[0] * image.shape[1]
    pts = []
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q, optimize=True, subsampling="4:2:0")
        n = buf.tell()
        buf.seek(0)
        pts.append((8 * n / pixels, psnr(np.asarray(Image.open(buf).convert("RGB")), image)))
    return sorted(pts)


def psnr_at_bpp(curve: list[tuple[float, float]], bpp: float) -> float | None:
    rates = np.log([r for r, _ in curve])
    if not rates[0] <= np.log(bpp) <= rates[-1]:
        return None
    return float(np.interp(np.log(bpp), rates, [p for _, p in curve]))


def stripe_sweep(data: bytes, heights: list[int]) -> dict[str, int]:
    """Latent-section bytes (index included) when the file's latents are re-cut into other stripes.
    Height 0 means no stripes: every grid one substream. The ARM is the file's own."""
    bs = read_bitstream(data)
    nets = read_networks(bs.networks, bs.cfg)
    grids = decode_latents(bs.latent_words, nets.arm, bs.cfg, bs.height, bs.width)
    out = {}
    for s in heights:
        cfg = bs.cfg.replace(stripe_height=s or 65535)
        words = encode_latents(grids, nets.arm, cfg)
        out[str(s)] = sum(4 * w.size + len(encode_varint(w.size)) for w in words)
        out[f"{s}_substreams"] = len(substream_plan(cfg, bs.height, bs.width))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--images", default="kodim23")
    p.add_argument("--lmbda", default="4e-3,1e-3,3e-4")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--stripe-heights", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    heights = [int(x) for x in args.stripe_heights.split(",") if x]
    rows = []
    for name in args.images.split(","):
        image = center_crop(load_image(Path(args.dataset) / f"{name}.png"), args.crop)
        curve = jpeg_curve(image)
        for lmbda in [float(x) for x in args.lmbda.split(",")]:
            path = out / f"{name}_{lmbda:g}.lotc"
            s = encode(image, path, lmbda=lmbda, preset=args.preset, steps=args.steps, progress=False)
            s["image"] = name
            s["jpeg_psnr_at_same_bpp"] = psnr_at_bpp(curve, s["bpp"])
            if heights:
                s["stripe_sweep_latent_bytes"] = stripe_sweep(path.read_bytes(), heights)
            rows.append(s)
            print(json.dumps({k: s[k] for k in ("image", "lmbda", "bpp", "psnr", "jpeg_psnr_at_same_bpp")}),
                  flush=True)
    meta = {"command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version()}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    lines = ["| image | λ | bytes | bpp | PSNR dB | JPEG PSNR @ same bpp | latent bpp (file / training est.) | "
             "header | networks (arm/ups/mod bits) | mask | latent index | latents per substream group | encode s |",
             "|" + "---|" * 13]
    for s in rows:
        b, r = s["bytes_breakdown"], s["rate_estimate"]
        nb = s["network_bits"]
        jp = s["jpeg_psnr_at_same_bpp"]
        lines.append(
            f"| {s['image']} | {s['lmbda']:g} | {s['bytes']} | {s['bpp']:.4f} | {s['psnr']:.2f} | "
            f"{'%.2f' % jp if jp is not None else 'n/a'} | {r['latent_bpp_in_file']:.4f} / "
            f"{r['latent_bpp_training_estimate']:.4f} | {b['header']} | {b['networks']} "
            f"({nb['arm']}/{nb['ups']}/{nb['mod']}) | {b['mask']} | {b['latent_index']} | "
            f"{s['latent_bytes_per_substream_group']} | {s['times']['encode_s']:.0f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
