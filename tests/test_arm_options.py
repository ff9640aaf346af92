"""The ARM options of format version 4 (docs/FORMAT.md 6.2): residual hidden layers and the linear
stabiliser. Integer definition, the trainer's float twin, both decoders, refusals."""
import numpy as np
import pytest
import torch
from forging import forge_header

from lotterycodec.decoder import reference
from lotterycodec.decoder.config import ArchConfig, FormatError
from lotterycodec.decoder.entropy import ACT_FRAC, IntArm, check_arm_bounds
from lotterycodec.decoder.format import read_bitstream, rewrite_bitstream
from lotterycodec.decoder.synthetic import random_networks, synthetic_bitstream
from lotterycodec.trainer.model import arm_forward

OPTIONS = [dict(arm_residual=1), dict(arm_stabiliser=1), dict(arm_residual=1, arm_stabiliser=1)]


def _explicit(arm: IntArm, x: np.ndarray) -> np.ndarray:
    """The spec's words, one latent at a time in Python integers: residual as "+ x" after the
    rounding, the stabiliser its own rounded layer."""
    f, half = arm.frac_bits, 1 << (arm.frac_bits - 1)
    pairs = list(zip(arm.weights, arm.biases))
    chain, stab = (pairs[:-1], pairs[-1]) if arm.stabiliser else (pairs, None)
    h = [int(v) for v in x]
    for l, (w, b) in enumerate(chain):
        out = [(sum(int(w[i, j]) * h[j] for j in range(len(h))) + (int(b[i]) << ACT_FRAC) + half) >> f
               for i in range(w.shape[0])]
        if l < len(chain) - 1:
            out = [max(o + (h[i] if arm.residual else 0), 0) for i, o in enumerate(out)]
        h = out
    if stab is not None:
        w, b = stab
        h = [h[i] + ((sum(int(w[i, j]) * int(x[j]) for j in range(len(x))) + (int(b[i]) << ACT_FRAC) + half) >> f)
             for i in range(2)]
    return np.array(h)


@pytest.mark.parametrize("options", OPTIONS)
def test_integer_arm_is_the_spec(options):
    cfg = ArchConfig(arm_context=6, arm_width=6, **options).validate()
    rng = np.random.default_rng(3)
    arm = random_networks(cfg, rng).arm
    assert len(arm.weights) == 3 + cfg.arm_stabiliser and arm.residual == bool(cfg.arm_residual)
    check_arm_bounds(arm, cfg.latent_bound)
    x = rng.integers(-20, 20, size=(50, 6)) << ACT_FRAC
    mu, ls = arm.forward(x)
    want = np.array([_explicit(arm, row) for row in x])
    assert np.array_equal(mu, want[:, 0]) and np.array_equal(ls, want[:, 1])


@pytest.mark.parametrize("options", OPTIONS)
def test_trainer_arm_is_the_decoders_in_floats(options):
    """The trainer's arm_forward on the dequantized integers is the integer ARM up to its roundings."""
    cfg = ArchConfig(arm_context=8, arm_width=8, **options).validate()
    rng = np.random.default_rng(5)
    arm = random_networks(cfg, rng).arm
    x = rng.integers(-10, 10, size=(200, 8))
    mu, ls = arm.forward(x << ACT_FRAC)
    scale = 2.0 ** -cfg.arm_frac_bits
    weights = [torch.tensor(w * scale, dtype=torch.float64)[None] for w in arm.weights]
    biases = [torch.tensor(b * scale, dtype=torch.float64)[None] for b in arm.biases]
    fmu, fls = arm_forward(torch.tensor(x, dtype=torch.float64)[None], weights, biases,
                           bool(cfg.arm_residual), bool(cfg.arm_stabiliser))
    assert np.abs(fmu[0].numpy() - mu / 256).max() < 0.1
    assert np.abs(fls[0].numpy() - ls / 256).max() < 0.1
    # and without the options the same integers mean something else: the options are live
    plain = arm_forward(torch.tensor(x, dtype=torch.float64)[None], weights[:3], biases[:3])[0]
    assert np.abs(plain[0].numpy() - mu / 256).max() > 0.5


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("context,parents", [(8, 0), (16, 0), (6, 2), (3, 0)])
def test_both_decoders_decode_the_options_identically(options, context, parents):
    """Reference and C++ (every kernel table; context 8 takes the C++ small-ARM path, 3 the
    memo's zero-context shortcut often) agree on the latents exactly, on several threads too."""
    pytest.importorskip("lotterycodec.decoder._lotc_cpu")
    from native import cpu, same
    cfg = ArchConfig(n_grids=4, arm_context=context, arm_width=context + parents, arm_parents=parents, mod_width=6,
                     kept_weights=300, **options)
    data = synthetic_bitstream(37, 29, cfg, seed=context * 10 + parents, latent_spread=3.0)
    assert read_bitstream(data).cfg == cfg
    got = same(data)
    other = cpu(data, threads=3)
    assert all(np.array_equal(a, b) for a, b in zip(got.latents, other.latents))


