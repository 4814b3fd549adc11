"The CI's sync check: it passes on the committed tree and fails when a notebook changed without re-exporting."

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_tracked_tree

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def _sync_check(repo: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", ".ci/sync-check"], cwd=repo, capture_output=True, text=True, env=env, timeout=300)


def test_sync_check_passes_on_this_tree(tmp_path):
    r = _sync_check(copy_tracked_tree(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_sync_check_fails_when_a_notebook_is_not_exported(tmp_path):
    repo = copy_tracked_tree(tmp_path)
    nb_path = repo / "nbs" / "22_utils.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "def append_dims" in "".join(c["source"]))
    cell["source"] = "".join(cell["source"]).replace("Append trailing singleton axes", "Append trailing unit axes")
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "edit"], cwd=repo, check=True)
    r = _sync_check(repo)
    assert r.returncode != 0
    assert "sgm_nb/utils.py" in r.stderr, r.stderr


def test_sync_check_fails_on_an_unclean_notebook(tmp_path):
    repo = copy_tracked_tree(tmp_path)
    nb_path = repo / "nbs" / "22_utils.ipynb"
    nb = json.loads(nb_path.read_text())
    next(c for c in nb["cells"] if c["cell_type"] == "code")["execution_count"] = 42
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "dirty"], cwd=repo, check=True
    )
    r = _sync_check(repo)
    assert r.returncode != 0 and "nbs/22_utils.ipynb" in r.stderr, r.stderr
