"""Encode -> bytes -> decode, through the API and the CLI; trainer and reference agree."""
import json

import numpy as np
import pytest

from lotterycodec.decoder import reference
from lotterycodec.cli import main
from lotterycodec.decoder.format import read_bitstream
from lotterycodec.decoder.imageio import psnr

torch = pytest.importorskip("torch")


def test_trainer_and_reference_compute_the_same(trained):
    from lotterycodec.trainer.encode import model_image
    decoded = reference.decode(trained.data)
    for a, b in zip(trained.latents, decoded.latents):
        assert np.array_equal(a, b)  # latents: exactly
    diff = np.abs(model_image(trained.model).astype(int) - decoded.image.astype(int))
    assert diff.max() <= 1  # image: within one 8-bit level


def test_summary_reports_the_real_file(trained, small_image):
    s = trained.summary
    assert s["bytes"] == len(trained.data)
    assert s["bpp"] == pytest.approx(8 * len(trained.data) / small_image[..., 0].size)
    b = reference.decode(trained.data).bitstream.section_bytes
    assert sum(b.values()) == len(trained.data)


def test_api_encode_decode_files(tmp_path, small_image):
    import lotterycodec
    out = tmp_path / "x.lotc"
    s = lotterycodec.encode(small_image, out, lmbda=2e-3, preset="fast", steps=30, seed=3)
    assert out.stat().st_size == s["bytes"]
    assert s["bpp"] == pytest.approx(8 * s["bytes"] / (32 * 32))
    image, info = lotterycodec.decode(out, tmp_path / "x.png")
    assert s["psnr"] == pytest.approx(psnr(image, small_image), abs=1e-9)
    assert (tmp_path / "x.png").exists() and info["width"] == 32


def test_cli_encode_decode_json(tmp_path, capsys):
    from PIL import Image
    from lotterycodec.demo import BUNDLED_IMAGE as BUNDLED
    src = tmp_path / "in.png"
    Image.open(BUNDLED).crop((0, 0, 24, 20)).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.lotc"), "--preset", "fast", "--steps", "20",
                 "--json"]) == 0
    enc = json.loads(capsys.readouterr().out)
    assert enc["bytes"] == (tmp_path / "a.lotc").stat().st_size
    for key in ("bpp", "psnr", "bytes_breakdown", "macs_per_pixel", "times", "rate_estimate"):
        assert key in enc
    assert main(["decode", str(tmp_path / "a.lotc"), "-o", str(tmp_path / "a.png"), "--json"]) == 0
    dec = json.loads(capsys.readouterr().out)
    from lotterycodec.decoder.imageio import load_image
    assert enc["psnr"] == pytest.approx(psnr(load_image(tmp_path / "a.png"), load_image(src)), abs=1e-9)
    assert dec["bpp"] == pytest.approx(enc["bpp"])


def test_cli_errors_are_one_line(tmp_path, capsys, trained):
    bad = tmp_path / "bad.lotc"
    bad.write_bytes(trained.data[:-3])
    assert main(["decode", str(bad), "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()
    assert main(["decode", str(tmp_path / "missing.lotc"), "-o", str(tmp_path / "o.png")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_cuda_asked_without_cuda_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from lotterycodec.demo import BUNDLED_IMAGE as BUNDLED
    assert main(["encode", str(BUNDLED), "-o", str(tmp_path / "a.lotc"), "--device", "cuda", "--steps", "1"]) == 1
    assert "CUDA" in capsys.readouterr().err


def test_unwritable_output_fails_before_training(tmp_path, capsys):
    import time
    from lotterycodec.demo import BUNDLED_IMAGE as BUNDLED
    t0 = time.perf_counter()
    assert main(["encode", str(BUNDLED), "-o", str(tmp_path / "no" / "such" / "dir.lotc")]) == 1
    assert time.perf_counter() - t0 < 10  # the cpu preset would train for minutes
    assert "does not exist" in capsys.readouterr().err


def test_api_rejects_non_rgb8_arrays():
    import lotterycodec
    with pytest.raises(ValueError, match="uint8"):
        lotterycodec.encode(np.zeros((8, 8, 3), dtype=np.float32), steps=1)
    with pytest.raises(ValueError, match="uint8"):
        lotterycodec.encode(np.zeros((8, 8), dtype=np.uint8), steps=1)


def test_parent_inputs_train_encode_and_decode(small_image):
    """arm_parents: the trainer's hard forward and the reference decoder compute the same (latents
    exactly, image within a level), the file is version 4, and the C++ core decodes the same latents."""
    from lotterycodec.decoder.backends import available_backends, get_backend
    from lotterycodec.trainer.encode import encode_array, model_image
    result = encode_array(small_image, lmbda=1e-3, preset="fast", steps=30, seed=3, progress=False, threads=1,
                          arch=dict(stripe_height=8, shared_max_pixels=64, arm_parents=5))
    assert result.data[4] == 4
    decoded = reference.decode(result.data)
    assert all(np.array_equal(a, b) for a, b in zip(result.latents, decoded.latents))
    assert np.abs(model_image(result.model).astype(int) - decoded.image.astype(int)).max() <= 1
    if "cpu" in available_backends():
        got = get_backend("cpu")(result.data)
        assert all(np.array_equal(a, b) for a, b in zip(decoded.latents, got.latents))


def test_small_images_are_one_substream_unless_the_caller_sets_substreams(small_image):
    """Up to 256x256 pixels an image's latents are one substream (every grid shared): the file holds one
    substream and decodes on every backend; the caller's substream fields win; larger images keep the
    default stripes, which let a decoder use threads."""
    from lotterycodec.decoder.backends import available_backends, get_backend
    from lotterycodec.trainer.encode import encode_array
    from lotterycodec.trainer.presets import substream_arch
    one = encode_array(small_image, lmbda=1e-3, preset="fast", steps=3, seed=3, progress=False, threads=1)
    bs = read_bitstream(one.data)
    assert bs.cfg.shared_max_pixels == 32 * 32 and len(bs.latent_words) == 1
    for backend in available_backends():
        got = get_backend(backend)(one.data)
        assert all(np.array_equal(a, b) for a, b in zip(one.latents, got.latents))
    striped = encode_array(small_image, lmbda=1e-3, preset="fast", steps=3, seed=3, progress=False, threads=1,
                           arch=dict(stripe_height=8, shared_max_pixels=64))
    bs = read_bitstream(striped.data)
    assert bs.cfg.shared_max_pixels == 64 and len(bs.latent_words) == 1 + 4 + 2  # shared, 4 + 2 stripes
    assert substream_arch(256, 256, {}) == {"shared_max_pixels": 65536}
    assert substream_arch(257, 256, {}) == substream_arch(64, 64, {"shared_max_pixels": 16}) == {}
