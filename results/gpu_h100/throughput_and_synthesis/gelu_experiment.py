"""Session-6 experiment: the synthesis GELU with an approximate divide and exp2 (not committed)."""
import json, sys, numpy as np, torch, triton, triton.language as tl
sys.path.insert(0, "benchmarks")
from gpu_bench import timed
from lotterycodec.decoder import reference
from lotterycodec.decoder.config import kept_weights_for
from lotterycodec.decoder.entropy import decode_mask
from lotterycodec.decoder.format import read_bitstream, read_networks
from lotterycodec.decoder.backends import cpu_latents
from lotterycodec.kernels import synthesis
from lotterycodec.kernels.philox import masked_weights
from lotterycodec.kernels.upsample import upsample

@triton.jit
def _gelu_fast(x):
    k = x * (-2.0 * 1.4426950408889634 * 0.7978845608028654) * (1.0 + 0.044715 * x * x)
    return tl.fdiv(x, 1.0 + tl.math.exp2(tl.minimum(tl.maximum(k, -43.0), 43.0)), ieee_rounding=False)

dev = torch.device("cuda")
ORIGINAL = synthesis._gelu
out = {}
for name in ["results/bench_kodim14/kodim14_k0.7.lotc", "results/bench_kodim14/kodim14_k0.3.lotc"]:
    data = open(name, "rb").read()
    bs = read_bitstream(data); nets = read_networks(bs.networks, bs.cfg)
    masks = decode_mask(bs.mask_counts, bs.mask_words, bs.cfg.synth_in_out)
    fnets = reference.FloatNetworks.from_quantized(nets, bs.cfg)
    ref = reference.decode(data).image.astype(int)
    up = upsample([torch.from_numpy(g.astype(np.float32)).to(dev) for g in cpu_latents(data)],
                  torch.from_numpy(fnets.ups_kernel).to(dev))
    p = synthesis.prepare(fnets.mod, masked_weights(bs.seed, bs.cfg.synth_in_out, masks, dev), dev)
    for gname, g in [("exp_div", ORIGINAL), ("exp2_fdiv", _gelu_fast)]:
        synthesis._gelu = g
        synthesis.kernels.cache_clear()
        for block, warps in [(128, 4), (256, 8), (64, 2), (256, 4)]:
            ms = timed(lambda: synthesis.run(up, p, block, warps), dev, 30, 5)
            diff = int(np.abs(synthesis.run(up, p, block, warps).cpu().numpy().astype(int) - ref).max())
            out[f"{name.split('/')[-1]}_{gname}_{block}x{warps}"] = {"ms": ms, "max_level_diff": diff}
            print(name, gname, block, warps, round(ms, 4), diff, flush=True)
    synthesis._gelu = ORIGINAL
    synthesis.kernels.cache_clear()
json.dump(out, open(sys.argv[1], "w"), indent=1)
