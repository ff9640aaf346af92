"""C++ decoder (csrc/): the pybind11 module and the standalone executable against the reference."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from forging import reseal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lotterycodec.decoder import reference
from lotterycodec.decoder.backends import get_backend
from lotterycodec.decoder.config import CONFIG_FIELDS, DECODE_STAGES, ArchConfig, FormatError
from lotterycodec.decoder.synthetic import synthetic_bitstream

cpu_module = pytest.importorskip("lotterycodec.decoder._lotc_cpu")
cpu = get_backend("cpu")
cpu_scalar = get_backend("cpu-scalar")
ROOT = Path(__file__).resolve().parents[1]


KERNELS = list(cpu_module.available_kernels())  # e.g. avx512, avx2, scalar: each is checked


def _same(data: bytes):
    """Every kernel table this CPU runs (scalar included) against the reference: latents exactly,
    image to one level."""
    ref = reference.decode(data)
    for kernels in KERNELS:
        got = cpu(data, kernels=kernels)
        assert all(np.array_equal(a, b) for a, b in zip(ref.latents, got.latents)), kernels
        assert np.abs(ref.image.astype(int) - got.image.astype(int)).max() <= 1, kernels
    return got


def test_config_fields_are_the_python_ones():
    assert cpu_module.config_fields() == [(f.name, f.lo, f.hi) for f in CONFIG_FIELDS]


def test_kernel_tables():
    assert cpu_module.kernels("scalar") == "scalar" and KERNELS[-1] == "scalar"
    assert cpu_module.kernels() == KERNELS[0]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if os.uname().machine == "x86_64" and " avx2 " in flags and " fma " in flags:
        assert "avx2" in KERNELS
    if " avx512f " in flags:
        assert KERNELS[0] == "avx512"
    with pytest.raises(ValueError, match="not available"):
        cpu(b"", kernels="sse9")


def test_trained_file_matches_reference(trained):
    _same(trained.data)


@pytest.mark.parametrize("exp", [0, 2])
def test_large_activations_stay_within_one_level(trained, exp):
    """A valid file need not be a trained one: the same integers read with a coarse modulation
    step (2^-exp) drive the activations into the hundreds, where an approximate reciprocal in
    a kernel table's GELU drifts by several levels (the AVX-512 table's 14-bit estimate did: 7).
    Every table this CPU runs must stay within FORMAT §8's one level."""
    from lotterycodec.decoder.format import read_bitstream, write_bitstream
    bs = read_bitstream(trained.data)
    cfg = bs.cfg.replace(mod_weight_step_exp=exp, mod_bias_step_exp=exp)
    _same(write_bitstream(bs.width, bs.height, bs.seed, cfg, bs.networks, bs.mask_counts, bs.mask_words,
                          bs.latent_words))


@pytest.mark.parametrize("width,height,arch", [(1, 1, {}), (33, 17, {"stripe_height": 4}), (2, 1360, {}),
                                               (1, 2160, {"arm_layers": 0}), (9, 7, {"ups_kernel_size": 12,
                                                                                    "arm_context": 0})])
def test_odd_sizes_and_configs(width, height, arch):
    cfg = ArchConfig(arm_context=arch.pop("arm_context", 6), arm_width=5, mod_width=6, kept_weights=300, **arch)
    _same(synthetic_bitstream(width, height, cfg, seed=width * 7 + height))


@pytest.mark.parametrize("context", [1, 8, 9, 16, 17])
def test_arm_memo_at_the_alphabet_edges(context):
    """Contexts of at most 16 latents go through the ARM memo (latents packed as bytes): latents
    at -A and A-1 with A = 64, the widest alphabet, must still decode exactly; 17 takes the plain path."""
    cfg = ArchConfig(arm_context=context, arm_width=8, latent_bound=64, mod_width=6, kept_weights=300)
    data = synthetic_bitstream(40, 30, cfg, seed=context, latent_spread=40.0)
    got = _same(data)
    assert any(g.min() == -64 for g in got.latents) and any(g.max() == 63 for g in got.latents)


