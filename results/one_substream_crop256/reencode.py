"""The same latents and ARM, re-encoded as one substream: the bytes a file's latent section takes with
its own stripes, with one stripe per grid (stripe_height 256) and as one substream (every grid shared).
No retraining: the latents were trained with the stripes' contexts, so this isolates what the
substreams cost (length varints, each range coder's last word, the context lost at stripe borders).

    python results/one_substream_crop256/reencode.py results/cpu_crop256_vs_coolchic/files/*.lotc
"""
import sys

from lotterycodec.decoder.entropy import decode_latents, encode_latents
from lotterycodec.decoder.format import encode_varint, read_bitstream, read_networks

print("file\tsubstreams\tlatent bytes\tone stripe per grid: substreams\tbytes\tone substream: bytes")
for path in sys.argv[1:]:
    bs = read_bitstream(open(path, "rb").read())
    nets = read_networks(bs.networks, bs.cfg)
    grids = decode_latents(bs.latent_words, nets.arm, bs.cfg, bs.height, bs.width)
    row = [path]
    for cfg in (bs.cfg, bs.cfg.replace(stripe_height=bs.height), bs.cfg.replace(shared_max_pixels=bs.height * bs.width)):
        words = encode_latents(grids, nets.arm, cfg)
        row += [len(words), sum(4 * w.size + len(encode_varint(w.size)) for w in words)]
    print("\t".join(map(str, row[:3] + row[3:5] + row[6:7])))
