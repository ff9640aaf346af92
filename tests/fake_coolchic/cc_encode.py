"""A stand-in for Cool-chic's cc_encode.py (its command line only) for the eval's peer tests: a JPEG
whose quality falls with lambda. Prints the thread count it was given."""
import argparse
import os

from PIL import Image

p = argparse.ArgumentParser()
for flag in ("--input", "--output", "--workdir", "--dec_cfg_residue"):
    p.add_argument(flag, required=True)
p.add_argument("--lmbda", type=float, required=True)
p.add_argument("--n_itr", type=int, required=True)
args = p.parse_args()
if args.lmbda == 0.5:
    raise SystemExit("fake encoder: lambda 0.5 refused")
print("residue decoder:     1234 MAC / pixel")
print(f"threads {os.environ.get('OMP_NUM_THREADS')} n_itr {args.n_itr} cfg {os.path.basename(args.dec_cfg_residue)}")
Image.open(args.input).save(args.output, "JPEG", quality=max(5, min(95, round(100 - 3000 * args.lmbda))))
