"The Makefile's set-up: the CPU build of torch without an NVIDIA driver, pip's choice (CUDA) with one; the main job."

import os
import subprocess

import pytest
from helpers import ROOT

pytestmark = pytest.mark.subprocess


def _install_commands(tmp_path, with_gpu: bool, target: str = "venv") -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if with_gpu:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    path = os.pathsep.join(
        [str(bin_dir)]
        + [p for p in os.environ["PATH"].split(os.pathsep) if not (os.path.isdir(p) and "nvidia-smi" in os.listdir(p))]
    )
    r = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cpu_machine_gets_the_pinned_cpu_torch(tmp_path):
    out = _install_commands(tmp_path, with_gpu=False)
    assert 'install --disable-pip-version-check -q  "torch==2.13.0"' in out
    assert '-e ".[dev,notebooks]"' in out


def test_gpu_machine_lets_pip_choose_its_cuda_torch(tmp_path):
    out = _install_commands(tmp_path, with_gpu=True)
    assert '"torch"' in out and "torch==" not in out


def test_main_job_is_the_cpu_default_without_a_gpu_and_sgms_mnist_cond_with_one(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "gpu").mkdir()
    assert "--base mnist_cpu_flow " in _install_commands(tmp_path / "cpu", with_gpu=False, target="train")
    assert "--base mnist_cond " in _install_commands(tmp_path / "gpu", with_gpu=True, target="train")
