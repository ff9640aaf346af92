"""Odd images and sizes: handled, or refused with a clear error."""
import numpy as np
import pytest
from forging import read_fifo_in_background
from PIL import Image

from lotterycodec.decoder import reference
from lotterycodec.cli import main
from lotterycodec.decoder.config import ArchConfig
from lotterycodec.decoder.imageio import ImageError, load_image
from lotterycodec.decoder.synthetic import synthetic_bitstream


def _save(tmp_path, name, img):
    p = tmp_path / name
    img.save(p)
    return p


def test_grayscale_and_palette_become_rgb(tmp_path):
    g = np.arange(35, dtype=np.uint8).reshape(5, 7)
    rgb = load_image(_save(tmp_path, "g.png", Image.fromarray(g, "L")))
    assert rgb.shape == (5, 7, 3) and np.array_equal(rgb[..., 1], g)
    p = Image.fromarray(g, "L").convert("P")
    assert load_image(_save(tmp_path, "p.png", p)).shape == (5, 7, 3)


def test_rgba_opaque_ok_transparent_refused(tmp_path):
    a = np.full((4, 4, 4), 255, dtype=np.uint8)
    assert load_image(_save(tmp_path, "o.png", Image.fromarray(a, "RGBA"))).shape == (4, 4, 3)
    a[0, 0, 3] = 10
    with pytest.raises(ImageError, match="transparency"):
        load_image(_save(tmp_path, "t.png", Image.fromarray(a, "RGBA")))


def test_16_bit_refused_clearly(tmp_path):
    img = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
    path = _save(tmp_path, "16.png", img)
    with pytest.raises(ImageError, match="16-bit"):
        load_image(path)


def test_not_an_image(tmp_path, capsys):
    p = tmp_path / "x.png"
    p.write_bytes(b"not a png at all")
    assert main(["encode", str(p), "-o", str(tmp_path / "x.lotc"), "--steps", "1"]) == 1
    assert "cannot read image" in capsys.readouterr().err


@pytest.mark.parametrize("width,height", [(1, 1), (33, 17), (2, 1360), (1, 2160), (5, 33)])
def test_odd_sizes_decode(width, height):
    """Grids are ceil(H / 2^l) x ceil(W / 2^l): every size works, including 1360 and 2160 rows."""
    cfg = ArchConfig(arm_context=4, arm_width=4, mod_width=4, stripe_height=16, shared_max_pixels=8,
                     kept_weights=200)
    out = reference.decode(synthetic_bitstream(width, height, cfg))
    assert out.image.shape == (height, width, 3)
    assert [g.shape for g in out.latents] == cfg.grid_shapes(height, width)


@pytest.mark.parametrize("width,height", [(1, 1), (33, 17)])
def test_odd_sizes_encode(tmp_path, width, height):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    src = _save(tmp_path, "in.png", Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
    assert main(["encode", str(src), "-o", str(tmp_path / "o.lotc"), "--preset", "fast", "--steps", "5",
                 "--json"]) == 0
    assert reference.decode((tmp_path / "o.lotc").read_bytes()).image.shape == (height, width, 3)


def _png_claiming(tmp_path, width: int, height: int):
    """A tiny real PNG whose header is re-sealed to claim width x height."""
    import struct
    import zlib
    p = _save(tmp_path, "small.png", Image.fromarray(np.zeros((2, 2, 3), np.uint8)))
    data = bytearray(p.read_bytes())
    ihdr = data[12:29]  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    bomb = tmp_path / f"claims_{width}x{height}.png"
    bomb.write_bytes(bytes(data))
    return bomb


@pytest.mark.parametrize("side", [16384 + 1, 20000, 60000])
def test_size_bombs_refused_from_the_header(tmp_path, capsys, side):
    """Refused before a pixel is decoded: beyond the format's sides, and beyond Pillow's own
    decompression-bomb limit (an error, not a traceback)."""
    bomb = _png_claiming(tmp_path, side, side)
    with pytest.raises(ImageError, match="supported"):
        load_image(bomb)
    assert main(["encode", str(bomb), "-o", str(tmp_path / "o.lotc"), "--preset", "fast"]) != 0
    err = capsys.readouterr().err
    assert "supported" in err and "Traceback" not in err
    assert not (tmp_path / "o.lotc").exists()


def test_training_that_cannot_fit_in_memory_is_refused_before_it_starts(monkeypatch):
    pytest.importorskip("torch")
    from lotterycodec.trainer import encode
    monkeypatch.setattr(encode, "available_memory", lambda: 24 << 30)
    with pytest.raises(MemoryError, match="GiB"):
        encode.check_training_memory(8192 * 8192)
    encode.check_training_memory(768 * 512)  # a Kodak image fits


def test_an_unwritable_output_is_refused_before_training(tmp_path, capsys, bundled_image):
    import os
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    src = _save(tmp_path, "i.png", Image.fromarray(bundled_image[:16, :16]))
    assert main(["encode", str(src), "-o", str(folder / "o.lotc"), "--steps", "100000"]) != 0
    assert "not writable" in capsys.readouterr().err


def test_many_outputs_are_checked_before_training(tmp_path, capsys, bundled_image):
    """Several inputs: an output that cannot be written (here a folder in its place, which root
    cannot write either) is refused before any training (100 000 steps would take hours)."""
    a = _save(tmp_path, "a.png", Image.fromarray(bundled_image[:16, :16]))
    b = _save(tmp_path, "b.png", Image.fromarray(bundled_image[16:32, :16]))
    out = tmp_path / "out"
    (out / "b.lotc").mkdir(parents=True)
    assert main(["encode", str(a), str(b), "-o", str(out), "--steps", "100000"]) != 0
    assert "is a folder" in capsys.readouterr().err
    assert not (out / "a.lotc").exists()


def _limited_file_size():
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_full_disk_leaves_the_previous_output(tmp_path):
    """With a 4 KiB file-size limit standing in for a full disk, decode fails with a message and
    the previous output is left whole (no partial file beside it)."""
    import subprocess
    import sys
    cfg = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=8, stripe_height=4, shared_max_pixels=16,
                     kept_weights=300)
    src = tmp_path / "s.lotc"
    src.write_bytes(synthetic_bitstream(64, 64, cfg, seed=3))  # 12 KiB as a PPM
    out = tmp_path / "o.ppm"
    out.write_bytes(b"previous")
    run = subprocess.run([sys.executable, "-m", "lotterycodec", "decode", str(src), str(out)],
                         preexec_fn=_limited_file_size, capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.ppm", "s.lotc"]


def test_writing_to_a_pipe_or_through_a_link_keeps_it(tmp_path):
    """An output that exists and is not a regular file (a FIFO here; /dev/null alike) is written in
    place, never renamed over (that would put a regular file where /dev/null was); through a
    symbolic link the file it points to is replaced and the link stays."""
    import os
    import stat
    from lotterycodec.decoder.imageio import write_atomically
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t, got = read_fifo_in_background(fifo)
    write_atomically(fifo, b"through the pipe")
    t.join(10)
    assert got["bytes"] == b"through the pipe" and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real, link = tmp_path / "real.lotc", tmp_path / "link.lotc"
    real.write_bytes(b"old")
    link.symlink_to(real)
    write_atomically(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.lotc", "pipe", "real.lotc"]
