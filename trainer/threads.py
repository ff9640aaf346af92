"""How many threads training uses, and keeping that number right on a busy machine.

Torch's CPU ops split each op across their threads and wait for the slowest. When another
CPU-bound process shares the cores, one of those threads runs at a fraction of a core and every
op waits for it: on the project's 2-core VM a 256x256 step went from ~120 ms (2 threads, idle)
to ~475 ms (2 threads, one competing process), while 1 thread ran it in ~200 ms either way.
So by default training measures: it times a few steps at each candidate count now and then and
keeps the fastest. An explicit thread count is used as given.
"""
from __future__ import annotations

import os
import time


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets, Slurm)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int | None:
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or omitted: chosen by measuring), got {threads}")
    return threads


class ThreadTuner:
    """Call :meth:`step_done` after every training step.

    threads None: candidates are the available cores, half of them and 1; after ``warmup`` steps and
    then every ``every`` steps each candidate runs ``probe`` steps (the first after a switch not counted) and the fastest
    median is kept until the next probe. An int: that many threads, never changed."""

    def __init__(self, threads: int | None = None, every: int = 250, probe: int = 4, warmup: int = 10,
                 clock=time.perf_counter):
        check_threads(threads)
        self._clock = clock
        n = threads or available_cores()
        self.candidates = [n] if threads else sorted({n, max(1, n // 2), 1}, reverse=True)
        self.every, self.probe = every, probe
        self.chosen = self.candidates[0]
        self._queue: list[int] = []      # thread counts still to probe, one entry per step
        self._times: dict[int, list[float]] = {}
        self._since_probe = 0
        self._last = clock()
        self.history: list[tuple[int, dict[int, float]]] = []  # (step, median step time per candidate)
        self._step = 0
        # The first probe waits ``warmup`` steps: the first steps of a run allocate and fault in
        # memory and are slower at any thread count, which biased a probe made at once.
        self._set(self.chosen)
        self._since_probe = every - warmup
        if len(self.candidates) > 1 and warmup <= 0:
            self._start_probe()

    def _start_probe(self) -> None:
        self._queue = [c for c in self.candidates for _ in range(self.probe + 1)]
        self._times = {c: [] for c in self.candidates}
        self._set(self._queue[0])

    def _set(self, n: int) -> None:
        import torch  # here, so that job planning can import this module without torch
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self._switched = True

    def step_done(self) -> None:
        now = self._clock()
        elapsed, self._last = now - self._last, now
        self._step += 1
        if self._queue:
            current = self._queue.pop(0)
            if not self._switched:
                self._times[current].append(elapsed)
            self._switched = False
            if self._queue:
                if self._queue[0] != current:
                    self._set(self._queue[0])
                return
            medians = {c: sorted(t)[len(t) // 2] for c, t in self._times.items() if t}
            self.chosen = min(medians, key=medians.get)
            self.history.append((self._step, medians))
            self._set(self.chosen)
            self._switched = False
            self._since_probe = 0
            return
        self._since_probe += 1
        if len(self.candidates) > 1 and self._since_probe >= self.every:
            self._start_probe()
