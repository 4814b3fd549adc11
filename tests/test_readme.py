"README's quick start is the one in nbs/index.ipynb, and its commands exist."

import json
import re
import subprocess

import pytest
from helpers import ROOT


def _quick_start(md: str) -> str:
    return re.search(r"## Quick start\n(.*?)(?=\n## )", md, re.S).group(1).strip()


def test_readme_matches_index_notebook():
    readme = (ROOT / "README.md").read_text()
    index = "\n\n".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"])
    assert _quick_start(readme) == _quick_start(index + "\n## ")


@pytest.mark.subprocess
def test_quick_start_commands_are_make_targets():
    cmds = re.findall(r"^make (\S+)", _quick_start((ROOT / "README.md").read_text()), re.M)
    assert cmds == ["train", "test"]
    for target in cmds + ["export", "sync-check", "test-fast", "lab"]:
        r = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, f"make {target}: {r.stderr}"
