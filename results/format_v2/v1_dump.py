"""Run with the format-v1 package: dumps each file's coded integers (pickle) for v2 repacking."""
import pickle, sys
from lotterycodec.decoder.format import read_bitstream, read_networks
out = {}
for f in sys.argv[2:]:
    bs = read_bitstream(open(f, "rb").read())
    nets = read_networks(bs.networks, bs.cfg)
    out[f] = dict(width=bs.width, height=bs.height, seed=bs.seed, cfg=dict((fl.name, v) for fl, v in bs.cfg.fields()),
                  arm=(nets.arm.weights, nets.arm.biases, nets.arm.frac_bits), ups=nets.ups_kernel, mod=nets.mod,
                  synth=nets.synth, synth_step_exp=nets.synth_step_exp, counts=bs.mask_counts,
                  mask_words=bs.mask_words, latent_words=bs.latent_words, size=len(open(f, "rb").read()))
pickle.dump(out, open(sys.argv[1], "wb"))
