"""A ready decode-benchmark set: encode every image of a folder once, then derive kept-ratio
variants by re-thresholding the same trained mask scores (same latents and networks, so only
the synthesis and its MACs change).

    python benchmarks/make_bench_set.py ../shared/data/kodak --lmbda 1e-3 --preset cpu \
        --kept-ratios 0.3,0.5,0.7,0.9 --out bench_set [--steps N] [--crop N] [--images a,b] \
        [--arch FIELD=INT ...]

Writes OUT/<image>_k<ratio>.lotc and OUT/settings.json (every setting, per-file bpp and PSNR of
the trained ratio). Then: lotterycodec bench OUT/*.lotc --plot latency.png --tsv latency.tsv
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from lotterycodec.decoder.imageio import center_crop, load_image, psnr
from lotterycodec.decoder.reference import decode
from lotterycodec.trainer.encode import encode_array


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--lmbda", type=float, default=1e-3)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--train-kept-ratio", type=float, default=0.7)
    p.add_argument("--kept-ratios", default="0.3,0.5,0.7,0.9")
    p.add_argument("--crop", type=int, default=0, help="centre crop size (0: whole image)")
    p.add_argument("--images", default="", help="comma list of names (default: every PNG)")
    p.add_argument("--arch", nargs="*", default=[], metavar="FIELD=INT",
                   help="architecture fields overriding the preset's (e.g. arm_context=8)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.images.split(",") if args.images else sorted(x.stem for x in Path(args.dataset).glob("*.png"))
    ratios = [float(r) for r in args.kept_ratios.split(",")]
    arch = {k: int(v) for k, v in (item.split("=", 1) for item in args.arch)}
    files = []
    for name in names:
        image = load_image(Path(args.dataset) / f"{name}.png")
        if args.crop:
            image = center_crop(image, args.crop)
        result = encode_array(image, lmbda=args.lmbda, kept_ratio=args.train_kept_ratio, preset=args.preset,
                              steps=args.steps, arch=arch, progress=False)
        for ratio in ratios:
            data = result.data if ratio == args.train_kept_ratio else result.with_kept_ratio(ratio)
            path = out / f"{name}_k{ratio:g}.lotc"
            path.write_bytes(data)
            files.append({"file": path.name, "image": name, "kept_ratio": ratio,
                          "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                          "psnr": psnr(decode(data).image, image)})
            print(json.dumps(files[-1]), flush=True)
    settings = {"command": " ".join(["make_bench_set.py"] + (argv or sys.argv[1:])),
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "lmbda": args.lmbda, "preset": args.preset,
                "steps": args.steps, "arch": arch, "train_kept_ratio": args.train_kept_ratio, "kept_ratios": ratios,
                "crop": args.crop, "files": files}
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
