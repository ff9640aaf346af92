"""The two user-facing operations, shared by the Python API and the CLI: encode (needs torch) and
decode (the decoder library's)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .decoder.api import decode
from .decoder.imageio import check_writable, load_image, psnr, write_atomically

__all__ = ["encode", "encode_many", "decode"]


def _as_image(source) -> np.ndarray:
    if isinstance(source, (str, Path)):
        return load_image(source)
    image = np.asarray(source)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    return image


def _report(result, image: np.ndarray, output, backend: str) -> dict:
    """Write the file, decode the written bytes and summarize what a receiver gets."""
    if output is not None:
        write_atomically(output, result.data)
    decoded, dec_summary = decode(result.data, backend=backend)
    summary = dict(result.summary)
    summary["psnr"] = psnr(decoded, image)
    summary["bytes_breakdown"] = {**dec_summary["bytes_breakdown"], "network_bits": result.summary["network_bits"]}
    summary["times"]["decode_s"] = dec_summary["times"]["decode_s"]
    summary["decode_backend"] = dec_summary["backend"]
    summary["output"] = str(output) if output is not None else None
    return summary


def encode(source: str | Path | np.ndarray, output: str | Path | None = None, *, lmbda: float = 1e-3,
           kept_ratio: float | None = None, preset: str = "cpu", steps: int | None = None, seed: int = 1,
           device: str = "cpu", progress: bool = False, backend: str = "auto", arch: dict | None = None,
           finetune_steps: int | None = None, threads: int | None = None, seeds: int | None = None) -> dict:
    """Encode an image (path or (H, W, 3) uint8 array) and write the file; the summary reports the
    real size and the PSNR of decoding the written bytes. ``arch`` overrides ArchConfig fields;
    ``threads``: torch threads for training (None: chosen by measuring, which keeps a busy machine
    from stalling it); ``seeds``: candidate seeds trained for the warm-up, the best kept (None: the
    preset's)."""
    from .trainer.encode import encode_array  # torch is needed to encode, never to decode

    if output is not None:
        check_writable(output)  # fail before minutes of training
    image = _as_image(source)
    result = encode_array(image, lmbda=lmbda, kept_ratio=kept_ratio, preset=preset, steps=steps,
                          seed=seed, device=device, arch=arch, finetune_steps=finetune_steps,
                          progress=progress, threads=threads, seeds=seeds)
    return _report(result, image, output, backend)


def encode_many(sources: list[str | Path], out_dir: str | Path, *, batch: int = 8, lmbda: float = 1e-3,
                kept_ratio: float | None = None, preset: str = "cpu", steps: int | None = None, seed: int = 1,
                device: str = "cpu", progress: bool = False, backend: str = "auto", arch: dict | None = None,
                finetune_steps: int | None = None, threads: int | None = None,
                seeds: int | None = None) -> list[dict]:
    """Encode several images, one file each (OUT_DIR/<name>.lotc), trained ``batch`` at a time in
    one batched model (images of one size share a batch). Summaries in input order."""
    from .trainer.encode import encode_arrays

    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    names = [Path(s).stem for s in sources]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"two inputs would write the same file: {', '.join(clashes)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:  # every output checked before minutes of training, not after
        check_writable(out / f"{name}.lotc")
    images = [_as_image(s) for s in sources]  # every input is read (and refused) before any training
    by_size: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(im.shape[:2], []).append(i)
    summaries: list[dict | None] = [None] * len(images)
    for indices in by_size.values():
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            results = encode_arrays([images[i] for i in chunk], [lmbda] * len(chunk), [kept_ratio] * len(chunk),
                                    [seed] * len(chunk), preset, steps, device, arch, finetune_steps, progress,
                                    threads, seeds)
            for i, result in zip(chunk, results):
                summaries[i] = _report(result, images[i], out / f"{names[i]}.lotc", backend)
    return summaries
