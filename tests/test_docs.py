"Docs smoke test: nbdev's own notebook processing for the docs site (Quarto itself is not installed here)."

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, copy_tracked_tree


def _proc_nbs(repo: Path) -> Path:
    # nbdev-proc-nbs offers to download Quarto when `quarto` is not on PATH; a stub that is never run stops that
    shim = repo / "_shim"
    shim.mkdir()
    (shim / "quarto").write_text("#!/bin/sh\necho 'quarto stub: not installed here' >&2; exit 1\n")
    (shim / "quarto").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MPLBACKEND": "Agg",
    }
    r = subprocess.run(
        ["nbdev-proc-nbs", "--n-workers", "0"], cwd=repo, capture_output=True, text=True, env=env, timeout=900
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return repo / "_proc"


def _text(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return "\n".join(
        "".join(c["source"])
        + "".join("".join(o.get("data", {}).get("text/markdown", [])) for o in c.get("outputs", []))
        for c in cells
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_proc_nbs_renders_api_docs_and_hides_hidden_cells(tmp_path):
    proc = _proc_nbs(copy_tracked_tree(tmp_path))
    nbs = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))
    for name in nbs:
        assert (proc / name).exists(), f"{name} was not processed"
    utils = _text(proc / "22_utils.ipynb")
    assert "append_dims" in utils and "instantiate_from_config" in utils
    # show_doc output: a heading and the signature of each exported function, rendered as markdown
    assert "### append_dims" in utils and "x:torch.Tensor, target_dims:int" in utils
    assert "from fastcore.test import" not in utils  # the #| hide cell is gone
    assert "#| export" not in utils


def test_quarto_config_is_valid_and_lists_every_notebook():
    q = yaml.safe_load((ROOT / "nbs" / "_quarto.yml").read_text())
    assert q["project"]["type"] == "website"
    assert set(q["metadata-files"]) == {"nbdev.yml", "sidebar.yml"}
    side = yaml.safe_load((ROOT / "nbs" / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    listed = [side[0]] + [nb for sec in side[1:] for nb in sec["contents"]]
    on_disk = ["index.ipynb"] + sorted(p.name for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
    assert listed == on_disk, f"nbs/sidebar.yml must list the notebooks in order: {on_disk}"
    assert not (ROOT / "settings.ini").exists()  # nbdev 3 reads pyproject.toml only