def test_register_arm_takes_32_bit_products_exactly():
    """The register ARM (contexts and layers of at most 8) multiplies in int16 pairs only while the
    inputs fit: hidden activations past 2^15, and a weight of 2^15 (no int16 copy at all), take its
    32-bit products. Latents must still match the reference exactly."""
    from lotterycodec.decoder.entropy import (
        IntArm,
        check_arm_bounds,
        encode_latents,
        encode_mask,
    )
    from lotterycodec.decoder.format import Networks, write_bitstream, write_networks
    from lotterycodec.decoder.synthetic import random_masks, random_networks
    cfg = ArchConfig(arm_context=8, arm_width=8, latent_bound=64, mod_width=6, kept_weights=300).validate()
    rng = np.random.default_rng(11)
    nets = random_networks(cfg, rng)
    weights = [w.copy() for w in nets.arm.weights]
    weights[0][:] = rng.integers(-2000, 2001, size=weights[0].shape)  # hidden inputs up to ~2^21
    weights[0][0, 0] = 1 << 15  # beyond int16: this layer has no pairs
    weights[1][:] = rng.integers(-30, 31, size=weights[1].shape)
    arm = IntArm(weights, [b.copy() for b in nets.arm.biases], cfg.arm_frac_bits)
    check_arm_bounds(arm, cfg.latent_bound)
    nets = Networks(arm, nets.ups_kernel, nets.mod)
    grids = [np.clip(np.round(rng.laplace(0, 20.0, size=s)), -64, 63).astype(np.int64)
             for s in cfg.grid_shapes(24, 32)]
    net_bytes, _ = write_networks(nets)
    counts, mask_words = encode_mask(random_masks(cfg, rng))
    data = write_bitstream(32, 24, 3, cfg, net_bytes, counts, mask_words, encode_latents(grids, arm, cfg))
    _same(data)


def test_synthesis_neuron_kinds_decode_exactly():
    """The packing drops dead hidden neurons and splits layer 0 into neurons reading both
    coordinates, x alone (once per column) and y alone (once per row): a mask with all of these."""
    cfg = ArchConfig(arm_context=4, arm_width=4, mod_width=6, kept_weights=260)
    for seed in range(20):
        data = synthetic_bitstream(37, 29, cfg, seed=seed)
        w = reference.masked_weights(reference.read_bitstream(data))
        kept0 = w[0] != 0
        kinds = {(bool(x), bool(y)) for x, y in kept0}
        dead = (~(w[1][:, :w[0].shape[0]] != 0).any(axis=0)) & kept0.any(axis=1)  # fed but never read
        if {(True, True), (True, False), (False, True)} <= kinds and dead.any():
            break
    else:
        pytest.fail("no seed gave every kind of layer-0 neuron")
    _same(data)


@pytest.fixture(scope="module")
def small_file():
    return synthetic_bitstream(11, 7, ArchConfig(n_grids=3, arm_context=4, arm_width=4, mod_width=8,
                                                 stripe_height=2, shared_max_pixels=10, kept_weights=250))


