"""Encode one image: train, quantize, write the bitstream through the format module, then decode
the written bytes to report what a receiver actually gets."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..decoder.config import SYNTH_DENSE, ArchConfig, kept_weights_for
from ..decoder.entropy import encode_mask, substream_plan
from ..decoder.format import write_bitstream
from ..decoder.complexity import macs_per_pixel
from .model import LotteryModel
from .presets import Preset, get_preset, item_arch, item_steps, substream_arch
from .bitstream import Packed
from .workers import pack_all
from .quantize import adopt_quantized_arm, integer_masks, item_integers, rdoq_networks, search_steps
from .threads import check_threads
from . import fused
from .train import BatchedModel, compiles, train


@dataclass
class EncodeResult:
    data: bytes
    summary: dict
    model: LotteryModel = field(repr=False)
    latents: list[np.ndarray] = field(repr=False)
    cfg: ArchConfig = field(repr=False)
    net_bytes: bytes = field(repr=False)
    latent_words: list[np.ndarray] = field(repr=False)

    def with_kept_ratio(self, kept_ratio: float) -> bytes:
        """The same file with the mask re-thresholded from the same trained scores: same latents
        and networks, only the synthesis (and its MACs) changes. For complexity sweeps."""
        if self.cfg.synth_mode == SYNTH_DENSE:
            raise ValueError("a dense synthesis has no mask to re-threshold")
        cfg = self.cfg.replace(kept_weights=kept_weights_for(self.cfg, kept_ratio)).validate()
        counts, mask_words = encode_mask(integer_masks(self.model, cfg.kept_weights))
        return write_bitstream(self.model.width, self.model.height, self.model.seed, cfg, self.net_bytes,
                               counts, mask_words, self.latent_words)


# Peak resident memory of training per pixel of the batch (activations kept for the backward):
# measured 3.1 KB at 256x256 and 512x512 with the `cpu` preset (torch 2.13, one thread); a margin
# on top. Plus what the process holds before training.
TRAIN_BYTES_PER_PIXEL = 4000
TRAIN_BASE_BYTES = 500 << 20


def available_memory() -> int | None:
    """Bytes this machine can still give (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_training_memory(batch_pixels: int) -> None:
    """Refuse, before any work, a batch whose training would not fit in memory (an 8192x8192
    image wants about 270 GB): a clear error instead of a machine swapping itself to death."""
    need = TRAIN_BYTES_PER_PIXEL * batch_pixels + TRAIN_BASE_BYTES
    have = available_memory()
    if have is not None and need > have:
        raise MemoryError(f"training {batch_pixels} pixels at once needs about {need / 2**30:.1f} GiB and "
                          f"{have / 2**30:.1f} GiB is available: encode a smaller image (crop or tile it), "
                          "or fewer images per batch")


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r} (cpu or cuda)")
    return torch.device(device)


def encode_array(image: np.ndarray, lmbda: float = 1e-3, kept_ratio: float | None = None, preset: str = "cpu",
                 steps: int | None = None, seed: int = 1, device: str = "cpu",
                 arch: dict | None = None, finetune_steps: int | None = None,
                 progress: bool = True, threads: int | None = None, seeds: int | None = None) -> EncodeResult:
    """image: (H, W, 3) uint8; arch: ArchConfig fields overriding the preset's and the defaults.
    Returns the bytes and a summary of training-side facts."""
    return encode_arrays([image], [lmbda], [kept_ratio], [seed], preset, steps, device, arch, finetune_steps,
                         progress, threads, seeds)[0]


