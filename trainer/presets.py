"""Training presets, defined by step counts (hosts differ; steps do not)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    steps: int                 # stage 1: noise + soft-round annealing, cosine learning rate
    finetune_steps: int = 0    # stage 2: straight-through rounding, reset-to-best (0 = off)
    kept_ratio: float = 0.7    # the mask's kept fraction when the caller gives none
    lr: float = 1e-2
    score_lr: float = 1e-1
    finetune_lr: float = 1e-4
    log_every: int = 25
    arch: dict = field(default_factory=dict)  # ArchConfig fields this preset changes
    description: str = ""
    # Fields changed again for lambda >= low_rate_from: where the rate is small the networks'
    # own bits dominate, and a smaller ARM and modulation pay for themselves.
    low_rate_arch: dict = field(default_factory=dict)
    low_rate_from: float = 0.0
    # Stage-1 steps for those lambdas (0: steps): the smaller networks train faster per step, so
    # the same encode time buys more steps.
    low_rate_steps: int = 0
    # Seed search: candidates per item (other seeds: other random synthesis weights and
    # initialisations), trained together for this fraction of stage 1, then the best goes on.
    seeds: int = 1
    seed_warmup: float = 0.1
    # Stage 1's quantization proxy, annealed linearly from the first value to the second: the
    # soft-round temperature, and Gaussian noise of std noise_std (Cool-chic 5's proxy) or, with
    # noise_std None, Kumaraswamy noise of parameter noise_a (1: uniform, larger: more peaked).
    # With SOAP, the Gaussian proxy lowered the fixed-lambda loss a further 1.9 % (lambda 1e-3) and
    # 2.8 % (4e-3) against Kumaraswamy (2 -> 1) at temperature 0.3 -> 0.1
    # (results/schedule_study_crop256).
    temperature: tuple[float, float] = (0.35, 0.08)
    noise_a: tuple[float, float] = (2.0, 1.0)
    noise_std: tuple[float, float] | None = (0.22, 0.15)
    # The last fraction of stage 1's steps train through hard rounding (straight-through), so
    # the networks meet the integers they will decode from while the learning rate still moves.
    hard_tail: float = 0.0
    # The networks' optimizer: "soap" (Adam in Shampoo's eigenbasis, optim.BatchedSOAP, as Cool-chic
    # 5 trains its networks) or "adam"; the latents and the mask scores always use Adam. SOAP
    # lowered the fixed-lambda loss of real files by 6.1 % (lambda 1e-3) and 4.4 % (4e-3) at the
    # `cpu` preset's steps on two crops, for < 1 % more time per step
    # (results/schedule_study_crop256).
    optimizer: str = "soap"
    # The mask scores' optimizer with SOAP networks: "adam" or "soap" (each layer's (out, in)
    # score matrix preconditioned like a weight).
    score_optimizer: str = "adam"
    # Cool-chic 5's last phase: this fraction of the steps trains the networks only (latents
    # frozen at their integers, hard rounding, so the loss is the file's own but for the
    # networks' quantization), with a fresh optimizer and the learning rate going from the first
    # value to the second (the scores' scaled alike); each item keeps its best state.
    hard_phase: float = 0.0
    hard_phase_lr: tuple[float, float] = (1e-4, 1e-5)
    # Passes of the networks' RDOQ after the step search (quantize.rdoq_networks; 0: off): the
    # upsampling and modulation integers moved one step where that lowers the file's own cost.
    rdoq_passes: int = 1


# Where the networks' own bits are a large part of a file (small images, low rates), a narrower
# synthesis (16/16/16 instead of 32/24/16: 931 random weights instead of 1651, so 45 % fewer mask bits
# and 27 % fewer MACs/pixel at 256x256) pays for what it loses in capacity.
LOW_RATE_SYNTHESIS = {"synth_width0": 16, "synth_width1": 16}
# The networks of small files (the `small` preset, the `cpu` presets' low rates): ARM 8/8, 24
# modulation channels, that synthesis.
LOW_RATE_NETWORKS = {"arm_context": 8, "arm_width": 8, "mod_width": 24, **LOW_RATE_SYNTHESIS}

PRESETS = {
    "fast": Preset("fast", steps=300, arch={"arm_context": 8, "arm_width": 8},
                   description="smoke tests and demos: seconds on tiny images"),
    # Small images (the demo's 128x128): the sent networks are a fixed cost that a small image
    # feels most, so the low-rate networks (ARM 8/8, 24 modulation channels). Bundled crop, lambda
    # 1e-3, SOAP + Gaussian proxy, 2 cores (2026-12-06): 2000 steps 1137 B / 37.76 dB in 83 s
    # (JPEG at that size 36.64 dB), 1300 steps 1097 B / 37.16 dB (JPEG 36.27) in 51-58 s, 1200
    # steps 1145 B / 37.27 dB (JPEG 36.66) in 52-64 s: the demo's budget is a minute.
    # Synthesis 16/16/16 (LOW_RATE_SYNTHESIS): five 128x128 crops at lambda 4e-3 and 1e-3, -5.2 %
    # fixed-lambda cost (9 of 10 lower; results/lowrate_networks_crop256).
    "small": Preset("small", steps=1200, arch=LOW_RATE_NETWORKS,
                    description="images up to about 200x200 (128x128 in about a minute on 2 CPU cores)"),
    # ARM 16/16: at 256x256 the default 24/24 ARM costs 6.7 kbit against 3.4 kbit and lost on
    # both rate and PSNR (kodim23 crop, lambda 1e-3: 0.593 bpp / 34.97 dB vs 0.553 / 35.25).
    # Low rates (lambda >= 4e-3): ARM 8/8 and 24 modulation channels; on eight 256x256 Kodak crops
    # see results/eval_crop256_cpu (README: "low-rate architecture"). That architecture trains a
    # step in ~60 % of the time, so it gets 3200 steps in the same budget (kodim23 crop, 2000 ->
    # 3200 steps: 1746 -> 1693 bytes and 29.87 -> 29.94 dB at 1e-2; 2719 -> 2539, 31.72 -> 31.85 at 4e-3).
    # The high-rate points are the ones short of cpu-long (up to 0.9 dB at lambda 3e-4 with 2000
    # steps), so the step count grows as a step gets faster: 2800 since the gathered ARM contexts.
    # One encode on 2 cores (two threads) then trains a 256x256 step in 85-105 ms and takes under
    # 5 minutes (measured wall, with the ARM's RDOQ: 282 s at lambda 1e-3, 268 s at 4e-3);
    # 2400 -> 2800 steps: -0.5 % BD-rate, level with cpu-long on four crops
    # (results/cpu_crop256_vs_coolchic).
    # The low rates' synthesis 16/16/16: -1.3 % fixed-lambda cost on six crops at lambda 1e-2 and 4e-3
    # (9 of 12 lower; results/lowrate_networks_crop256), and ~7 % less time per item.
    "cpu": Preset("cpu", steps=2800, arch={"arm_context": 16, "arm_width": 16},
                  description="256x256 in about 5 minutes on 2 CPU cores",
                  low_rate_arch=LOW_RATE_NETWORKS,
                  low_rate_from=4e-3,
                  low_rate_steps=3200),
    # 10k steps (16k low-rate), same networks as cpu: toward the longer-schedule end of the RD curve within
    # ~30 minutes per encode (cpu's steps take 0.12-0.15 s at 256x256 on the project VM, the
    # low-rate items' 0.08-0.09 s).
    "cpu-long": Preset("cpu-long", steps=10_000, arch={"arm_context": 16, "arm_width": 16}, log_every=100,
                       description="256x256 in about 25 minutes on 2 CPU cores",
                       low_rate_arch=LOW_RATE_NETWORKS,
                       low_rate_from=4e-3, low_rate_steps=16_000),
    # Whole Kodak-size images on a CPU within Cool-chic 4.1's kodim14 complexity (1431 MACs/pixel):
    # ARM 8/8, 24 modulation channels and 20 % of the synthesis kept make 1045 at 768x512 (20 %
    # beat 40 % by 2.4 % BD-rate on four 256x256 crops, 5.2 % on kodim14's). A step takes
    # 0.37-0.45 s there on the project's 2-core AMD VM (two threads; the earlier Intel VM 0.76 s before
    # the chunked synthesis), so 7000 steps fit within an hour.
    "cpu-full": Preset("cpu-full", steps=7000, arch={"arm_context": 8, "arm_width": 8, "mod_width": 24},
                       kept_ratio=0.2, log_every=50,
                       description="768x512 in under an hour on 2 CPU cores, at most 1431 MACs/pixel"),
    "paper": Preset("paper", steps=100_000, finetune_steps=10_000, log_every=200,
                    description="the published schedule (100k + 10k steps); meant for a GPU"),
}


# Images up to this many pixels (256x256) are coded as one latent substream: every grid in the shared
# substream (shared_max_pixels = the image's pixels). Stripes let a decoder entropy-decode on several
# threads, but each substream costs its length varint and the range coder's last word, and each
# stripe's first rows lose their ARM context; a 256x256 image decodes in a few milliseconds on one
# thread anyway. Measured (results/one_substream_crop256), `cpu` preset, four 256x256 crops at
# lambda 1e-2 and 4e-3, retrained: fixed-lambda cost -2.0 % (7 of 8 items lower, one level), up to
# 105 bytes less per file.
ONE_SUBSTREAM_PIXELS = 1 << 16


def substream_arch(height: int, width: int, arch: dict) -> dict:
    """The substream fields an image of this size gets when the caller's fields set neither."""
    if height * width > ONE_SUBSTREAM_PIXELS or {"stripe_height", "shared_max_pixels"} & set(arch):
        return {}
    return {"shared_max_pixels": height * width}


def _low_rate(preset: Preset, lmbda: float) -> bool:
    return bool(preset.low_rate_arch or preset.low_rate_steps) and lmbda >= preset.low_rate_from


def item_arch(preset: Preset, lmbda: float, arch: dict | None = None) -> dict:
    """ArchConfig fields one item changes on top of ``preset.arch``: the preset's low-rate ones
    when its lambda calls for them, then the caller's."""
    low = preset.low_rate_arch if _low_rate(preset, lmbda) else {}
    return {**low, **(arch or {})}


def item_steps(preset: Preset, lmbda: float, steps: int | None = None) -> int | None:
    """The stage-1 step count one item trains: the caller's, else the preset's low-rate count when
    its lambda calls for it, else None (the preset's own)."""
    if steps is None and preset.low_rate_steps and _low_rate(preset, lmbda):
        return preset.low_rate_steps
    return steps


def get_preset(name: str | Preset) -> Preset:
    """A preset by name (a Preset passes through: studies train variants of the named ones)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
