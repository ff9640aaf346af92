"""Peer codecs in the same run: the user's own Cool-chic checkout, run through its command line in a
subprocess (never imported here, never vendored), on exactly the pixels our codec gets.

``--peer coolchic=DIR[,python=PY][,n_itr=N][,cfg=hop][,lmbda=A:B:...][,threads=T][,name=NAME]``:
Cool-chic's ``cc_encode.py`` writes the bitstream, its own ``cc_decode.py`` decodes it, and the
point is measured like ours (bpp from the file size, PSNR-RGB / MS-SSIM of the decoded PNG).
Cool-chic's lambda scale is not ours, so its grid is its own (``lmbda=``, default the eval's) and is
recorded. Each finished item keeps a record of every setting (the checkout's commit included) and
is reused when they match, like our files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .metrics import Row, measure

KINDS = ("coolchic",)


@dataclass(frozen=True)
class Peer:
    kind: str
    directory: str
    python: str = sys.executable
    n_itr: int = 2000
    cfg: str = "hop"
    lmbdas: tuple[float, ...] = ()     # empty: the eval's grid
    threads: int = 1
    name: str = ""
    commit: str = field(default="", compare=False)

    @classmethod
    def parse(cls, spec: str) -> "Peer":
        kind, _, rest = spec.partition("=")
        if kind not in KINDS:
            raise ValueError(f"--peer {spec!r}: unknown peer {kind!r} (known: {', '.join(KINDS)})")
        directory, *options = rest.split(",")
        if not directory:
            raise ValueError(f"--peer {spec!r}: give the checkout, {kind}=DIR")
        fields: dict = {"kind": kind, "directory": str(Path(directory).expanduser().resolve())}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep:
                raise ValueError(f"--peer {spec!r}: option {option!r} is not KEY=VALUE")
            if key == "python":
                fields["python"] = value
            elif key in ("n_itr", "threads"):
                fields[key] = int(value)
            elif key == "cfg":
                fields["cfg"] = value
            elif key == "lmbda":
                fields["lmbdas"] = tuple(float(x) for x in value.split(":"))
            elif key == "name":
                fields["name"] = value
            else:
                raise ValueError(f"--peer {spec!r}: unknown option {key!r} "
                                 "(python, n_itr, cfg, lmbda, threads, name)")
        peer = cls(**fields)
        peer.check()
        return peer

    @property
    def curve(self) -> str:
        return self.name or f"{self.kind}-{self.cfg}-{self.n_itr}itr"

    @property
    def dec_cfg(self) -> Path:
        return Path(self.directory) / "cfg" / "dec" / "intra" / f"{self.cfg}.cfg"

    def check(self) -> None:
        """Clear errors before anything trains."""
        root = Path(self.directory)
        for script in ("cc_encode.py", "cc_decode.py"):
            if not (root / script).is_file():
                raise ValueError(f"{root} is not a Cool-chic checkout: no {script}")
        if not self.dec_cfg.is_file():
            known = sorted(p.stem for p in (root / "cfg" / "dec" / "intra").glob("*.cfg"))
            raise ValueError(f"no decoder config {self.cfg!r} in {root}/cfg/dec/intra ({', '.join(known)})")
        if self.n_itr < 1 or self.threads < 1:
            raise ValueError("peer n_itr and threads must be positive")

    def with_commit(self) -> "Peer":
        try:
            commit = subprocess.run(["git", "-C", self.directory, "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown (not a git checkout)"
        return Peer(**{**asdict(self), "commit": commit})

    def settings(self, crop: int) -> dict:
        """What a finished item's record must match to be reused."""
        return {"kind": self.kind, "commit": self.commit, "python": self.python, "n_itr": self.n_itr,
                "dec_cfg": self.cfg, "threads": self.threads, "crop": crop}


@dataclass
class PeerItem:
    peer: Peer
    image_name: str
    image: np.ndarray
    lmbda: float
    folder: Path

    def path(self, suffix: str) -> Path:
        """This item's files: bitstream ".cool", record ".json", "_decoded.png", logs, "_workdir"."""
        return self.folder.resolve() / f"{self.image_name}_lambda{self.lmbda:g}{suffix}"


