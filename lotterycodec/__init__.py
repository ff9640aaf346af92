"""LotteryCodec: an overfitted neural image codec whose synthesis is a masked random network.

    import lotterycodec
    summary = lotterycodec.encode("in.png", "out.lotc", lmbda=1e-3)
    image, info = lotterycodec.decode("out.lotc", "out.png")

Decoding needs numpy, pillow and constriction only; encoding also needs torch.
"""
from .api import decode, encode
from .decoder.config import ArchConfig, FormatError, LimitError

__all__ = ["encode", "decode", "ArchConfig", "FormatError", "LimitError"]
__version__ = "0.1.0"
