"Shared test helpers: the repository root and a copy of the tracked tree for tests that modify files."

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# one thread (small tensors on a shared 2-core machine), this checkout's sgm_nb, no display
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def cli(*args, cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    "Run `sgm-nb ARGS` (as `python -m sgm_nb.cli`) in `cwd`, capturing its output."
    return subprocess.run(
        [sys.executable, "-m", "sgm_nb.cli", *map(str, args)],
        cwd=cwd,
        env=CLI_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_config(max_steps: int = 4, every: int = 2, **trainer):
    "The packaged seconds-long `mnist_tiny`, shortened: 64 digits in batches of 8, 3 Euler steps, no sample grids."
    from sgm_nb.config import find_config, load_config

    cfg = load_config(
        [find_config("mnist_tiny")],
        [
            f"lightning.trainer.max_steps={max_steps}",
            f"lightning.modelcheckpoint.params.every_n_train_steps={every}",
            "data.params.batch_size=8",
            "data.params.limit=64",
            "model.params.sampler_config.params.num_steps=3",
            "lightning.callbacks.image_logger.params.batch_frequency=1000",
        ],
    )
    cfg.lightning.trainer.update(trainer)
    return cfg


def copy_tracked_tree(dest: Path) -> Path:
    "Copy the files git tracks or would track (not ignored) into `dest`, as a fresh git repo with one commit."
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    )
    for rel in filter(None, out.stdout.decode().split("\0")):
        src = ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    git = lambda *a: subprocess.run(["git", *a], cwd=dest, check=True, capture_output=True)
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    return dest


class Result:
    "What a finished `sgm-nb` call returned: exit status and output, as subprocess.CompletedProcess has them."

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli_inproc(*args, cwd, capsys, monkeypatch) -> Result:
    "`main()` in this process (no interpreter start-up): for the paths that fail or finish in seconds."
    from sgm_nb.cli import main

    monkeypatch.chdir(cwd)
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def one_line_error(r, command, *needles):
    "Assert that a finished `sgm-nb <command>` failed with exactly one line on stderr containing every needle."
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sgm-nb {command}: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
