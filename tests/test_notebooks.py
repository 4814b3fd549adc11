"Every notebook runs top to bottom, with nbdev's own engine (`nbdev.test.test_nb`), each in its own process."

import os
import subprocess
import sys

import pytest
from helpers import ROOT
from nbdev.config import get_config

pytestmark = pytest.mark.slow

CFG = get_config(ROOT)
NBS = sorted(p for p in CFG.nbs_path.glob("*.ipynb") if not p.name.startswith("_"))
SKIP = CFG.tst_flags.split() if isinstance(CFG.tst_flags, str) else list(CFG.tst_flags)
RUN = (
    "import sys; from nbdev.test import test_nb\n"
    "ok, t = test_nb(sys.argv[1], skip_flags=sys.argv[2].split(), force_flags=sys.argv[3].split(),\n"
    "                basepath=sys.argv[4])\n"
    "print(f'{sys.argv[1]}: {t:.1f}s'); sys.exit(0 if ok else 1)"
)


def test_notebooks_found():
    assert len(NBS) >= 3, f"expected the project's notebooks under {CFG.nbs_path}, found {NBS}"


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, nb_flags):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [sys.executable, "-c", RUN, str(nb), " ".join(SKIP), " ".join(nb_flags), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert r.returncode == 0, f"{nb.name} failed (flags {nb_flags}):\n{r.stdout[-3000:]}\n{r.stderr[-12000:]}"
