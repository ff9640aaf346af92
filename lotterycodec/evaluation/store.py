"""Our files and their records under OUT/files: what is finished (resumable when every setting
matches), what is missing, and the measured row of a finished file."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..decoder.backends import get_backend
from .curves import OUR_NAME
from .metrics import Row, measure


def _paths(files: Path, name: str, lmbda: float) -> tuple[Path, Path]:
    path = files / f"{name}_lambda{lmbda:g}.lotc"
    return path, path.with_suffix(".json")


def _encoding_settings(settings: dict | None) -> dict | None:
    """Settings as the reuse test compares them: less the preset's description (wording, not a
    setting, so rewording a preset keeps its finished files)."""
    definition = (settings or {}).get("preset_definition")
    if not isinstance(definition, dict):
        return settings
    return {**settings, "preset_definition": {k: v for k, v in definition.items() if k != "description"}}


def _finished(files: Path, name: str, lmbda: float, settings: dict) -> dict | None:
    path, record_path = _paths(files, name, lmbda)
    record = json.loads(record_path.read_text()) if record_path.exists() and path.exists() else None
    if record is None or _encoding_settings(record.get("settings")) != _encoding_settings(settings):
        return None
    return record


def missing_jobs(name: str, image: np.ndarray, lmbdas: list[float], files: Path, settings_for, batch: int,
                 device: str, threads: int | None = None) -> list:
    """The lambdas of one image without a finished file, ``batch`` of one architecture per job (one
    batched training); settings_for(lambda): the settings its record must match."""
    from .jobs import EncodeJob
    groups: dict[str, list[float]] = {}
    for lm in lmbdas:
        settings = settings_for(lm)
        if _finished(files, name, lm, settings) is None:
            groups.setdefault(json.dumps(settings, sort_keys=True), []).append(lm)
    return [EncodeJob(name, image, missing[i:i + batch], settings_for(missing[0]), device, threads)
            for missing in groups.values() for i in range(0, len(missing), batch)]


def store(files: Path, settings_for, items: list) -> None:
    """Writes finished encodes; a file's record is written last and marks it finished."""
    for item in items:
        path, record_path = _paths(files, item.name, item.lmbda)
        path.write_bytes(item.data)
        record = {"settings": settings_for(item.lmbda), "encoding_time": item.encoding_time, "summary": item.summary}
        record_path.write_text(json.dumps(record, indent=1))


def our_row(name: str, image: np.ndarray, lmbda: float, files: Path, settings: dict) -> Row:
    """Decodes the finished file of one image at one lambda and measures it."""
    path, _ = _paths(files, name, lmbda)
    record = _finished(files, name, lmbda, settings)
    data = path.read_bytes()
    t0 = time.perf_counter()
    decoded = get_backend("auto")(data).image
    return measure(OUR_NAME, f"{lmbda:g}", name, image, data, decoded, record["encoding_time"],
                   time.perf_counter() - t0)
