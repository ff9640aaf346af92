"""Hostile input to the C++ core: truncations, flips, resealed mutations (agreeing with the
reference on what is an error), the sanitizer build over a crafted corpus and the fuzz seeds."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from forging import reseal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lotterycodec.decoder import reference
from lotterycodec.decoder.config import ArchConfig, FormatError
from lotterycodec.decoder.synthetic import synthetic_bitstream

pytest.importorskip("lotterycodec.decoder._lotc_cpu")
from native import cpu, same  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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



@pytest.mark.slow
def test_hostile_corpus_under_sanitizers(sanitizer_build, small_file, trained, tmp_path):
    """The core built with ASan + UBSan decodes valid files and rejects every hostile one cleanly."""
    build = sanitizer_build
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


@pytest.mark.slow
def test_libfuzzer_replays_the_corpus_and_fuzzes_briefly(libfuzzer_build, tmp_path):
    """clang's libFuzzer on the decode entry point under ASan + UBSan, differential across the kernel
    tables: the committed corpora replayed (the seeds, and the long runs' minimised finds in
    results/fuzz_decode), then a short coverage-guided run (LOTC_FUZZ_SECONDS, default 30) with zero
    reports."""
    corpus = ROOT / "csrc" / "fuzz" / "corpus"
    finds = ROOT / "results" / "fuzz_decode" / "corpus"
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}
    limits = ["-timeout=20", "-rss_limit_mb=2048", "-malloc_limit_mb=1024"]
    out = subprocess.run([str(libfuzzer_build), "-runs=0", *limits, str(corpus), str(finds)], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    work = tmp_path / "corpus"  # new finds land here, not in the committed corpus
    work.mkdir()
    seconds = os.environ.get("LOTC_FUZZ_SECONDS", "30")
    out = subprocess.run([str(libfuzzer_build), f"-max_total_time={seconds}", "-print_final_stats=1", *limits,
                          str(work), str(corpus)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stat::number_of_executed_units" in out.stderr


def test_fuzz_corpus_valid_and_hostile_files_are_what_their_names_say():
    """The seed corpus holds valid files (their names: a configuration and a size) and hostile
    ones; the reference and the C++ core agree on which is which."""
    corpus = sorted((ROOT / "csrc" / "fuzz" / "corpus").iterdir())
    valid = {"tiny_1x1", "odd_45x23", "default_32x24", "no_context_9x7", "no_hidden_2x40", "wide_arm_17x33",
             "parents_45x23", "parents_wide_33x17", "v2_odd_45x23", "v3_parents_45x23", "arm_options_45x23",
             "arm_options_parents_33x17"}
    assert valid <= {p.stem for p in corpus}
    for path in corpus:
        data = path.read_bytes()
        if path.stem in valid:
            same(data)
        elif not path.stem.startswith(("resealed_", "parents_resealed_", "v2_resealed_", "arm_options_resealed_",
                                       "mod_step_0")):  # those may be valid
            for decode in (reference.decode, cpu):
                with pytest.raises(FormatError):
                    decode(data)

