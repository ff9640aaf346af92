"""The decoder package imports and decodes with torch and triton unavailable."""
import subprocess
import sys

SCRIPT = r'''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "triton"):
            raise ImportError(f"{name} is blocked for this test")
sys.meta_path.insert(0, Block())
import lotterycodec
from lotterycodec.decoder.synthetic import synthetic_bitstream
image, info = lotterycodec.decode(synthetic_bitstream(9, 7))
assert image.shape == (7, 9, 3)
assert not any(m.split(".")[0] in ("torch", "triton") for m in sys.modules)
print("ok")
'''


def test_decode_without_torch_or_triton():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
