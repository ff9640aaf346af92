"""The main job on the bundled image: encode, decode with every available backend, report.

    python -m lotterycodec.demo [--preset small] [--lmbda 1e-3] [--out DIR]
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np

from .api import decode, encode
from .decoder.backends import available_backends
from .decoder.imageio import load_image, psnr

BUNDLED_IMAGE = Path(__file__).with_name("data") / "kodim23_crop128.png"


def jpeg_at_size(image: np.ndarray, max_bytes: int) -> tuple[int, float, int] | None:
    """Best JPEG (Pillow, 4:2:0, optimized) no larger than max_bytes: (quality, PSNR, bytes)."""
    from PIL import Image
    best = None
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q, optimize=True)
        if buf.tell() > max_bytes:
            break
        buf.seek(0)
        best = (q, psnr(np.asarray(Image.open(buf).convert("RGB")), image), buf.tell())
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=str(BUNDLED_IMAGE))
    p.add_argument("--preset", default="small")
    p.add_argument("--lmbda", type=float, default=1e-3)
    p.add_argument("--out", default=None, help="folder for the .lotc and decoded PNGs (default: temporary)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="lotterycodec-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(args.image)
    h, w = image.shape[:2]
    print(f"encoding {args.image} ({w}x{h}) with preset {args.preset!r}, lambda {args.lmbda}")
    s = encode(image, out / "demo.lotc", lmbda=args.lmbda, preset=args.preset, progress=True)
    m = s["macs_per_pixel"]
    print(f"\nfile {out / 'demo.lotc'}: {s['bytes']} bytes = {s['bpp']:.4f} bpp (real), "
          f"encode {s['times']['encode_s']:.1f} s")
    print(f"MACs/pixel {m['total']:.0f} (ARM {m['arm']:.0f}, upsampling {m['upsampling']:.0f}, "
          f"modulation {m['modulation']:.0f}, synthesis {m['synthesis_kept']:.0f} kept of {m['synthesis_dense']:.0f})")
    b = s["bytes_breakdown"]
    print(f"bytes: header {b['header']}, networks {b['networks']}, mask {b['mask']}, latents {b['latents']}")
    ours = None
    for backend in available_backends():
        decoded, d = decode(out / "demo.lotc", out / f"decoded_{backend}.png", backend=backend)
        ours = psnr(decoded, image) if ours is None else ours
        print(f"decode [{backend}]: PSNR {psnr(decoded, image):.2f} dB, {d['times']['decode_s'] * 1000:.1f} ms")
    jpeg = jpeg_at_size(image, s["bytes"])
    if not jpeg:
        print("JPEG cannot produce a file this small")
        return 0
    q, jp, jb = jpeg
    print(f"JPEG (Pillow, quality {q}, optimized) at {jb} bytes = {8 * jb / (w * h):.4f} bpp: PSNR {jp:.2f} dB")
    verdict = "ahead of" if ours > jp else "behind"
    print(f"\nlotterycodec {ours:.2f} dB at {s['bytes']} bytes, JPEG {jp:.2f} dB at {jb} bytes: "
          f"{ours - jp:+.2f} dB, {verdict} JPEG")
    share = b["networks"] / s["bytes"]
    if share > 0.25:
        # The networks cost about the same whatever the image size, so on a small image they are a
        # large part of the file: say so, whichever way the comparison went.
        print(f"the sent networks are {b['networks']} bytes, {100 * share:.0f} % of this file: a fixed cost "
              f"that weighs most on small images (larger ones spread it over more pixels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
