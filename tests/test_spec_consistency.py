"""One definition: the written spec (docs/FORMAT.md) lists what the code declares."""
import re
from pathlib import Path

from lotterycodec.decoder.config import CONFIG_FIELDS, CONTEXT_OFFSETS, ArchConfig
from lotterycodec.decoder.entropy import TABLES_SHA256
from lotterycodec.decoder.format import VERSION

SPEC = (Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md").read_text()


def test_config_fields_in_spec_order_ranges_and_defaults():
    section = SPEC.split("## 3. Config record")[1].split("## 4.")[0]
    rows = [r.split("|")[1:4] for r in section.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert [r[0].strip() for r in rows] == [f.name for f in CONFIG_FIELDS]
    default = ArchConfig()
    for (name, allowed, value), f in zip(rows, CONFIG_FIELDS):
        special = {"shared_max_pixels": "0..2^26", "kept_weights": "0..min(2^20, N)"}
        assert allowed.strip().startswith(special.get(f.name, f"{f.lo}..{f.hi}")), name
        assert int(value) == getattr(default, f.name), name


def test_context_offsets_in_spec():
    listed = [tuple(int(v.replace("−", "-")) for v in m) for m in
              re.findall(r"\((−?\d+),(−?\d+)\)", SPEC.split("### 6.1")[1].split("### 6.2")[0])]
    assert listed[:32] == list(CONTEXT_OFFSETS)


def test_version_and_table_hash_in_spec():
    assert SPEC.startswith(f"# LotteryCodec bitstream, format version {VERSION}\n")
    assert f"| version | u8 | {VERSION} (" in SPEC
    assert TABLES_SHA256 in SPEC
