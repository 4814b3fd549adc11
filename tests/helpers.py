"Shared test helpers: the repository root and a copy of the tracked tree for tests that modify files."
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def copy_tracked_tree(dest: Path) -> Path:
    "Copy the files git tracks or would track (not ignored) into `dest`, as a fresh git repo with one commit."
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True)
    for rel in filter(None, out.stdout.decode().split("\0")):
        src = ROOT / rel
        if not src.is_file(): continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    git = lambda *a: subprocess.run(["git", *a], cwd=dest, check=True, capture_output=True)
    git("init", "-q"); git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    return dest

def one_line_error(r, command, *needles):
    "Assert that a finished `sgm-nb <command>` failed with exactly one line on stderr containing every needle."
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sgm-nb {command}: "), r.stderr
    for n in needles: assert n in lines[0], lines[0]
