"""The import direction: decoder/ is the torch-free library; trainer/ may import decoder/; kernels/
may import decoder/; only the app layer (lotterycodec/) imports all of them."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package folder -> top-level names (lotterycodec parts or third-party) its modules must never import
FORBIDDEN = {
    "decoder": {"trainer", "torch", "triton", "lotterycodec"},
    "trainer": {"lotterycodec"},
    "kernels": {"trainer", "lotterycodec"},
}


def imported_parts(path: Path) -> set[str]:
    """The parts a module imports, relative imports resolved to the sibling part they reach."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module.split(".")[0])
            elif node.level == 2 and node.module:  # from ..trainer import x
                names.add(node.module.split(".")[0])
            elif node.level == 2:  # from .. import trainer
                names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_import_direction(part):
    bad = {f"{p.relative_to(ROOT)}: {sorted(imported_parts(p) & FORBIDDEN[part])}"
           for p in sorted((ROOT / part).rglob("*.py")) if imported_parts(p) & FORBIDDEN[part]}
    assert not bad, bad


def test_the_check_sees_a_violation(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from ..trainer.encode import encode_array\nimport torch\n")
    assert {"trainer", "torch"} <= imported_parts(bad)
