"""Analytic multiply-accumulates per decoded pixel, module by module, one counter for every codec.

Conventions (docs/PROFILE.md says why):
- one MAC per weight use; biases, activations, residual additions, rounding, padding and the
  entropy coder itself are not counted;
- the ARM is counted per latent value, for every latent (nominal: no credit for skipped zeros),
  then divided by H x W;
- a convolution costs its taps per output value actually needed (values cropped away are not
  counted); a separable filter costs its two 1-D passes, each per value it produces;
- the masked synthesis is reported dense (all weights) and kept (weights the mask keeps).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import ArchConfig


def mlp_macs(dims: list[int]) -> int:
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def grid_shapes(n_grids: int, height: int, width: int) -> list[tuple[int, int]]:
    return [(-(-height // (1 << l)), -(-width // (1 << l))) for l in range(n_grids)]


def cumulative_upsampling_macs(shapes: list[tuple[int, int]], taps: int, separable: bool = False,
                               preconcat_taps: int = 0) -> int:
    """Coarsest grid first; at each level every channel so far goes up 2x and is cropped to the
    next grid. Non-separable: taps^2 per output value; separable: a horizontal pass (taps per
    value, at the coarse height) then a vertical one. Optional separable pre-concatenation
    filter on each newly joined grid (Cool-chic 4.x)."""
    total = 0
    for lvl in range(len(shapes) - 2, -1, -1):
        h, w = shapes[lvl]
        h_in = shapes[lvl + 1][0]
        channels = len(shapes) - 1 - lvl
        per_channel = taps * (h_in * w + h * w) if separable else taps * taps * h * w
        total += channels * per_channel + 2 * preconcat_taps * h * w
    return total


@dataclass
class Complexity:
    """MACs per pixel per module; 'synthesis' has a dense and a kept figure, others one."""
    name: str
    arm_per_latent: int
    modules: dict[str, float]
    synthesis_dense: float
    synthesis_kept: float
    params: dict[str, int] = field(default_factory=dict)
    source: str = ""
    notes: str = ""

    @property
    def total_dense(self) -> float:
        return sum(self.modules.values()) + self.synthesis_dense

    @property
    def total(self) -> float:
        return sum(self.modules.values()) + self.synthesis_kept

    def as_dict(self) -> dict:
        rows = {k: {"dense": v, "kept": v} for k, v in self.modules.items()}
        rows["synthesis"] = {"dense": self.synthesis_dense, "kept": self.synthesis_kept}
        return {"name": self.name, "arm_macs_per_latent": self.arm_per_latent, "macs_per_pixel": rows,
                "total": {"dense": self.total_dense, "kept": self.total}, "params": self.params,
                "source": self.source, "notes": self.notes}


def lottery_complexity(cfg: ArchConfig, height: int, width: int, name: str = "lotterycodec") -> Complexity:
    pixels = height * width
    shapes = cfg.grid_shapes(height, width)
    latents = sum(h * w for h, w in shapes)
    arm = sum(i * o for i, o in cfg.arm_in_out)  # the layers and the stabiliser (residual adds are not MACs)
    mw, mo, L = cfg.mod_width, cfg.mod_out, cfg.n_grids
    mod = L * mw + mw * mo + 2 * 9 * mo * mo
    params = {"arm": arm + sum(o for _, o in cfg.arm_in_out), "upsampling": 4 * cfg.ups_taps ** 2,
              "modulation": mod + mw + 3 * mo, "synthesis_random_weights": cfg.synth_weight_count,
              "synthesis_kept_weights": cfg.kept_weights}
    modules = {"arm": arm * latents / pixels,
               "upsampling": cumulative_upsampling_macs(shapes, cfg.ups_taps) / pixels,
               "modulation": float(mod)}
    if cfg.arm_parents:  # the parents' bilinear 2x (docs/FORMAT.md 6.2): 4 per latent of every grid but the coarsest
        modules["arm_parents"] = 4.0 * sum(h * w for h, w in shapes[:-1]) / pixels
    return Complexity(
        name, arm, modules,
        float(cfg.synth_weight_count), float(cfg.synth_macs_weights), params,
        source="this codec's header (docs/FORMAT.md section 3)")


def macs_per_pixel(cfg: ArchConfig, height: int, width: int) -> dict[str, float]:
    """Flat summary used by encode/decode reports."""
    c = lottery_complexity(cfg, height, width)
    return {**c.modules, "synthesis_dense": c.synthesis_dense, "synthesis_kept": c.synthesis_kept,
            "total_dense": c.total_dense, "total": c.total}


# ----------------------------------------------------------------------------- published anchors

# Cool-chic 4.2.0 (commit c26f6d3), cfg/dec/intra/{vlop,lop,mop,hop}.cfg: "arm_residue = C,L"
# (C context pixels, L hidden layers of width C), "layers_synthesis_residue" (out-kernel-type;
# X = 3 output channels), ups_k_size 8 and ups_preconcat_k_size 7, one feature per grid (7 grids).
COOLCHIC_42 = {
    "VLOP": (8, 1, [(8, 1), (3, 1), (3, 3)]),
    "LOP": (8, 2, [(16, 1), (3, 1), (3, 3), (3, 3)]),
    "MOP": (16, 2, [(16, 1), (3, 1), (3, 3), (3, 3)]),
    "HOP": (16, 2, [(48, 1), (3, 1), (3, 3), (3, 3)]),
}


def coolchic_complexity(preset: str, height: int, width: int) -> Complexity:
    ctx, hidden, layers = COOLCHIC_42[preset]
    shapes = grid_shapes(7, height, width)
    pixels = height * width
    latents = sum(h * w for h, w in shapes)
    arm = mlp_macs([ctx] * (hidden + 1) + [2])
    syn, c_in = 0, 7
    for out, k in layers:
        syn += c_in * out * k * k
        c_in = out
    ups = cumulative_upsampling_macs(shapes, 4, separable=True, preconcat_taps=7)
    return Complexity(
        f"Cool-chic 4.2 {preset}", arm,
        {"arm": arm * latents / pixels, "upsampling": ups / pixels, "modulation": 0.0},
        float(syn), float(syn),
        source=f"Orange-OpenSource/Cool-Chic@c26f6d3 cfg/dec/intra/{preset.lower()}.cfg",
        notes="synthesis trained and dense; separable symmetric 8-tap upsampling + 7-tap pre-concat filters")


# C3 (google-deepmind/c3_neural_compression@ce70560, configs/kodak.py and configs/clic2020.py):
# 7 grids, context_num_rows_cols (3, 3) -> 24 causal neighbours, entropy and synthesis MLPs
# (18, 18) for Kodak, (24, 24) for CLIC, where CLIC also conditions on a 3x3 patch of the
# bilinearly upsampled previous grid; two 3x3 residual convs 3 -> 3; each grid resized to full
# resolution by bilinear interpolation.
C3_CONFIGS = {"Kodak": (18, False), "CLIC": (24, True)}


def c3_complexity(config: str, height: int, width: int) -> Complexity:
    width_mlp, prev_grid = C3_CONFIGS[config]
    shapes = grid_shapes(7, height, width)
    pixels = height * width
    latents = sum(h * w for h, w in shapes)
    context = 24 + (9 if prev_grid else 0)
    arm = mlp_macs([context, width_mlp, width_mlp, 2])
    prev_ups = 4 * latents if prev_grid else 0  # one bilinear value per latent
    syn = mlp_macs([7, width_mlp, width_mlp, 3]) + 2 * 81
    return Complexity(
        f"C3 {config}", arm,
        {"arm": (arm * latents + prev_ups) / pixels, "upsampling": 4.0 * (len(shapes) - 1),
         "modulation": 0.0},
        float(syn), float(syn),
        source="google-deepmind/c3_neural_compression@ce70560 configs/"
               + ("kodak.py" if config == "Kodak" else "clic2020.py"),
        notes="C3's own utils/macs.py counts 8 MACs per bilinear output value (ours: 4 taps)")


def anchors(height: int, width: int) -> list[Complexity]:
    return ([coolchic_complexity(p, height, width) for p in COOLCHIC_42]
            + [c3_complexity(c, height, width) for c in C3_CONFIGS])
