"""Run with the format-v2 package: rewrites dumped v1 files as v2 (same integers, same range-coded
mask and latent words) and updates an eval record beside a file; --dry prints sizes only."""
import json, pickle, sys
from pathlib import Path
from lotterycodec.decoder.config import ArchConfig
from lotterycodec.decoder.entropy import IntArm
from lotterycodec.decoder.format import Networks, write_bitstream, write_networks
dump = pickle.load(open(sys.argv[1], "rb"))
tot_old = tot_new = 0
for f, d in dump.items():
    nets = Networks(IntArm(*d["arm"]), d["ups"], d["mod"], synth=d["synth"], synth_step_exp=d["synth_step_exp"])
    net_bytes, net_bits = write_networks(nets)
    data = write_bitstream(d["width"], d["height"], d["seed"], ArchConfig(**d["cfg"]), net_bytes,
                           d["counts"], d["mask_words"], d["latent_words"])
    tot_old += d["size"]; tot_new += len(data)
    print(f, d["size"], "->", len(data), len(data) - d["size"])
    if "--dry" in sys.argv:
        continue
    Path(f).write_bytes(data)
    record = Path(f).with_suffix(".json")
    if record.exists():
        r = json.loads(record.read_text())
        s = r["summary"]
        s["repacked_from_format_v1"] = {"bytes": s["bytes"], "bpp": s["bpp"], "network_bits": s["network_bits"]}
        s["bytes"], s["bpp"] = len(data), 8 * len(data) / (d["width"] * d["height"])
        s["network_bits"] = {k: round(v, 1) for k, v in net_bits.items()}
        record.write_text(json.dumps(r, indent=1))
print("total", tot_old, "->", tot_new)
