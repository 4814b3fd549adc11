"The data demo (`make demo`): a grid of the embedded digits, and a one-line error for a bad count."

import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

pytestmark = pytest.mark.subprocess

DEMO = str(Path(sys.executable).parent / "sgm-nb-demo")


def test_demo_writes_a_grid(tmp_path):
    r = subprocess.run([DEMO, "--out", str(tmp_path), "--per-class", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "MNIST-5k: 5000 digits" in r.stdout
    img = plt.imread(tmp_path / "mnist5k_grid.png")
    assert img.shape[:2] == (10 * 30 + 2, 3 * 30 + 2)
    assert img[..., 0].std() > 0.1  # digits, not a blank page
    assert [p.name for p in tmp_path.iterdir()] == ["mnist5k_grid.png"]  # no temporary file left


def test_demo_rejects_a_bad_count(tmp_path):
    r = subprocess.run([DEMO, "--out", str(tmp_path), "--per-class", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == "sgm-nb-demo: per_class must be between 1 and 500, got 0"
    assert list(tmp_path.iterdir()) == []
