"""The Triton kernels' tests. On a machine without a GPU they run on CPU tensors under Triton's
interpreter: TRITON_INTERPRET=1 must be set before `triton.jit` wraps the kernels (at import of
lotterycodec.kernels), so it is set here, once, when pytest collects this folder. A run that sets
it to 0 on a CUDA machine tests the compiled kernels instead."""
import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("triton")


@pytest.fixture(scope="session")
def device() -> str:
    """Where the kernels' tensors live: the GPU when compiled kernels are under test, else the CPU."""
    return "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
