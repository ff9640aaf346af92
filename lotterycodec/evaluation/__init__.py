"""`lotterycodec eval`: rate-distortion of every image x lambda against classical codecs, same run.

Our points are real files: each image is encoded at each lambda (resumable: a finished file and
its record are kept and skipped when the settings match), the written file is decoded, and
bpp = 8 x file bytes / pixels, PSNR-RGB and MS-SSIM on the decoded 8-bit image. The classical
codecs (Pillow: JPEG, WebP, native AVIF; pillow-jxl-plugin: JPEG XL) encode the same pixels
(metadata never reaches them: images are rebuilt from arrays) at fixed quality grids. A curve
point is the mean of per-image bpp and the mean of per-image PSNR (and MS-SSIM) at one
lambda or quality. BD-rate: PCHIP of log-rate over PSNR, on the overlapping PSNR range only.

Outputs in OUT: files/ (our bitstreams and their records), per_image.tsv, curves.tsv,
compressai/<curve>.json (CompressAI's format), bd_rate.md / .json, rd.png, summary.json."""
from .run import run

__all__ = ["run"]
