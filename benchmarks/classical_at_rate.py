"""Our file against the classical codecs on the same image: each codec's PSNR at our bpp and its
bpp at our PSNR, interpolated (log-rate) on its own quality grid, measured in this run.

    python benchmarks/classical_at_rate.py IMAGE.png FILE.lotc --json OUT.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lotterycodec.decoder.api import decode
from lotterycodec.decoder.imageio import load_image, psnr
from lotterycodec.evaluation.codecs import CLASSICAL, classical_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("lotc")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    image = load_image(args.image)
    data = Path(args.lotc).read_bytes()
    decoded, _ = decode(data)
    bpp, ours = 8 * len(data) / (image.shape[0] * image.shape[1]), psnr(decoded, image)
    report = {"image": args.image, "file": args.lotc, "bpp": bpp, "psnr": ours, "codecs": {}}
    print(f"ours: {bpp:.4f} bpp, {ours:.2f} dB")
    for codec, (_, _, settings) in CLASSICAL.items():
        pts = sorted((r.bpp, r.psnr_rgb) for r in classical_rows(codec, Path(args.image).stem, image))
        b, p = np.array(pts).T
        at_rate = float(np.interp(np.log(bpp), np.log(b), p))
        at_psnr = float(np.exp(np.interp(ours, p, np.log(b))))
        report["codecs"][codec] = {"settings": settings, "points": pts, "psnr_at_our_bpp": at_rate,
                                   "bpp_at_our_psnr": at_psnr}
        print(f"{codec}: {at_rate:.2f} dB at our bpp ({ours - at_rate:+.2f} dB), {at_psnr:.3f} bpp at our PSNR "
              f"({100 * (bpp / at_psnr - 1):+.1f} % rate)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
