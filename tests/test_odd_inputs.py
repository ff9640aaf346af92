"""Odd images and sizes: handled, or refused with a clear error."""
import numpy as np
import pytest
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
