"""A stand-in for Cool-chic 4.x's C++ decoder `ccdec` (its --input=/--output= options and its
`time:` line): writes a 32x16 grey PPM and reports 0.25 s for `all`."""
import sys

args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:])
with open(args["output"], "wb") as f:
    f.write(b"P6\n32 16\n255\n" + bytes([128]) * (32 * 16 * 3))
print("time: arm 0.1 ups 0.05 syn 0.1 blend 0 warp 0 bpred 0 all 0.25")
