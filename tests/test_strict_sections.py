"""Every coded stream ends where its symbols do (docs/FORMAT.md 5, "Stream end"): junk after a
section, doubled substreams, coded counts without words and forged symbol counts are refused by
the reference and the C++ decoder alike, and quickly."""
import time

import numpy as np
import pytest
from lotterycodec.decoder import reference
from lotterycodec.decoder.config import FormatError
from lotterycodec.decoder.format import read_bitstream, rewrite_bitstream, write_bitstream

try:
    from lotterycodec.decoder.backends import get_backend
    from lotterycodec.decoder import _lotc_cpu  # noqa: F401
    DECODERS = {"reference": reference.decode, "cpu": get_backend("cpu")}
except ImportError:  # the C++ core not built: the reference alone
    DECODERS = {"reference": reference.decode}


JUNK = np.array([0x12345678], dtype=np.uint32)


def _forgeries(data: bytes) -> dict[str, bytes]:
    bs = read_bitstream(data)
    return {
        "networks + one word": rewrite_bitstream(data, networks=bs.networks + JUNK.tobytes()),
        "networks + 4 KiB of zeros": rewrite_bitstream(data, networks=bs.networks + bytes(4096)),
        "networks without its last word": rewrite_bitstream(data, networks=bs.networks[:-8]),
        "mask + one word": rewrite_bitstream(data, mask_words=np.concatenate([bs.mask_words, JUNK])),
        "mask counts, no mask words": rewrite_bitstream(data, mask_words=np.zeros(0, np.uint32)),
        "every substream doubled": rewrite_bitstream(data, latent_words=[np.concatenate([w, w]) for w in bs.latent_words]),
        "one substream + one word": rewrite_bitstream(data, latent_words=[np.concatenate([bs.latent_words[0], JUNK]),
                                                                  *bs.latent_words[1:]]),
        "a seal word changed": rewrite_bitstream(data, latent_words=[
            np.concatenate([bs.latent_words[0][:-1], bs.latent_words[0][-1:] ^ 1]), *bs.latent_words[1:]]),
        "empty substreams": rewrite_bitstream(data, latent_words=[np.zeros(0, np.uint32) for _ in bs.latent_words]),
        "one-word substreams": rewrite_bitstream(data, latent_words=[JUNK for _ in bs.latent_words]),
    }


@pytest.mark.parametrize("backend", sorted(DECODERS))
def test_real_file_decodes(trained, backend):
    DECODERS[backend](trained.data)


@pytest.mark.parametrize("backend", sorted(DECODERS))
def test_streams_must_end_where_their_symbols_do(trained, backend):
    for what, forged in _forgeries(trained.data).items():
        with pytest.raises(FormatError):
            DECODERS[backend](forged)
            pytest.fail(f"{backend} accepted: {what}")


@pytest.mark.parametrize("backend", sorted(DECODERS))
def test_forged_big_image_from_few_words_fails_fast(trained, backend):
    """A 512x512 image whose substreams hold one word each: the latents cannot fit (most
    substreams claim more symbols than a word holds, refused before any allocation), and where
    they could, decoding stops at the first read past a stream's end, not after its last symbol."""
    bs = read_bitstream(trained.data)
    from lotterycodec.decoder.entropy import substream_plan
    n = len(substream_plan(bs.cfg, 512, 512))
    forged = write_bitstream(512, 512, bs.seed, bs.cfg, bs.networks, bs.mask_counts, bs.mask_words,
                             [JUNK] * n)
    assert len(forged) < 4 * n + 2000
    t0 = time.perf_counter()
    with pytest.raises(FormatError):
        DECODERS[backend](forged)
    assert time.perf_counter() - t0 < 5.0


def test_the_callers_pixel_cap_refuses_before_decoding(small_file, tmp_path, capsys):
    """max_pixels (Python) and --max-pixels (CLI): a file declaring more pixels is refused from its
    header on every backend, the output untouched; at exactly its size it decodes."""
    from lotterycodec import LimitError, decode
    from lotterycodec.cli import main
    pixels = 11 * 7
    for backend in DECODERS:
        with pytest.raises(LimitError, match=f"{pixels} pixels, above the caller's limit of {pixels - 1}"):
            decode(small_file, backend=backend, max_pixels=pixels - 1)
        image, _ = decode(small_file, backend=backend, max_pixels=pixels)
        assert image.shape == (7, 11, 3)
    src, out = tmp_path / "s.lotc", tmp_path / "o.png"
    src.write_bytes(small_file)
    assert main(["decode", str(src), "-o", str(out), "--max-pixels", str(pixels - 1)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "above the caller's limit" in err and not out.exists()
    assert main(["decode", str(src), "-o", str(out), "--max-pixels", str(pixels)]) == 0 and out.exists()
