"""Worker processes for the torch-free packing of a batch's files (bitstream.pack), one item per
process: the work is Python-bound, so threads would share one interpreter lock."""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import multiprocessing
import os
import time

from .bitstream import ItemIntegers, Packed, pack

_pool: concurrent.futures.ProcessPoolExecutor | None = None


@contextlib.contextmanager
def _single_threaded_children():
    # Workers started inside inherit these: one BLAS / OpenMP thread each, as many workers as cores.
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n)
            else:
                os.environ[n] = v


def _submit(fn, args: list) -> list[concurrent.futures.Future]:
    global _pool
    if _pool is None:
        # spawn: the caller has torch threads and maybe a CUDA context, which fork would copy.
        # Workers start on demand (one per waiting task, up to one per core) and are kept, so a
        # dataset run pays their start-up (an interpreter and its imports, ~1-2 s) once.
        _pool = concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1,
                                                       mp_context=multiprocessing.get_context("spawn"))
        atexit.register(_pool.shutdown)  # before interpreter teardown, which the pool's threads outlive
    with _single_threaded_children():
        return [_pool.submit(fn, a) for a in args]


_workers_allowed = False


def allow_worker_processes() -> None:
    """Let pack_all use worker processes. Off until a program asks: each worker imports the
    caller's main module again, which runs a script's top level a second time when it has no
    ``if __name__ == "__main__":`` guard. The command line allows them, and so does
    :func:`start_workers`."""
    global _workers_allowed
    _workers_allowed = True


def start_workers(count: int) -> None:
    """Start up to `count` worker processes now (benchmarks keep their start-up out of the timings)."""
    allow_worker_processes()
    for f in _submit(time.sleep, [0.2] * count):
        f.result()


# Packing costs ~0.35 s per 256x256 item; starting the workers ~0.5-3 s once (an interpreter that
# re-imports the caller's main module). Below this many pixels in a batch they are not started.
POOL_MIN_PIXELS = 1 << 17


def pack_all(items: list[ItemIntegers]) -> list[Packed]:
    """pack() for every item: in the worker processes for several items in a top-level process
    that allowed them (:func:`allow_worker_processes`), here otherwise. A process that is itself a
    worker (an eval job on a local process pool or a Dask worker, which may be daemonic and so
    barred from having children) already runs beside others and packs its items itself."""
    worth_it = _pool is not None or sum(item.width * item.height for item in items) >= POOL_MIN_PIXELS
    if (len(items) <= 1 or not worth_it or not _workers_allowed or (os.cpu_count() or 1) == 1
            or multiprocessing.parent_process() is not None):
        return [pack(item) for item in items]
    return [f.result() for f in _submit(pack, items)]
