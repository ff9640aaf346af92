"""A stand-in for Cool-chic's cc_decode.py (its command line only): JPEG to PNG."""
import argparse

from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--input", required=True)
p.add_argument("--output", required=True)
args = p.parse_args()
Image.open(args.input).convert("RGB").save(args.output)
