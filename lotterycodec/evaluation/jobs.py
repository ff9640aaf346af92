"""Running independent encode jobs: in this process, on a local process pool, or on an existing
Dask cluster (``--cluster ADDRESS``).

Dask distributed, not Ray: it is a small pure-Python install (two wheels, no daemon of its own),
a test can start a two-worker LocalCluster on a 2-core machine in seconds, a Client exposes the
same futures interface as concurrent.futures, and workers declare resources (``dask worker
ADDRESS --resources GPU=1``) that a job can require. A job carries its image and returns the
file bytes, so workers need no shared filesystem; the client writes each file as its job finishes
(the record last), so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from ..trainer.threads import available_cores


@dataclass
class EncodeJob:
    name: str
    image: np.ndarray
    lmbdas: list[float]
    settings: dict          # the eval's encode settings (preset, steps, kept ratio, arch)
    device: str = "cpu"
    threads: int | None = None  # torch threads (None: chosen by measuring, trainer.threads)


@dataclass
class EncodedItem:
    name: str
    lmbda: float
    data: bytes
    summary: dict
    encoding_time: float    # the batch's wall time (training, step search, writing) shared by its items


def run_encode_job(job: EncodeJob, progress: bool = False) -> list[EncodedItem]:
    """One batched training of an image's lambdas (runs wherever the job is sent)."""
    from ..trainer.encode import encode_arrays
    in_dask_worker = _dask_worker_threads()
    if in_dask_worker:
        _keep_freed_memory()
    threads = job.threads or in_dask_worker or None
    s = job.settings
    results = encode_arrays([job.image] * len(job.lmbdas), job.lmbdas, [s["kept_ratio"]] * len(job.lmbdas),
                            [1] * len(job.lmbdas), s["preset"], s["steps"], job.device, s["arch"], progress=progress,
                            threads=threads, n_seeds=s.get("seeds"))
    items = []
    for lmbda, r in zip(job.lmbdas, results):
        t = r.summary["times"]
        items.append(EncodedItem(job.name, lmbda, r.data, r.summary, t["encode_s"] / t["batch_size"]))
    return items


class _Dask:
    def __init__(self, address: str, resources: dict | None):
        try:
            from distributed import Client
        except ImportError as exc:
            raise RuntimeError("--cluster needs Dask distributed: pip install 'lotterycodec[cluster]'") from exc
        self.client = Client(address, timeout="30s")
        self.resources = resources or None

    def submit(self, fn, *args) -> Future:
        return self.client.submit(fn, *args, resources=self.resources, pure=False)

    def shutdown(self) -> None:
        self.client.close()


def make_executor(cluster: str | None, workers: int, resources: dict | None = None):
    if cluster:
        return _Dask(cluster, resources)
    import multiprocessing
    # spawn: torch's thread pools do not survive fork
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _stop(executor) -> None:
    """Ends an interrupted run's work (Ctrl-C, SIGTERM, an error in on_done): queued jobs are
    cancelled and a local pool's workers, each mid-encode, are terminated. A plain shutdown would
    wait for every queued job; and a signal sent to this process alone (a scheduler's, ``kill``)
    does not reach the workers, which would go on training their jobs for minutes."""
    if not isinstance(executor, ProcessPoolExecutor):
        executor.shutdown()  # Dask: closing the client releases its futures, the scheduler drops them
        return
    processes = list((executor._processes or {}).values())  # no public handle before Python 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(10)


def run_jobs(jobs: Iterable[EncodeJob], on_done: Callable[[list[EncodedItem]], None], cluster: str | None = None,
             workers: int = 1, retries: int = 2, resources: dict | None = None, progress: bool = True) -> None:
    """Runs every job (each retried up to ``retries`` times), calling on_done with each job's
    items as it finishes. Raises after the others finish if a job failed every try."""
    from tqdm import tqdm

    jobs = list(jobs)
    if not jobs:
        return
    failures = []
    if not cluster and workers <= 1:  # in this process, one job after another, training bars shown
        for job in jobs:
            for attempt in range(retries + 1):
                try:
                    items = run_encode_job(job, progress)
                except Exception as exc:
                    if attempt == retries:
                        failures.append(f"{_describe(job)}: {exc}")
                    continue
                on_done(items)
                break
        _raise_failures(failures, retries)
        return
    if workers > 1 and not cluster:
        per_worker = max(1, available_cores() // workers)
        jobs = [replace(j, threads=j.threads or per_worker) for j in jobs]
    executor = make_executor(cluster, workers, resources)
    bar = tqdm(total=len(jobs), desc="encode jobs", unit="job", disable=not progress)
    finished = False
    try:
        pending = {executor.submit(run_encode_job, job): (job, 0) for job in jobs}
        while pending:
            done = _dask_wait(list(pending)) if cluster else wait(list(pending), return_when=FIRST_COMPLETED)[0]
            for future in done:
                job, attempt = pending.pop(future)
                try:
                    items = future.result()
                except Exception as exc:
                    if attempt < retries:
                        pending[executor.submit(run_encode_job, job)] = (job, attempt + 1)
                    else:
                        failures.append(f"{_describe(job)}: {exc}")
                        bar.update()
                    continue
                on_done(items)
                bar.update()
                bar.set_postfix(last=job.name)
        finished = True
    finally:
        bar.close()
        if finished:
            executor.shutdown()
        else:
            _stop(executor)
    _raise_failures(failures, retries)


def _dask_worker_threads() -> int:
    """In a Dask worker, the threads it was started with (torch would otherwise take every core)."""
    try:
        from distributed import get_worker
        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return 0


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory in this process instead of returning it to the system.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 and runs tasks in threads
    (their own malloc arenas): every training step then gives its activations back and faults
    them in again. Measured on one job (results/cluster_overhead_cpu): 26.1 s in a Dask worker,
    14.6-15.9 s after this call, 13.6 s in a plain process."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _describe(job: EncodeJob) -> str:
    return f"{job.name} (lambda {', '.join(f'{x:g}' for x in job.lmbdas)})"


def _raise_failures(failures: list[str], retries: int) -> None:
    if failures:
        raise RuntimeError(f"{len(failures)} encode job(s) failed after {retries + 1} tries: " + "; ".join(failures))


def _dask_wait(futures: list):
    from distributed import wait as dask_wait
    return dask_wait(futures, return_when="FIRST_COMPLETED").done
