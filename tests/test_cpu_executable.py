"""lotterycodec-dec, the standalone executable (installed from one Release build per test run):
the module's bytes, clean errors, a full disk, and the ARM cross-builds (aarch64, ARMv7) under qemu."""
import subprocess

import numpy as np
import pytest
from lotterycodec.decoder import reference
from lotterycodec.decoder.config import DECODE_STAGES, ArchConfig
from lotterycodec.decoder.synthetic import synthetic_bitstream

pytest.importorskip("lotterycodec.decoder._lotc_cpu")
from native import cpu, run_executable  # noqa: E402


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



@pytest.mark.slow
@pytest.mark.parametrize("target", ["aarch64_command", "armv7_command"])
def test_arm_builds_under_qemu(target, request, trained, small_file, tmp_path):
    """NEON and forced-scalar kernels on 64-bit ARM and 32-bit ARMv7: latents identical to the
    reference, image to one level, any thread count the same bytes; hostile input a clean error."""
    command = request.getfixturevalue(target)
    odd = synthetic_bitstream(45, 23, ArchConfig(arm_context=8, arm_width=8, stripe_height=4, shared_max_pixels=16,
                                                 kept_weights=900))
    for data in (trained.data, odd):
        ref = reference.decode(data)
        want_latents = np.concatenate([g.ravel() for g in ref.latents])
        images = []
        for flags, kernels in ((["--threads", "1"], "neon"), (["--threads", "3"], "neon"), (["--scalar"], "scalar")):
            out, image, latents = run_executable(command, data, tmp_path, "--time", *flags)
            assert out.returncode == 0, out.stderr
            assert f"kernels {kernels}" in out.stdout
            assert np.array_equal(latents, want_latents)
            assert np.abs(image.astype(int) - ref.image.astype(int)).max() <= 1
            images.append(image)
        assert np.array_equal(images[0], images[1])
    for bad in (small_file[:40], small_file[:-1], b"LOTC\x03" + small_file[5:]):
        out, _, _ = run_executable(command, bad, tmp_path)
        assert out.returncode == 1 and out.stderr.startswith("lotterycodec-dec: error:")



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


def test_executable_writes_a_pipe_in_place_and_replaces_a_links_target(executable, trained, tmp_path):
    """`lotterycodec-dec in.lotc /dev/null` must not replace /dev/null: an output that exists and is
    not a regular file (a FIFO here) is written in place; through a symbolic link the file it points
    to is replaced and the link stays."""
    import os
    import stat
    from forging import read_fifo_in_background
    src = tmp_path / "t.lotc"
    src.write_bytes(trained.data)
    expected = subprocess.run([str(executable), str(src), "-"], capture_output=True, check=True).stdout
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t, got = read_fifo_in_background(fifo)
    subprocess.run([str(executable), str(src), str(fifo)], check=True, timeout=60)
    t.join(10)
    assert got["bytes"] == expected and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real, link = tmp_path / "real.ppm", tmp_path / "link.ppm"
    real.write_bytes(b"old")
    link.symlink_to(real)
    subprocess.run([str(executable), str(src), str(link)], check=True)
    assert link.is_symlink() and real.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.ppm", "pipe", "real.ppm", "t.lotc"]
