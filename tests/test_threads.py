"""Training threads: an explicit count is used as given; by default the tuner measures the
candidates and keeps the fastest, again every so often."""
import pytest

torch = pytest.importorskip("torch")

from lotterycodec.trainer.threads import ThreadTuner, available_cores  # noqa: E402


class FakeClock:
    """Each step takes cost[threads] seconds at the thread count torch has when it runs."""

    def __init__(self, cost):
        self.cost, self.now = cost, 0.0

    def __call__(self):
        return self.now

    def step(self, tuner):
        self.now += self.cost[torch.get_num_threads()]
        tuner.step_done()


@pytest.fixture
def restore_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("cost,expected", [({2: 0.12, 1: 0.20}, 2), ({2: 0.47, 1: 0.20}, 1)])
def test_tuner_keeps_the_fastest_count(monkeypatch, restore_threads, cost, expected):
    monkeypatch.setattr("lotterycodec.trainer.threads.available_cores", lambda: 2)
    clock = FakeClock(cost)
    tuner = ThreadTuner(None, every=20, probe=3, warmup=0, clock=clock)
    assert tuner.candidates == [2, 1]
    for _ in range(8):  # (3 + 1 warm-up) steps per candidate
        clock.step(tuner)
    assert tuner.chosen == expected and torch.get_num_threads() == expected
    assert tuner.history[0][1] == pytest.approx(cost)


def test_tuner_follows_a_machine_that_becomes_busy(monkeypatch, restore_threads):
    monkeypatch.setattr("lotterycodec.trainer.threads.available_cores", lambda: 2)
    clock = FakeClock({2: 0.12, 1: 0.20})
    tuner = ThreadTuner(None, every=20, probe=3, warmup=0, clock=clock)
    for _ in range(10):
        clock.step(tuner)
    assert tuner.chosen == 2
    clock.cost = {2: 0.47, 1: 0.20}  # another process starts
    for _ in range(20 + 8):
        clock.step(tuner)
    assert tuner.chosen == 1 and len(tuner.history) == 2


def test_explicit_threads_are_used_as_given(restore_threads):
    clock = FakeClock({1: 0.5, 2: 0.1})
    tuner = ThreadTuner(1, every=5, clock=clock)
    for _ in range(30):
        clock.step(tuner)
    assert tuner.candidates == [1] and tuner.chosen == 1 and torch.get_num_threads() == 1 and not tuner.history
    with pytest.raises(ValueError, match="at least 1"):
        ThreadTuner(0)


def test_available_cores_is_the_affinity_mask():
    import os
    assert available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_encode_threads_option(tmp_path, restore_threads):
    import numpy as np

    from lotterycodec.cli import main
    from lotterycodec.decoder.imageio import save_image
    rng = np.random.default_rng(0)
    save_image(tmp_path / "in.png", rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.lotc"
        assert main(["encode", str(tmp_path / "in.png"), "-o", str(out), "--preset", "fast", "--steps", "20",
                     "--threads", threads, "--json"]) == 0
        assert torch.get_num_threads() == int(threads)
        assert main(["decode", str(out), "-o", str(tmp_path / f"t{threads}.png")]) == 0
    # a fixed thread count makes an encode repeatable byte for byte (another count may round sums
    # differently, and SOAP's eigenbases follow rounding, so it may write another file)
    again = tmp_path / "again.lotc"
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(again), "--preset", "fast", "--steps", "20",
                 "--threads", "1", "--json"]) == 0
    assert again.read_bytes() == (tmp_path / "t1.lotc").read_bytes()