def encode_arrays(images: list[np.ndarray], lmbdas: list[float], kept_ratios: list[float | None], seeds: list[int],
                  preset: str | Preset = "cpu", steps: int | None = None, device: str = "cpu",
                  arch: dict | None = None, finetune_steps: int | None = None, progress: bool = True,
                  threads: int | None = None, n_seeds: int | None = None,
                  trace: list | None = None) -> list[EncodeResult]:
    """B overfits trained at once in one batched model (images of one size; per item its own
    lambda, kept ratio (None: the preset's) and seed), then B independent files, each what
    encode_array would write.
    Items whose lambdas call for different architectures (the preset's low-rate one) train in one
    batch per architecture. threads: torch threads (None: chosen by measuring, trainer.threads).
    n_seeds: seed search, K candidate seeds per item (seed, seed + 1, ...) trained together for the
    preset's warm-up, the best kept (None: the preset's count); the file holds the kept seed.
    trace: a list that collects training's periodic estimates (train.train), for studies."""
    check_threads(threads)
    if n_seeds is not None and not 1 <= n_seeds <= 64:
        raise ValueError(f"seeds (candidates per item) must be 1..64, got {n_seeds}")
    if not images or not len(images) == len(lmbdas) == len(kept_ratios) == len(seeds):
        raise ValueError("one lambda, kept ratio and seed per image")
    if len({im.shape[:2] for im in images}) != 1:
        raise ValueError("a batch holds images of one size: " + ", ".join(
            sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})))
    chosen = get_preset(preset)
    kept_ratios = [chosen.kept_ratio if k is None else k for k in kept_ratios]
    if finetune_steps is not None:
        chosen = dataclasses.replace(chosen, finetune_steps=finetune_steps)
    groups: dict[tuple, list[int]] = {}
    for i, lmbda in enumerate(lmbdas):
        key = (tuple(sorted(item_arch(chosen, lmbda, arch).items())), item_steps(chosen, lmbda, steps))
        groups.setdefault(key, []).append(i)
    if len(groups) > 1:  # one batched model, one architecture and schedule: a batch per pair
        results: list = [None] * len(images)
        for (key, group_steps), idx in groups.items():
            part = encode_arrays([images[i] for i in idx], [lmbdas[i] for i in idx], [kept_ratios[i] for i in idx],
                                 [seeds[i] for i in idx], preset, group_steps, device, dict(key), finetune_steps,
                                 progress, threads, n_seeds, trace)
            for i, r in zip(idx, part):
                results[i] = r
        return results
    t0 = time.perf_counter()
    height, width = images[0].shape[:2]
    (arch_key, steps), = groups  # one architecture and step count from here on
    fields = {**chosen.arch, **dict(arch_key)}
    base = ArchConfig(**fields, **substream_arch(height, width, fields))
    dev = resolve_device(device)
    candidates = chosen.seeds if n_seeds is None else n_seeds
    check_training_memory(height * width * len(images) * candidates)
    rows = []  # candidate k of item i is row i * candidates + k
    for kept_ratio, first_seed in zip(kept_ratios, seeds):
        kept = 0 if base.synth_mode == SYNTH_DENSE else kept_weights_for(base, kept_ratio)  # dense: no mask
        cfg = base.replace(kept_weights=kept).validate()
        for seed in range(first_seed, first_seed + candidates):
            torch.manual_seed(seed)  # trainer initialisation only; the random synthesis comes from Philox
            model = LotteryModel(cfg, height, width, seed).to(dev)
            model.noise_generator = torch.Generator(device=dev).manual_seed(seed)
            rows.append(model)
    targets = torch.stack([torch.from_numpy(im.astype(np.float32) / 255.0) for im in images
                           for _ in range(candidates)]).to(dev)
    lmbda_rows = torch.tensor([x for x in lmbdas for _ in range(candidates)], dtype=torch.float32, device=dev)
    batch = BatchedModel(rows).to(dev)
    stage1 = chosen.steps if steps is None else steps
    train_stats = train(batch, targets, lmbda_rows, chosen, steps, progress, threads, candidates,
                        warmup_steps=round(chosen.seed_warmup * stage1), trace=trace)
    items = [rows[i * candidates + r["candidate"]] for i, r in enumerate(train_stats)]
    for r in train_stats:
        r["candidates"] = candidates
    targets = targets[::candidates]
    t_train = time.perf_counter() - t0
    quant_steps = search_steps(batch, targets, lmbdas)
    t_rdoq = time.perf_counter()
    with fused.enabled(compiles(batch, stage1)):  # the compiled GELU when training had it
        rdoq_networks(batch, targets, lmbdas, quant_steps, chosen.rdoq_passes)
    t_rdoq = time.perf_counter() - t_rdoq
    batch.unstack_into(items)
    del batch
    t_search = time.perf_counter() - t0 - t_train - t_rdoq
    t1 = time.perf_counter()
    sent = [item_integers(model, item_steps) for model, item_steps in zip(items, quant_steps)]
    packed = pack_all(sent)
    t_write = time.perf_counter() - t1
    times = {"encode_s": time.perf_counter() - t0, "train_s": t_train, "step_search_s": t_search, "rdoq_s": t_rdoq,
             "write_s": t_write, "batch_size": len(images)}
    return [_result(model, item.grids, p, lmbda, stats, chosen.name, steps if steps is not None else chosen.steps,
                    chosen.finetune_steps, times)
            for model, item, p, lmbda, stats in zip(items, sent, packed, lmbdas, train_stats)]


def _result(model: LotteryModel, grids: list[np.ndarray], packed: Packed, lmbda: float, train_stats: dict,
            preset: str, steps: int, finetune_steps: int, times: dict) -> EncodeResult:
    adopt_quantized_arm(model, packed)
    height, width, seed, cfg, data = model.height, model.width, model.seed, packed.cfg, packed.data
    pixels = height * width
    per_grid = {}
    for units, words in zip(substream_plan(cfg, height, width), packed.latent_words):
        key = f"grid{units[0].grid}" if len(units) == 1 else "shared(" + ",".join(
            f"grid{u.grid}" for u in units) + ")"
        per_grid[key] = per_grid.get(key, 0) + 4 * words.size
    summary = {
        "width": width, "height": height, "lmbda": lmbda, "kept_ratio": cfg.kept_weights / cfg.synth_weight_count,
        "preset": preset, "steps": steps, "finetune_steps": finetune_steps, "seed": seed,
        "bytes": len(data), "bpp": 8 * len(data) / pixels,
        "rate_estimate": {
            "latent_bpp_training_estimate": train_stats["latent_bpp_estimate"],
            "latent_bpp_exact_information": packed.latent_bits / pixels,
            "latent_bpp_in_file": 8 * sum(4 * w.size for w in packed.latent_words) / pixels,
        },
        "network_bits": packed.net_bits,
        "latent_bytes_per_substream_group": per_grid,
        "psnr_training_float": train_stats["psnr_float"],
        "macs_per_pixel": macs_per_pixel(cfg, height, width),
        "config": dict((f.name, v) for f, v in cfg.fields()),
        "threads": train_stats["threads"],  # torch threads training ended with
        "seed_candidates": train_stats["candidates"],  # the seed search's K; "seed" is the one kept
        # the whole batch's wall times, shared by its batch_size items; write_s: ARM search and
        # range coding of every item (worker processes when the batch holds several)
        "times": {**times, "write_cpu_s": packed.seconds},
    }
    return EncodeResult(data, summary, model, grids, cfg, packed.net_bytes, packed.latent_words)


@torch.no_grad()
def model_image(model: LotteryModel) -> np.ndarray:
    """The trainer's own 8-bit rendering of the quantized model (for agreement checks)."""
    image, _ = model("hard", with_rate=False)
    return np.floor(image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