def thread_env(threads: int) -> dict:
    """This environment with every thread-count variable the peer's libraries read set to ``threads``."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _run(command: list[str], log: Path, threads: int, what: str) -> float:
    """Runs one peer command, its output kept in ``log``; returns its wall time."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=thread_env(threads))
    seconds = time.perf_counter() - t0
    if done.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-8:])
        raise RuntimeError(f"{what} failed (exit {done.returncode}); its output is in {log}:\n{tail}")
    return seconds


def encode_item(item: PeerItem, settings: dict) -> dict:
    """Encodes and decodes one item with the peer's own scripts; writes its record last."""
    peer, label = item.peer, f"{item.image_name}_lambda{item.lmbda:g}"
    source = item.folder.resolve() / f"{item.image_name}.png"
    if not source.exists():
        Image.fromarray(item.image).save(source)  # our exact pixels, no metadata
    # A fresh workdir each time: Cool-chic skips training when its workdir holds a finished frame,
    # and it resolves paths from there, so every path given is absolute.
    workdir = item.path("_workdir")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    root = Path(peer.directory)
    t_enc = _run([peer.python, str(root / "cc_encode.py"), "--input", str(source), "--output", str(item.path(".cool")),
                  "--workdir", str(workdir), "--lmbda", repr(item.lmbda), "--n_itr", str(peer.n_itr),
                  "--dec_cfg_residue", str(peer.dec_cfg)],
                 item.path("_encode.log"), peer.threads, f"{peer.curve} encode of {label}")
    t_dec = _run([peer.python, str(root / "cc_decode.py"), "--input", str(item.path(".cool")),
                  "--output", str(item.path("_decoded.png"))],
                 item.path("_decode.log"), peer.threads, f"{peer.curve} decode of {label}")
    shutil.rmtree(workdir)  # checkpoints; its logs are in _encode.log
    record = {"settings": settings, "encoding_time": t_enc, "decoding_time": t_dec}
    item.path(".json").write_text(json.dumps(record, indent=1))
    return record


def _finished(item: PeerItem, settings: dict) -> dict | None:
    path = item.path(".json")
    if not (path.exists() and item.path(".cool").exists()):
        return None
    record = json.loads(path.read_text())
    return record if record.get("settings") == settings else None


def peer_rows(peers: list[Peer], images: dict[str, np.ndarray], lmbdas: list[float], out_dir: Path, crop: int,
              workers: int = 1, log=print) -> tuple[list[Row], dict]:
    """Every peer x image x lambda (resumable), ``workers`` subprocesses at a time; returns the
    measured rows and what the report records of each peer."""
    items, recorded = [], {}
    for peer in peers:
        peer = peer.with_commit()
        folder = out_dir / "peers" / peer.curve
        folder.mkdir(parents=True, exist_ok=True)
        grid = list(peer.lmbdas) or lmbdas
        recorded[peer.curve] = {**peer.settings(crop), "directory": peer.directory, "lambdas": grid,
                                "command": f"cc_encode.py --input IMAGE --output OUT --workdir WORKDIR --lmbda L "
                                           f"--n_itr {peer.n_itr} --dec_cfg_residue {peer.dec_cfg}; "
                                           f"cc_decode.py --input OUT --output DECODED.png",
                                "threads_env": "OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=threads"}
        items += [PeerItem(peer, name, image, lm, folder) for name, image in images.items() for lm in grid]
    pending = [it for it in items if _finished(it, it.peer.settings(crop)) is None]
    if pending:
        log(f"peers: {len(pending)} of {len(items)} encodes to run ({workers} at a time)")
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for it, record in zip(pending, pool.map(lambda it: encode_item(it, it.peer.settings(crop)), pending)):
                log(f"  {it.peer.curve} {it.image_name} lambda {it.lmbda:g}: encode {record['encoding_time']:.0f} s, "
                    f"decode {record['decoding_time']:.1f} s")
    rows = []
    for it in items:
        record = _finished(it, it.peer.settings(crop))
        data = it.path(".cool").read_bytes()
        with Image.open(it.path("_decoded.png")) as im:
            decoded = np.asarray(im.convert("RGB"))
        if decoded.shape != it.image.shape:
            raise RuntimeError(f"{it.peer.curve} decoded {it.image_name} at {decoded.shape[1]}x{decoded.shape[0]}, "
                               f"not {it.image.shape[1]}x{it.image.shape[0]}")
        rows.append(measure(it.peer.curve, f"{it.lmbda:g}", it.image_name, it.image, data, decoded,
                            record["encoding_time"], record["decoding_time"]))
    return rows, recorded