def test_truncation_and_byte_flips_are_errors(small_file):
    for n in range(len(small_file)):
        with pytest.raises(FormatError):
            cpu(small_file[:n])
    for i in range(len(small_file)):
        bad = bytearray(small_file)
        bad[i] ^= 0xA5
        with pytest.raises(FormatError):
            cpu(bytes(bad))
    with pytest.raises(FormatError):
        cpu(small_file + b"x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_resealed_mutations_agree_with_reference(small_file, data):
    """Behind valid CRCs: the C++ decoder fails exactly when the reference does, else agrees."""
    bad = bytearray(small_file)
    for _ in range(data.draw(st.integers(1, 4))):
        bad[data.draw(st.integers(0, len(bad) - 5))] = data.draw(st.integers(0, 255))
    forged = reseal(bad)
    try:
        ref = reference.decode(forged)
    except FormatError:
        with pytest.raises(FormatError):
            cpu(forged)
        return
    got = cpu(forged)
    assert all(np.array_equal(a, b) for a, b in zip(ref.latents, got.latents))


@pytest.fixture(scope="module")
def executable(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = tmp_path_factory.mktemp("build")
    flags = os.environ.get("LOTC_TEST_CMAKE_FLAGS", "")
    subprocess.run(["cmake", "-S", str(ROOT / "csrc"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    *flags.split()], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return build / "lotterycodec-dec"


@pytest.mark.slow
def test_executable_gives_the_module_bytes(executable, trained, tmp_path):
    src = tmp_path / "t.lotc"
    src.write_bytes(trained.data)
    out = subprocess.run([str(executable), str(src), str(tmp_path / "t.ppm"), "--time"],
                         capture_output=True, text=True, check=True)
    words = out.stdout.split()  # the stages as every backend names them, then "all"
    assert words[0] == "time:" and words[1:13:2] == [*DECODE_STAGES, "all"]
    ppm = (tmp_path / "t.ppm").read_bytes()
    header = b"P6\n32 32\n255\n"
    assert ppm.startswith(header)
    assert np.array_equal(np.frombuffer(ppm[len(header):], np.uint8).reshape(32, 32, 3), cpu(trained.data).image)


@pytest.mark.slow
def test_executable_hostile_input(executable, small_file, tmp_path):
    cases = [small_file[:n] for n in range(0, len(small_file), 7)] + [b"LOTC\x03" + small_file[5:], small_file + b"!"]
    for i, data in enumerate(cases):
        src = tmp_path / f"h{i}.lotc"
        src.write_bytes(data)
        out = subprocess.run([str(executable), str(src), str(tmp_path / "o.ppm")], capture_output=True, text=True)
        assert out.returncode == 1, data[:8]
        assert out.stderr.startswith("lotterycodec-dec: error:") and out.stderr.count("\n") == 1


def _run_executable(command, data: bytes, tmp_path, *flags):
    """Decodes data with a built executable; returns (process, image or None, latents or None)."""
    src, ppm, lat = tmp_path / "in.lotc", tmp_path / "out.ppm", tmp_path / "out.lat"
    src.write_bytes(data)
    ppm.unlink(missing_ok=True)
    out = subprocess.run([*command, str(src), str(ppm), "--latents", str(lat), *flags], capture_output=True, text=True)
    if out.returncode:
        return out, None, None
    raw = ppm.read_bytes()
    _, size, _, pixels = raw.split(b"\n", 3)
    width, height = map(int, size.split())
    image = np.frombuffer(pixels, np.uint8).reshape(height, width, 3)
    return out, image, np.frombuffer(lat.read_bytes(), "<i4")


@pytest.fixture(scope="module")
def aarch64_command(tmp_path_factory):
    """The executable cross-compiled for aarch64 (NEON kernels), run under qemu-user."""
    tools = [shutil.which(t) for t in ("cmake", "aarch64-linux-gnu-g++", "qemu-aarch64")]
    if not all(tools):
        if os.environ.get("LOTC_REQUIRE_AARCH64") == "1":  # CI installs both and must not skip
            pytest.fail("LOTC_REQUIRE_AARCH64=1 but g++-aarch64-linux-gnu or qemu-user is missing")
        pytest.skip("needs Debian's g++-aarch64-linux-gnu and qemu-user")
    build = tmp_path_factory.mktemp("arm64")
    subprocess.run(["cmake", "-S", str(ROOT / "csrc"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'csrc/cmake/aarch64-linux-gnu.cmake'}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return [tools[2], str(build / "lotterycodec-dec")]


@pytest.mark.slow
def test_aarch64_build_under_qemu(aarch64_command, trained, small_file, tmp_path):
    """NEON and forced-scalar kernels on aarch64: latents identical to the reference, image to one level,
    any thread count the same bytes; hostile input a clean error."""
    odd = synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, stripe_height=4, shared_max_pixels=16,
                                                 kept_weights=900))
    for data in (trained.data, odd):
        ref = reference.decode(data)
        want_latents = np.concatenate([g.ravel() for g in ref.latents])
        images = []
        for flags, kernels in ((["--threads", "1"], "neon"), (["--threads", "3"], "neon"), (["--scalar"], "scalar")):
            out, image, latents = _run_executable(aarch64_command, data, tmp_path, "--time", *flags)
            assert out.returncode == 0, out.stderr
            assert f"kernels {kernels}" in out.stdout
            assert np.array_equal(latents, want_latents)
            assert np.abs(image.astype(int) - ref.image.astype(int)).max() <= 1
            images.append(image)
        assert np.array_equal(images[0], images[1])
    for bad in (small_file[:40], small_file[:-1], b"LOTC\x03" + small_file[5:]):
        out, _, _ = _run_executable(aarch64_command, bad, tmp_path)
        assert out.returncode == 1 and out.stderr.startswith("lotterycodec-dec: error:")


@pytest.mark.slow
def test_hostile_corpus_under_sanitizers(small_file, trained, tmp_path):
    """The core built with ASan + UBSan decodes valid files and rejects every hostile one cleanly."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = tmp_path / "asan"
    subprocess.run(["cmake", "-S", str(ROOT / "csrc"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug",
                    "-DLOTC_SANITIZE=ON"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    exe = build / "lotterycodec-dec"
    rng = np.random.default_rng(0)
    corpus = [(small_file, 0), (trained.data, 0), (small_file + b"\0", 1), (b"", 1)]
    corpus += [(small_file[:n], 1) for n in range(0, len(small_file), 3)]
    for i in rng.choice(len(small_file), 40, replace=False):
        bad = bytearray(small_file)
        bad[int(i)] ^= 0xFF
        corpus.append((bytes(bad), 1))
    for _ in range(60):  # resealed garbage: reaches the parsers and the range decoder
        bad = bytearray(small_file)
        for j in rng.integers(0, len(bad) - 4, 4):
            bad[int(j)] = int(rng.integers(0, 256))
        corpus.append((reseal(bad), None))
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    odd = synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, stripe_height=4, shared_max_pixels=16,
                                                 kept_weights=900))
    runs = [(data, want, []) for data, want in corpus]  # the CPU's SIMD kernels, every core
    runs += [(data, 0, flags) for data in (trained.data, odd) for flags in (["--scalar"], ["--threads", "3"])]
    for k, (data, want, flags) in enumerate(runs):
        src = tmp_path / f"c{k}.lotc"
        src.write_bytes(data)
        out = subprocess.run([str(exe), str(src), str(tmp_path / "o.ppm"), *flags], capture_output=True, text=True,
                             env=env)
        assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr[:400]
        assert out.returncode in ((0, 1) if want is None else (want,)), (k, out.stderr)
    # The fuzz target's replay driver over the committed seed corpus (csrc/fuzz), same sanitizers.
    corpus = ROOT / "csrc" / "fuzz" / "corpus"
    out = subprocess.run([str(build / "lotc-fuzz-replay"), str(corpus)], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr[:400]
    assert out.stdout.strip() == f"replayed {len(list(corpus.iterdir()))} inputs"


def test_fuzz_corpus_valid_and_hostile_files_are_what_their_names_say():
    """The seed corpus holds valid files (their names: a configuration and a size) and hostile
    ones; the reference and the C++ core agree on which is which."""
    corpus = sorted((ROOT / "csrc" / "fuzz" / "corpus").iterdir())
    valid = {"tiny_1x1", "odd_45x23", "default_32x24", "no_context_9x7", "no_hidden_2x40", "wide_arm_17x33"}
    assert valid <= {p.stem for p in corpus}
    for path in corpus:
        data = path.read_bytes()
        if path.stem in valid:
            _same(data)
        elif not path.stem.startswith(("resealed_", "mod_step_0")):  # those may happen to be valid
            for decode in (reference.decode, cpu):
                with pytest.raises(FormatError):
                    decode(data)


def test_any_thread_count_gives_identical_output(trained):
    data = synthetic_bitstream(40, 37, ArchConfig(arm_context=8, arm_width=8, stripe_height=4, shared_max_pixels=16,
                                                  kept_weights=900))
    for d in (data, trained.data):
        for decode in (cpu, cpu_scalar):
            one = decode(d, threads=1)
            for t in (2, 3, 8):
                other = decode(d, threads=t)
                assert np.array_equal(one.image, other.image)
                assert all(np.array_equal(a, b) for a, b in zip(one.latents, other.latents))
    with pytest.raises(ValueError):
        cpu(data, threads=-1)


@pytest.mark.parametrize("weight", [32768, 900, -32767])
def test_arm_input_kinds_agree(weight):
    """The SIMD ARM picks int16 pairs, a 15-bit split or int32 lanes per layer from the parse-time
    bounds; a weight of 2^15 forces int32 in layer 0, small ones the int16 paths. Same latents."""
    from lotterycodec.decoder.entropy import IntArm, encode_latents, encode_mask
    from lotterycodec.decoder.format import Networks, write_bitstream, write_networks
    from lotterycodec.decoder.synthetic import random_masks, random_networks

    cfg = ArchConfig(arm_context=8, arm_width=8, latent_bound=8, mod_width=6, kept_weights=300).validate()
    rng = np.random.default_rng(5)
    nets = random_networks(cfg, rng)
    weights = [w.copy() for w in nets.arm.weights]
    weights[0][3, 1] = weight
    weights[1][2, 5] = 7
    arm = IntArm(weights, nets.arm.biases, cfg.arm_frac_bits)
    nets = Networks(arm, nets.ups_kernel, nets.mod)
    grids = [np.clip(np.round(rng.laplace(0, 2.0, size=s)), -8, 7).astype(np.int64) for s in cfg.grid_shapes(21, 30)]
    counts, words = encode_mask(random_masks(cfg, rng))
    data = write_bitstream(30, 21, 9, cfg, write_networks(nets)[0], counts, words, encode_latents(grids, arm, cfg))
    got = _same(data)
    assert all(np.array_equal(a, b) for a, b in zip(got.latents, grids))


@pytest.mark.slow
def test_executable_full_disk_leaves_the_previous_output(executable, trained, tmp_path):
    """A file-size limit (SIGXFSZ) stands in for a full disk: an error message, the previous
    output whole, no partial file."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    src, out = tmp_path / "t.lotc", tmp_path / "t.ppm"
    src.write_bytes(trained.data)  # 32x32: a 3 KiB PPM
    out.write_bytes(b"previous")
    run = subprocess.run([str(executable), str(src), str(out)], preexec_fn=limit, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.startswith("lotterycodec-dec: error: cannot write"), run.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.lotc", "t.ppm"]
