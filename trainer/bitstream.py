"""The torch-free half of an encode: from one trained item's integers and float ARM to the bytes
of its file (the ARM's quantization search, mask and latent range coding).

This is serial CPU work per item that follows the batched training; for a batch of several items
it runs in a pool of worker processes (one item per process: the work is Python-bound, so
threads would share one interpreter lock). Every step is integer or exact, so the bytes do not
depend on where they were made."""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import multiprocessing
import os
import time
from dataclasses import dataclass

import numpy as np

from ..decoder.config import ArchConfig, FormatError
from ..decoder.entropy import (ARM_PARAM_MAX, IntArm, check_arm_bounds, encode_latents, encode_mask, latent_bits,
                               latent_inputs)
from ..decoder.format import Networks, tensor_bits, write_bitstream, write_networks

ARM_FRAC_CANDIDATES = range(3, 13)


@dataclass
class ItemIntegers:
    """What one trained item sends, before the ARM is quantized: plain arrays, cheap to pickle."""
    width: int
    height: int
    seed: int
    cfg: ArchConfig
    grids: list[np.ndarray]                       # integer latents per grid
    masks: list[np.ndarray]                       # kept synthesis weights (out, in) per layer
    arm_float: list[tuple[np.ndarray, np.ndarray]]  # trained ARM (weight, bias) per layer, float64
    steps: dict                                   # header field -> (exponent, integer tensors)


@dataclass
class Packed:
    data: bytes
    cfg: ArchConfig              # with the chosen steps and ARM fractional bits
    arm: IntArm
    latent_bits: float           # exact information content under the quantized ARM
    net_bytes: bytes
    net_bits: dict
    latent_words: list[np.ndarray]
    seconds: float               # CPU time of this item's packing (its thread only)


def quantize_arm(arm_float: list[tuple[np.ndarray, np.ndarray]], frac: int) -> IntArm:
    scale = float(1 << frac)
    ints = [[np.clip(np.round(a * scale), -ARM_PARAM_MAX, ARM_PARAM_MAX).astype(np.int64) for a in layer]
            for layer in arm_float]
    return IntArm([w for w, _ in ints], [b for _, b in ints], frac)


def search_arm(arm_float: list[tuple[np.ndarray, np.ndarray]], grids: list[np.ndarray], cfg: ArchConfig):
    """The fractional-bit count minimising real latent bits + ARM bits: (frac, IntArm, latent bits,
    ARM bits)."""
    best = None
    inputs = latent_inputs(grids, cfg)
    for frac in ARM_FRAC_CANDIDATES:
        arm = quantize_arm(arm_float, frac)
        try:
            check_arm_bounds(arm, cfg.latent_bound)
        except FormatError:
            continue
        net = sum(tensor_bits(t) for t in arm.weights + arm.biases)
        lat = latent_bits(grids, arm, cfg.replace(arm_frac_bits=frac), inputs)
        if best is None or lat + net < best[0]:
            best = (lat + net, frac, arm, lat, net)
    if best is None:
        raise RuntimeError("no ARM quantization keeps the accumulators within 32 bits")
    return best[1:]


def pack(item: ItemIntegers) -> Packed:
    t0 = time.thread_time()
    frac, arm, lat_bits, _ = search_arm(item.arm_float, item.grids, item.cfg)
    exps = {name: exp for name, (exp, _) in item.steps.items()}
    ints = {name: q for name, (_, q) in item.steps.items()}
    synth_step_exp = exps.pop("synth_step_exp", 0)  # written in the networks section, not the header
    cfg = item.cfg.replace(arm_frac_bits=frac, **exps)
    mod_ints = [None] * (len(ints["mod_weight_step_exp"]) + len(ints["mod_bias_step_exp"]))
    mod_ints[0::2], mod_ints[1::2] = ints["mod_weight_step_exp"], ints["mod_bias_step_exp"]
    nets = Networks(arm, ints["ups_step_exp"][0], mod_ints, synth=ints.get("synth_step_exp"),
                    synth_step_exp=synth_step_exp)
    net_bytes, net_bits = write_networks(nets)
    counts, mask_words = encode_mask(item.masks)
    latent_words = encode_latents(item.grids, arm, cfg)
    data = write_bitstream(item.width, item.height, item.seed, cfg, net_bytes, counts, mask_words, latent_words)
    return Packed(data, cfg, arm, lat_bits, net_bytes, net_bits, latent_words, time.thread_time() - t0)


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
