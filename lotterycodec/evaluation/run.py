"""The eval itself: every image x lambda encoded as a job (resumable), the classical codecs on the
same pixels, curves, BD-rates and the written report."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path


from ..decoder.imageio import center_crop, load_image
from .codecs import CLASSICAL, classical_rows
from .curves import OUR_NAME, bd_rate, curves_of, kodak_mismatch, published_curves
from .metrics import Row
from .peers import Peer, peer_rows
from .report import versions, write_outputs
from .store import missing_jobs, our_row, store
from ..trainer.presets import get_preset, item_arch, item_steps


def our_curve(preset: str, kept_ratio: float, arch: dict | None = None) -> str:
    """Our curve's name: the preset, then each complexity setting the eval changed in it (kept ratio,
    architecture fields), so evals of one preset at several complexities chart side by side. Step
    counts are left out: they change the encoder's budget, not the decoder."""
    parts = [OUR_NAME, preset]
    if kept_ratio != get_preset(preset).kept_ratio:
        parts.append(f"kept{kept_ratio:g}")
    parts += [f"{key}{value}" for key, value in sorted((arch or {}).items())]
    return "-".join(parts)


def _image_paths(dataset: str, images: list[str] | None) -> list[Path]:
    paths = sorted(Path(dataset).glob("*.png"))
    if images:
        wanted = set(images)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise ValueError(f"not in {dataset}: {', '.join(sorted(missing))}")
    if not paths:
        raise ValueError(f"no PNG images in {dataset}")
    return paths


def run(dataset: str, lmbdas: list[float], out: str, preset: str = "cpu", steps: int | None = None,
        crop: int = 0, images: list[str] | None = None, codecs: list[str] | None = None,
        kept_ratio: float | None = None, arch: dict | None = None, batch: int = 8, device: str = "cpu",
        cluster: str | None = None, workers: int = 1, retries: int = 2, progress: bool = True, log=print,
        threads: int | None = None, seeds: int | None = None, peers: list[str] | None = None) -> dict:
    """cluster: a Dask scheduler address (jobs run there); else ``workers`` local processes.
    threads: torch threads per encode job (None: measured in the job; a local pool's workers get
    an equal share of the cores, a Dask worker its own thread count).
    peers: ``--peer`` specs (peers.Peer.parse), run here after our encodes, ``workers`` at a time."""
    from .jobs import run_jobs

    kept_ratio = get_preset(preset).kept_ratio if kept_ratio is None else kept_ratio  # recorded as a number
    codecs = list(CLASSICAL) if codecs is None else codecs
    unknown = set(codecs) - set(CLASSICAL)
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(sorted(unknown))}; known: {', '.join(CLASSICAL)}")
    peer_list = [Peer.parse(spec) for spec in peers or []]
    if len({p.curve for p in peer_list}) < len(peer_list):
        raise ValueError("two --peer curves share a name: give one of them name=...")
    paths = _image_paths(dataset, images)
    out_dir = Path(out)
    files = out_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    # Everything an encode depends on, the preset's definition included: a finished file is reused
    # only when this matches its record (store._finished compares them, the preset's description aside).
    # "arch" and "steps" are the item's own (its lambda may select
    # the preset's low-rate ones), so the low-rate rule itself is left out of the recorded definition.
    chosen = get_preset(preset)
    settings = {"preset": preset, "preset_definition": {k: v for k, v in dataclasses.asdict(chosen).items()
                                                        if not k.startswith("low_rate")},
                "steps": steps, "crop": crop, "kept_ratio": kept_ratio, "arch": arch or {},
                "seeds": chosen.seeds if seeds is None else seeds}
    settings = json.loads(json.dumps(settings))  # as a record reads back (tuples become lists)

    def settings_for(lmbda: float) -> dict:
        return {**settings, "arch": item_arch(chosen, lmbda, arch), "steps": item_steps(chosen, lmbda, steps)}
    loaded = {}
    for path in paths:
        image = load_image(path)
        loaded[path.stem] = center_crop(image, crop) if crop else image
    jobs = [job for name, image in loaded.items()
            for job in missing_jobs(name, image, lmbdas, files, settings_for, batch, device, threads)]
    resources = {"GPU": 1} if device == "cuda" else None  # a cluster's GPU workers declare --resources GPU=1
    run_jobs(jobs, lambda items: store(files, settings_for, items), cluster=cluster, workers=workers, retries=retries,
             resources=resources, progress=progress)
    rows = _measure(loaded, lmbdas, files, settings_for, codecs, progress)
    peer_record = {}
    if peer_list:
        found, peer_record = peer_rows(peer_list, loaded, lmbdas, out_dir, crop, workers=workers,
                                       log=log if progress else lambda *a: None)
        rows.extend(found)

    ours = our_curve(preset, kept_ratio, arch)
    curves, bd, published = _compare(rows, ours, crop, loaded)
    report = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "dataset": str(dataset),
              "images": [p.stem for p in paths], "lambdas": lmbdas, "settings": settings,
              "engine": f"dask cluster {cluster}" if cluster else f"local, {workers} process(es)", "batch": batch,
              "classical": {c: CLASSICAL[c][2] for c in codecs}, "peers": peer_record,
              "published_curves": "compared (the dataset is the 24 Kodak images)" if published is None
              else f"not compared: {published}", "versions": versions(),
              "aggregation": "per point: mean of per-image bpp and mean of per-image PSNR-RGB / MS-SSIM",
              "bd_rate_method": "PCHIP of log10 rate over PSNR on the overlapping PSNR range (bjontegaard)",
              "curves": curves, "bd_rate": bd}
    write_outputs(out_dir, rows, report, ours)
    return report


def _measure(loaded: dict, lmbdas: list[float], files: Path, settings_for, codecs: list[str],
             progress: bool) -> list[Row]:
    """Rows of our finished files (decoded here) and of the classical codecs, image by image."""
    from tqdm import tqdm

    rows: list[Row] = []
    bar = tqdm(total=len(loaded) * len(lmbdas), desc="measure", unit="file", disable=not progress)
    for name, image in loaded.items():
        for lmbda in lmbdas:
            rows.append(our_row(name, image, lmbda, files, settings_for(lmbda)))
            bar.set_postfix(image=name, lmbda=f"{lmbda:g}", bpp=f"{rows[-1].bpp:.3f}",
                            psnr=f"{rows[-1].psnr_rgb:.2f}")
            bar.update()
        for codec in codecs:
            rows.extend(classical_rows(codec, name, image))
    bar.close()
    return rows


def _compare(rows: list[Row], ours: str, crop: int, loaded: dict) -> tuple[dict, dict, str | None]:
    """Curves (ours named by our_curve), BD-rates of every curve against every other, and why the
    published curves were left out (None: compared)."""
    curves = {(ours if k == OUR_NAME else k): v for k, v in curves_of(rows).items()}
    compared = dict(curves)
    # Published curves are means over the 24 whole Kodak images: compared only with exactly those.
    published = "whole images only: these are crops" if crop else kodak_mismatch(loaded)
    if published is None:
        compared.update(published_curves())
    bd = {test: {anchor: bd_rate(compared[anchor], compared[test]) for anchor in compared if anchor != test}
          for test in compared}
    return curves, bd, published
