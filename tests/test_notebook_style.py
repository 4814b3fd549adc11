"House rules that nbdev relies on: imports live in cells of their own (docs builds execute every cell that imports)."

import ast
import json

import pytest
from helpers import ROOT

NBS = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))


def _code_cells(nb):
    for c in json.loads(nb.read_text())["cells"]:
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"])
        lines = [l for l in src.splitlines() if not l.lstrip().startswith(("#|", "%", "!"))]
        yield src, ast.parse("\n".join(lines))


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_imports_are_in_their_own_cells(nb):
    for src, tree in _code_cells(nb):
        kinds = {isinstance(s, (ast.Import, ast.ImportFrom)) for s in tree.body}
        assert kinds != {True, False}, f"{nb.name}: a cell mixes imports with other code:\n{src}"


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_no_star_imports_in_exported_cells(nb):
    for src, tree in _code_cells(nb):
        if "#| export" not in src:
            continue
        stars = [s for s in tree.body if isinstance(s, ast.ImportFrom) and any(a.name == "*" for a in s.names)]
        assert not stars, f"{nb.name}: star import in an exported cell:\n{src}"
