"""`lotterycodec` command line: main(argv) -> exit code; errors are one line, never a traceback."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .trainer.presets import PRESETS
from .decoder.config import FormatError
from .decoder.imageio import ImageError


_PRESET_HELP = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
_THREADS_HELP = ("torch threads for training (default: measured among the cores this process may run on, "
                 "half of them and 1, and re-measured as training goes, so a busy machine does not stall it)")

_SEEDS_HELP = ("seed search: K candidate seeds (SEED, SEED+1, ...) per image train together for the preset's "
               "warm-up, the best continues and is written (default: the preset's)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _allow_worker_processes() -> None:
    # A batch's files are written in worker processes, which import the main module again: safe
    # here (the console script guards its top level; a package's __main__ is never re-imported).
    from .trainer.workers import allow_worker_processes
    allow_worker_processes()


def _encode(args) -> dict:
    from pathlib import Path

    from .api import encode, encode_many
    arch = {}
    if args.arm is not None:
        arch.update(arm_context=args.arm[0], arm_width=args.arm[1])
    if args.stripe_height is not None:
        arch.update(stripe_height=args.stripe_height)
    common = dict(lmbda=args.lmbda, kept_ratio=args.kept_ratio, preset=args.preset, steps=args.steps, seed=args.seed,
                  device=args.device, progress=not args.json, backend=args.backend, arch=arch,
                  finetune_steps=args.finetune_steps, threads=args.threads, seeds=args.seeds)
    if len(args.input) > 1 or Path(args.output).is_dir() or args.output.endswith(("/", "\\")):
        _allow_worker_processes()
        return {"files": encode_many(args.input, args.output, batch=args.batch, **common)}
    return encode(args.input[0], args.output, **common)


def _print_encode(s: dict) -> None:
    if "files" in s:
        for i, one in enumerate(s["files"]):
            if i:
                print()
            _print_encode(one)
        return
    rate = s["rate_estimate"]
    b = s["bytes_breakdown"]
    print(f"wrote {s['output']}: {s['bytes']} bytes, {s['bpp']:.4f} bpp (real, from file size)")
    print(f"PSNR of the decoded file: {s['psnr']:.3f} dB  (training float estimate {s['psnr_training_float']:.3f} dB)")
    print(f"latent rate: {rate['latent_bpp_in_file']:.4f} bpp in file, "
          f"{rate['latent_bpp_training_estimate']:.4f} bpp training estimate")
    print(f"bytes: header {b['header']}, networks {b['networks']} {b['network_bits']} bits, "
          f"mask {b['mask']}, latent index {b['latent_index']}, latents {b['latents']}, crc {b['crc']}")
    m = s["macs_per_pixel"]
    print(f"MACs/pixel: {m['total']:.0f} (ARM {m['arm']:.0f}, upsampling {m['upsampling']:.0f}, "
          f"modulation {m['modulation']:.0f}, synthesis {m['synthesis_kept']:.0f} kept of {m['synthesis_dense']:.0f})")
    t = s["times"]
    batch = f" for a batch of {t['batch_size']}" if t["batch_size"] > 1 else ""
    print(f"encode time {t['encode_s']:.1f} s (training {t['train_s']:.1f} s){batch}, decode time {t['decode_s']:.2f} s "
          f"[{s['decode_backend']}]")


def _decode(args) -> dict:
    from .api import decode
    _, summary = decode(args.input, args.output, backend=args.backend, threads=args.threads,
                        max_pixels=args.max_pixels)
    summary["output"] = args.output
    return summary


def _print_decode(s: dict) -> None:
    t = s["times"]
    stages = ", ".join(f"{k[:-2]} {v * 1000:.1f} ms" for k, v in t.items() if k not in ("decode_s", "total_s"))
    print(f"wrote {s['output']}: {s['width']}x{s['height']}, {s['bpp']:.4f} bpp")
    print(f"decode time {t['decode_s'] * 1000:.1f} ms [{s['backend']}] ({stages})")


def _profile(args) -> dict:
    from .profile import parse_config_overrides, profile_config, profile_file
    if args.input is not None:
        if args.config or args.kept_ratio is not None:
            raise ValueError("give a file or --config/--kept-ratio, not both")
        return profile_file(args.input)
    width, _, height = args.size.partition("x")
    return profile_config(parse_config_overrides(args.config or []), int(height), int(width), args.kept_ratio)


def _print_profile(report: dict) -> None:
    from .profile import format_table
    print(format_table(report))


def _bench(args) -> dict:
    from . import bench
    report = bench.run(args.files, bench.resolve_backends(args.backend),
                       [int(t) for t in args.threads.split(",")], args.repeat, args.warmup, args.anchor)
    if args.tsv:
        bench.write_tsv(report, args.tsv)
    if args.plot:
        bench.write_plot(report, args.plot)
    return report


def _print_bench(report: dict) -> None:
    from .bench import format_table
    print(format_table(report))


def _eval(args) -> dict:
    try:
        from .evaluation import run
    except ImportError as exc:
        raise RuntimeError(f"eval encodes, so it needs the trainer: pip install 'lotterycodec[train,eval]' ({exc})")
    _allow_worker_processes()
    arch = {}
    for item in args.arch or []:
        key, _, value = item.partition("=")
        arch[key] = int(value)
    return run(args.dataset, [float(x) for x in args.lmbda.split(",")], args.out, preset=args.preset,
               steps=args.steps, crop=args.crop, images=args.images.split(",") if args.images else None,
               codecs=[c for c in args.codecs.split(",") if c], kept_ratio=args.kept_ratio, arch=arch,
               batch=args.batch, device=args.device, cluster=args.cluster, workers=args.workers, retries=args.retries,
               progress=not args.json, threads=args.threads, seeds=args.seeds, peers=args.peer)


def _print_eval(report: dict) -> None:
    print(f"{len(report['images'])} images, lambdas {', '.join(f'{x:g}' for x in report['lambdas'])}; "
          f"{report['aggregation']}")
    for name, pts in report["curves"].items():
        print(f"{name:>20}: " + "  ".join(f"{p['bpp']:.3f}/{p['psnr']:.2f}" for p in pts))
    ours = next(n for n in report["curves"] if n.startswith("lotterycodec"))
    cells = [f"{a}: {v[0]:+.1f} %" for a, v in report["bd_rate"][ours].items() if v is not None]
    print(f"BD-rate of {ours} (PCHIP, overlapping PSNR range): " + ", ".join(cells))


def _chart(args) -> dict:
    from .evaluation import chart
    threads = None if args.threads == "auto" else [int(t) for t in args.threads.split(",")]
    report = chart.chart(args.evals, chart.parse_times(args.time), anchor=args.anchor, threads=threads,
                         repeat=args.repeat, log=(lambda *a: None) if args.json else print,
                         decoders=chart.parse_decoders(args.decoder_only, args.decoder_macs))
    report["written"] = str(chart.write(report, args.out))
    return report


def _print_chart(report: dict) -> None:
    for p in report["points"]:
        times = ", ".join(f"{n} thread(s) {t['mean']:.1f} ms/MP" for n, t in p["decode_ms_per_mpixel"].items())
        bd = "n/a" if p["bd_rate_vs_anchor"] is None else f"{p['bd_rate_vs_anchor']:+.1f} %"
        macs = f", {p['macs_per_pixel']:.0f} MACs/pixel" if p.get("macs_per_pixel") else ""
        print(f"{p['curve']:>24}: BD-rate vs {report['anchor']} {bd}; {times or 'not timed'}{macs}")
    print(f"wrote {report['written']}/chart.json and chart.png")


def _add_encode(sub) -> None:
    e = sub.add_parser("encode", help="compress PNGs into .lotc bitstreams")
    e.add_argument("input", nargs="+", help="one PNG, or several (then -o is a folder: one NAME.lotc per input)")
    e.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    e.add_argument("--batch", type=int, default=8,
                   help="images of one size trained at once in one batched model (several inputs)")
    e.add_argument("--lmbda", type=float, default=1e-3, help="rate weight: larger = smaller file")
    e.add_argument("--kept-ratio", type=float, default=None,
                   help="fraction of the random synthesis weights kept (the authors' --sparsity is 1 - this; "
                        "default: the preset's, 0.7 for most)")
    e.add_argument("--preset", default="cpu", choices=list(PRESETS), help=_PRESET_HELP)
    e.add_argument("--steps", type=int, default=None, help="override the preset's stage-1 step count")
    e.add_argument("--finetune-steps", type=int, default=None,
                   help="stage-2 steps (straight-through rounding, keeps the best state); default: the preset's")
    e.add_argument("--seed", type=int, default=1, help="seed of the random synthesis weights (the first candidate's)")
    e.add_argument("--seeds", type=_positive_int, default=None, help=_SEEDS_HELP)
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    e.add_argument("--threads", type=_positive_int, default=None, help=_THREADS_HELP)
    e.add_argument("--arm", type=int, nargs=2, metavar=("CONTEXT", "WIDTH"), default=None,
                   help="ARM context pixels and hidden width (default: the preset's)")
    e.add_argument("--stripe-height", type=int, default=None, help="latent rows per independent stripe")
    e.add_argument("--backend", default="auto", help="backend that decodes the written file for the report")
    e.add_argument("--json", action="store_true", help="print one JSON summary object, no progress bar")
    e.set_defaults(run=_encode, show=_print_encode)


def _add_decode(sub) -> None:
    d = sub.add_parser("decode", help="decode a .lotc bitstream to an image")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--backend", default="auto", help="auto (cpu when built) | cpu | reference | triton (GPU)")
    d.add_argument("--threads", type=int, default=None, help="cpu backend threads (default: every core)")
    d.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help="refuse a file declaring more than N pixels before decoding it (default: the format's "
                        "own bound, 2^26)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(run=_decode, show=_print_decode)


def _add_profile(sub) -> None:
    pr = sub.add_parser("profile", help="MACs/pixel per module of a file or a configuration, beside "
                                         "Cool-chic 4.2 and C3")
    pr.add_argument("input", nargs="?", default=None, help="a .lotc file (else --config)")
    pr.add_argument("--config", nargs="*", metavar="FIELD=INT", help="architecture fields to change")
    pr.add_argument("--kept-ratio", type=float, default=None)
    pr.add_argument("--size", default="768x512", help="WIDTHxHEIGHT for --config (default Kodak)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(run=_profile, show=_print_profile)


def _add_bench(sub) -> None:
    b = sub.add_parser("bench", help="decode latency per file, backend and thread count")
    b.add_argument("files", nargs="+")
    b.add_argument("--backend", default="all", help="all (every backend usable here) | comma list of reference, triton")
    b.add_argument("--threads", default="1", help="comma list, for backends that take a thread count")
    b.add_argument("--repeat", type=int, default=5, help="timed decodes per row (median reported)")
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--anchor", default=None, metavar="CMD",
                   help="another decoder's command line, timed in the same run (Cool-chic's ccdec "
                        "'time: ... all X' line is read when printed); rows get their ratio to it")
    b.add_argument("--tsv", default=None, help="also write a TSV with Cool-chic's dec_time_* columns")
    b.add_argument("--plot", default=None, help="also write a PNG of latency against MACs/pixel")
    b.add_argument("--json", action="store_true")
    b.set_defaults(run=_bench, show=_print_bench)


def _add_eval(sub) -> None:
    ev = sub.add_parser("eval", help="RD curve of a folder of PNGs at several lambdas beside JPEG, WebP, AVIF "
                                     "and JPEG XL, with BD-rates (resumable)")
    ev.add_argument("dataset", help="folder of PNG images")
    ev.add_argument("--lmbda", required=True, help="comma list, e.g. 1e-2,4e-3,1e-3,3e-4")
    ev.add_argument("--preset", default="cpu", choices=list(PRESETS), help=_PRESET_HELP)
    ev.add_argument("--steps", type=int, default=None, help="override the preset's stage-1 step count")
    ev.add_argument("--crop", type=int, default=0, help="centre crops of N x N (0: whole images)")
    ev.add_argument("--images", default="", help="comma list of image names (default: every PNG)")
    ev.add_argument("--codecs", default="jpeg,webp,avif,jxl", help="classical codecs measured in the same run")
    ev.add_argument("--kept-ratio", type=float, default=None, help="default: the preset's")
    ev.add_argument("--arch", nargs="*", metavar="FIELD=INT", help="architecture fields to change")
    ev.add_argument("--out", default="eval_out", help="output folder (finished encodes in it are reused)")
    ev.add_argument("--batch", type=int, default=8,
                    help="lambdas of one image trained at once in one batched model")
    ev.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ev.add_argument("--threads", type=_positive_int, default=None, help=_THREADS_HELP)
    ev.add_argument("--seeds", type=_positive_int, default=None, help=_SEEDS_HELP)
    ev.add_argument("--cluster", default=None, metavar="ADDRESS",
                    help="Dask scheduler (tcp://host:8786) that runs the encode jobs (pip install '.[cluster]')")
    ev.add_argument("--workers", type=int, default=1, help="local worker processes when no --cluster")
    ev.add_argument("--retries", type=int, default=2, help="tries after a failed encode job")
    ev.add_argument("--peer", action="append", default=[], metavar="coolchic=DIR[,KEY=VALUE...]",
                    help="a peer codec from your own checkout, run in a subprocess on the same pixels, its curve "
                         "beside ours (repeatable). Keys: python=PY (default this one), n_itr=N (2000), cfg=NAME "
                         "(hop: cfg/dec/intra/NAME.cfg), lmbda=A:B:... (its own grid; default the eval's), "
                         "threads=T (1), name=CURVE")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(run=_eval, show=_print_eval)


def _add_chart(sub) -> None:
    c = sub.add_parser("chart", help="BD-rate against decode time per megapixel, one point per configuration "
                                      "(from eval folders; decoders timed here)")
    c.add_argument("evals", nargs="+", help="eval output folders (their summary.json)")
    c.add_argument("--time", action="append", default=[], metavar="CURVE=FILE[:FILE...]",
                   help="full-size files of a curve's configuration(s) to time it on (ours: .lotc; a peer: its "
                        "bitstreams, decoded by its own decoder); curves without files are listed, not plotted")
    c.add_argument("--decoder-only", action="append", default=[], metavar="NAME=COMMAND",
                   help="a decoder with no RD in these evals (e.g. Cool-chic 4.2's ccdec), timed decoding one "
                        "full-size file to {out} (PPM/PNG); drawn as a vertical line at its decode time")
    c.add_argument("--decoder-macs", action="append", default=[], metavar="NAME=N",
                   help="MACs/pixel to annotate a --decoder-only line with")
    c.add_argument("--anchor", default="avif", help="the curve BD-rates are measured against")
    c.add_argument("--threads", default="auto", help="comma list (default: 1 and every core)")
    c.add_argument("--repeat", type=int, default=5, help="timed decodes per file (median)")
    c.add_argument("--out", default="chart", help="folder for chart.json and chart.png")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=_chart, show=_print_chart)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lotterycodec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_encode, _add_decode, _add_profile, _add_bench, _add_eval, _add_chart):
        add(sub)
    return p


def _exit_on_sigterm(signum, frame):
    # SIGTERM (a scheduler's, `kill`) unwinds like Ctrl-C: cleanup runs (an eval stops its workers,
    # evaluation.jobs._stop) and the exit status says why (128 + 15).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    try:
        return _run(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _run(args) -> int:
    try:
        summary = args.run(args)
    except (FormatError, ImageError, ValueError, RuntimeError, OSError, MemoryError) as exc:
        print(f"lotterycodec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.json:
            print(json.dumps(summary))
        else:
            args.show(summary)
    except BrokenPipeError:  # e.g. piped into head
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
