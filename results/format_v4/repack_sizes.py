"""Rewrites files in the current format version (in memory: the files are not changed) and prints
each one's size before and after; checks that the rewritten file decodes to the same image.

    python results/format_v4/repack_sizes.py results/cpu_crop256_vs_coolchic/files/*.lotc
"""
import sys

import numpy as np

from lotterycodec.decoder.backends import available_backends, get_backend
from lotterycodec.decoder.format import rewrite_bitstream

decode = get_backend("cpu" if "cpu" in available_backends() else "reference")
total_old = total_new = 0
print("file\tversion\tbytes\tnew bytes\tsaved\tsaved %")
for path in sys.argv[1:]:
    old = open(path, "rb").read()
    new = rewrite_bitstream(old)
    assert np.array_equal(decode(old).image, decode(new).image), path
    total_old, total_new = total_old + len(old), total_new + len(new)
    print(f"{path}\t{old[4]}->{new[4]}\t{len(old)}\t{len(new)}\t{len(old) - len(new)}\t"
          f"{100 * (len(old) - len(new)) / len(old):.2f}")
print(f"total\t\t{total_old}\t{total_new}\t{total_old - total_new}\t{100 * (total_old - total_new) / total_old:.2f}")
