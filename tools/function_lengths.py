"""The longest functions of the library and the tools: every function or method of `sgm_nb/` and `tools/` with more
than `--max` lines.

    .venv/bin/python tools/function_lengths.py [--max 60]

Exits with status 1 when one is longer, so that CI keeps functions short enough to hold in one's head.
"""

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def function_lengths(package: Path = ROOT / "sgm_nb"):
    "(lines, 'module.py:qualified name') of every function and method under `package`, longest first."
    out = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        stack = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        out.append((child.end_lineno - child.lineno + 1, f"{path.name}:{name}"))
                    stack.append((child, name + "."))
    return sorted(out, reverse=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=60)
    lengths = function_lengths() + function_lengths(ROOT / "tools")
    too_long = [(n, f) for n, f in lengths if n > ap.parse_args().max]
    for n, f in too_long:
        print(f"{n:4d} lines  {f}")
    sys.exit(1 if too_long else 0)
