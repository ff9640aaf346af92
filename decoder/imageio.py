"""Reading images to encode, writing decoded ones, and the one PSNR definition."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import MAX_PIXELS, MAX_SIDE


class ImageError(ValueError):
    """An input image the codec cannot take as it is (the message says why and what to do)."""


_LOSSLESS_TO_RGB = {"RGB", "L", "P", "1"}
_ALPHA = {"RGBA", "LA", "PA"}


def load_image(path: str | Path) -> np.ndarray:
    """8-bit RGB (H, W, 3). Gray and palette images become RGB without loss; an alpha
    channel is accepted only when fully opaque; other modes are refused with a reason."""
    from PIL import Image
    try:
        img = Image.open(path)  # reads the header only: the size is checked before any pixel
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise ImageError(f"{path}: declares more pixels than supported ({exc})") from None
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
    w, h = img.size
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE and w * h <= MAX_PIXELS):
        raise ImageError(f"{path}: {w}x{h} is outside the supported size "
                         f"(1..{MAX_SIDE} per side, {MAX_PIXELS} pixels)")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
    mode = img.mode
    if mode in _ALPHA:
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise ImageError(f"{path}: image has transparency (mode {mode}); the format stores "
                             "opaque RGB only — flatten it onto a background first")
        img = img.convert("RGB")
    elif mode in _LOSSLESS_TO_RGB:
        img = img.convert("RGB")
    elif mode.startswith("I;16") or mode in {"I", "F"}:
        raise ImageError(f"{path}: {mode} ({'16-bit' if '16' in mode else '32-bit'}) samples; "
                         "the format stores 8 bits per channel — convert to 8-bit first")
    else:
        raise ImageError(f"{path}: unsupported image mode {mode}; convert to 8-bit RGB first")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{path}: could not obtain RGB samples (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def write_atomically(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole or not at all: a full disk or a size limit leaves the
    previous file (if any) in place and no partial one. Through a symbolic link the file it points
    to is replaced and the link stays; anything else that exists (/dev/null, a FIFO) is written in
    place, since renaming over it would put a regular file where the device or pipe was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # both follow links
        with open(path, "wb") as f:
            f.write(data)
        return
    if path.is_symlink():
        path = path.resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> None:
    """Raise OSError now if ``path`` cannot be written (before minutes of work, not after)."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise OSError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise OSError(f"cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK):  # written through a temporary file beside it
        raise OSError(f"cannot write {path}: folder {folder} is not writable")


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Writes the image in the format its suffix names (atomically, see write_atomically)."""
    import io

    from PIL import Image
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix; use .png, .ppm, .bmp, ...")
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, fmt)
    write_atomically(path, buf.getvalue())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR over all samples of two 8-bit images (100 dB when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / mse) if mse > 0 else 100.0


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The size x size centre of an (H, W, ...) image."""
    h, w = image.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than a {w}x{h} image")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])
