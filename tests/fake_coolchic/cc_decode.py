"""A stand-in for Cool-chic's cc_decode.py (its command line and its timing line): JPEG to PNG."""
import argparse
import time

from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--input", required=True)
p.add_argument("--output", required=True)
args = p.parse_args()
t0 = time.perf_counter()
Image.open(args.input).convert("RGB").save(args.output)
print(f"Decoding frame 0    time = {time.perf_counter() - t0 + 0.5:6.2f} seconds.")
