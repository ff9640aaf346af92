"""What the ARM's RDOQ (trainer.bitstream.rdoq_arm) saves on one trained 256x256 centre crop, exactly:
the item is trained once (one thread, seeded: deterministic), then its ARM is quantized by the step
search alone and by the search followed by the RDOQ, and both costs are counted in exact bits.

    python benchmarks/arm_rdoq_saving.py KODAK_DIR kodim23 1e-3 2800
"""
import os, sys, time
import numpy as np
import torch
from lotterycodec.decoder.imageio import load_image
from lotterycodec.trainer import bitstream
from lotterycodec.decoder.entropy import latent_inputs
from lotterycodec.decoder.format import tensor_bits
captured = []
orig = bitstream.pack
def spy(item):
    captured.append(item); return orig(item)
bitstream.pack = spy
import lotterycodec.trainer.encode as enc
import lotterycodec.trainer.workers as wk
wk.pack = spy  # pack_all packs a single item in this process
kodak, name, lmbda, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
img = load_image(os.path.join(kodak, f'{name}.png'))
h, w = img.shape[:2]; img = np.ascontiguousarray(img[(h-256)//2:(h-256)//2+256, (w-256)//2:(w-256)//2+256])
torch.set_num_threads(1)
r = enc.encode_array(img, lmbda=lmbda, preset='cpu', steps=steps, progress=False, threads=1)
item = captured[-1]
inputs = latent_inputs(item.grids, item.cfg)
frac, arm, lat, net = bitstream.search_arm(item.arm_float, item.grids, item.cfg, inputs)
cfg = item.cfg.replace(arm_frac_bits=frac)
t = time.time()
arm2, lat2, moves = bitstream.rdoq_arm(arm, item.grids, cfg, inputs, lat)
net2 = sum(tensor_bits(x) for x in arm2.weights + arm2.biases)
saved = lat + net - lat2 - net2
without = len(r.data) * 8 + saved  # the written file has had the RDOQ (trainer.bitstream.pack)
print(f"{name} lmbda {lmbda} steps {steps}: file without the ARM RDOQ {without:.0f} bits; ARM {net:.0f} -> {net2:.0f} bits, "
      f"latents {lat:.0f} -> {lat2:.0f}; saved {saved:.0f} bits = {100 * saved / without:.2f} % of it; {moves} moves "
      f"in {time.time() - t:.1f} s")