@pytest.mark.parametrize("changes,message", [
    (dict(arm_residual=1, arm_width=9), "arm_residual"),       # hidden width is not the input count
    (dict(arm_residual=1, arm_layers=0), "arm_residual"),      # no hidden layer to add to
    (dict(arm_stabiliser=1, arm_layers=0), "arm_stabiliser"),  # a linear ARM already
    (dict(arm_stabiliser=1, arm_context=0), "arm_stabiliser"),  # nothing to read
])
def test_configurations_without_a_meaning_are_refused(changes, message):
    """One way to write each file: an option that changes nothing is refused by the config, the
    writer and both decoders (a header forged past the writer)."""
    cfg = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=6, kept_weights=200)
    with pytest.raises(FormatError, match=message):
        cfg.replace(**changes).validate()
    base = synthetic_bitstream(13, 11, cfg, seed=4)
    forged = forge_header(base, **changes)
    with pytest.raises(FormatError, match=message):
        reference.decode(forged)
    pytest.importorskip("lotterycodec.decoder._lotc_cpu")
    from native import cpu
    with pytest.raises(Exception, match=message):
        cpu(forged)


def test_residual_diagonal_counts_in_the_overflow_bound():
    """Weights within the plain bound can overflow once the residual's 2^F diagonal is added:
    the bound is checked on the weights the decoder multiplies, by both decoders."""
    cfg = ArchConfig(n_grids=3, arm_context=8, arm_width=8, mod_width=6, kept_weights=200, arm_residual=1)
    nets = random_networks(cfg, np.random.default_rng(1))
    for t in nets.arm.weights + nets.arm.biases:
        t[...] = 0
    # row 0 of layer 0: four weights of 2^15 - 1, so S_0 = 4 (2^15 - 1) 64 2^8 + 2^7 = 2^31 - 65407
    # without the skip; the skip's 2^8 on the diagonal adds 2^22 and passes 2^31.
    nets.arm.weights[0][0, :4] = (1 << 15) - 1
    plain = IntArm.of(nets.arm.weights, nets.arm.biases, cfg.replace(arm_residual=0))
    check_arm_bounds(plain, cfg.latent_bound)
    with pytest.raises(FormatError, match="overflow"):
        check_arm_bounds(nets.arm, cfg.latent_bound)
    from lotterycodec.decoder.format import write_networks
    data = rewrite_bitstream(synthetic_bitstream(13, 11, cfg, seed=4), networks=write_networks(nets)[0])
    with pytest.raises(FormatError, match="overflow"):
        reference.decode(data)
    pytest.importorskip("lotterycodec.decoder._lotc_cpu")
    from native import cpu
    with pytest.raises(Exception, match="overflow"):
        cpu(data)


def test_encode_with_the_options_decodes_on_every_backend():
    """A real (short) encode with both options: the file carries them, reference and C++ agree."""
    from lotterycodec.trainer.encode import encode_array
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:32]
    image = np.clip(np.stack([4 * x + 3 * y, 200 - 5 * y, 90 + 3 * x], -1) + rng.normal(0, 4, (24, 32, 3)),
                    0, 255).astype(np.uint8)
    result = encode_array(image, lmbda=1e-2, preset="fast", steps=40, progress=False,
                          arch={"arm_context": 8, "arm_width": 8, "arm_residual": 1, "arm_stabiliser": 1})
    bs = read_bitstream(result.data)
    assert bs.cfg.arm_residual == 1 and bs.cfg.arm_stabiliser == 1
    ref = reference.decode(result.data)
    pytest.importorskip("lotterycodec.decoder._lotc_cpu")
    from native import same
    same(result.data)
    assert ref.image.shape == image.shape
