"""`lotterycodec profile`: decoding complexity of a file or a configuration, beside Cool-chic and C3.

Counts are analytic (decoder/complexity.py); the conventions are in docs/PROFILE.md.
"""
from __future__ import annotations

from pathlib import Path

from .decoder.complexity import Complexity, anchors, lottery_complexity
from .decoder.config import CONFIG_FIELDS, ArchConfig, kept_weights_for
from .decoder.format import read_bitstream, read_networks


def parse_config_overrides(items: list[str]) -> dict[str, int]:
    known = {f.name for f in CONFIG_FIELDS}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--config expects FIELD=INT with FIELD one of: {', '.join(sorted(known))}")
        out[key] = int(value)
    return out


def profile_file(path: str | Path) -> dict:
    data = Path(path).read_bytes()
    bs = read_bitstream(data)
    nets = read_networks(bs.networks, bs.cfg)
    ours = lottery_complexity(bs.cfg, bs.height, bs.width, name=f"lotterycodec {Path(path).name}")
    file_part = {"bytes": len(data), "bpp": 8 * len(data) / (bs.width * bs.height),
                 "bytes_per_part": bs.section_bytes, "network_bits_per_module": nets.bits}
    return _report(ours, bs.height, bs.width, file_part)


def profile_config(overrides: dict[str, int], height: int, width: int, kept_ratio: float | None) -> dict:
    cfg = ArchConfig(**overrides)
    if kept_ratio is not None:
        cfg = cfg.replace(kept_weights=kept_weights_for(cfg, kept_ratio))
    return _report(lottery_complexity(cfg.validate(), height, width), height, width, None)


def _report(ours: Complexity, height: int, width: int, file_part: dict | None) -> dict:
    return {"width": width, "height": height, "ours": ours.as_dict(), "file": file_part,
            "anchors": [a.as_dict() for a in anchors(height, width)],
            "conventions": "docs/PROFILE.md: MACs per decoded pixel; biases and activations excluded; "
                           "ARM per latent, nominal over all latents; synthesis dense and as kept"}


def format_table(report: dict) -> str:
    cols = ["arm", "upsampling", "modulation"]
    head = (f"{'decoder':28s} {'ARM/latent':>10s} {'ARM':>8s} {'ups':>7s} {'mod':>7s} "
            f"{'syn dense':>9s} {'syn kept':>9s} {'total':>8s} {'total kept':>10s}")
    lines = [f"MACs per pixel at {report['width']}x{report['height']}", head, "-" * len(head)]
    for c in [report["ours"]] + report["anchors"]:
        m = c["macs_per_pixel"]
        lines.append(f"{c['name'][:28]:28s} {c['arm_macs_per_latent']:10d} "
                     + " ".join(f"{m[k]['dense']:{w}.1f}" for k, w in zip(cols, (8, 7, 7)))
                     + f" {m['synthesis']['dense']:9.0f} {m['synthesis']['kept']:9.0f} "
                       f"{c['total']['dense']:8.1f} {c['total']['kept']:10.1f}")
    p = report["ours"]["params"]
    lines.append("")
    lines.append("ours, parameters: " + ", ".join(f"{k} {v}" for k, v in p.items()))
    if report["file"]:
        f = report["file"]
        lines.append(f"file: {f['bytes']} bytes = {f['bpp']:.4f} bpp; parts (bytes): "
                     + ", ".join(f"{k} {v}" for k, v in f["bytes_per_part"].items())
                     + "; network bits: " + ", ".join(f"{k} {v}" for k, v in f["network_bits_per_module"].items()))
    lines.append("sources: " + "; ".join(f"{a['name']}: {a['source']}" for a in report["anchors"]))
    lines.append("conventions: " + report["conventions"])
    return "\n".join(lines)
