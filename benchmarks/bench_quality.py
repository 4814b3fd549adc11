"""Quality per compute of the CPU default, and FLD against the number of sampler evaluations (issue 8, items 1 and 3).

    .venv/bin/python benchmarks/bench_quality.py [--run runs/<run>] [--minutes 2 5 10] [--n 500] [--steps 2 3 5 9 18 32]

Without --run it first trains the README's main job (`sgm-nb train --base mnist_cpu`), keeping a checkpoint every 100
steps. Then, for each of --minutes, it takes the last kept checkpoint whose wall-clock time (metrics.csv's elapsed_s,
measured by the training loop itself) is within that many minutes, samples --n digits with the config's sampler
(Heun, 18 steps = 35 evaluations, CFG 3), and measures them with `sgm_nb.inference.evaluate`: FLD and KID against
the 1,000 held-out digits, the share of samples the classifier assigns with p >= 0.9, class coverage and class
match, beside the real-vs-real floor at the same n. Then the final checkpoint is sampled with Heun at each of --steps
(2n-1 evaluations; times two for the guided and unguided branch of CFG) to show FLD against NFE. One table per part,
printed at the end.
"""

import argparse
import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from sgm_nb.checkpoint import read_metrics
from sgm_nb.inference import evaluate


def train_default(logdir: str) -> Path:
    "Run the README's main job, keeping a checkpoint every 100 steps; return its run folder."
    cmd = [
        "sgm-nb",
        "train",
        "--base",
        "mnist_cpu",
        "--name",
        "mnist_cpu",
        "--logdir",
        logdir,
        "--no-progress",
        "lightning.callbacks.metrics_over_trainsteps_checkpoint.params.every_n_train_steps=100",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"training: {time.perf_counter() - t0:.0f} s wall clock, process start to exit")
    return sorted(Path(logdir).glob("*_mnist_cpu"))[-1]


def checkpoint_at(run: Path, minutes: float):
    "(step, elapsed_s, path) of the last kept checkpoint written within `minutes` of the loop's start."
    m = read_metrics(run / "metrics.csv")
    kept = {int(p.stem.split("=")[1]): p for p in (run / "checkpoints" / "trainstep_checkpoints").glob("step=*.ckpt")}
    elapsed = dict(zip(m["step"].astype(int), m["elapsed_s"]))
    ok = [(s, elapsed[s], p) for s, p in sorted(kept.items()) if s in elapsed and elapsed[s] <= 60 * minutes]
    return ok[-1] if ok else None


def row(label, r):
    s, f = r["samples"], r["real_floor"]
    return (
        f"{label:>14s} {s['fld']:8.2f} {f['fld']:7.2f} {s['kid']:8.2f} {s['confident']:9.3f} {s['coverage']:8d} "
        f"{s.get('class_match', float('nan')):7.3f} {r['sampling_s']:8.1f}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="an existing run of mnist_cpu with kept checkpoints (skip training)")
    ap.add_argument("--logdir", default="runs/bench_quality")
    ap.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 3, 5, 9, 18, 32])
    args = ap.parse_args()
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    run = Path(args.run) if args.run else train_default(args.logdir)
    m = read_metrics(run / "metrics.csv")
    print(
        f"run {run}: {int(m['step'][-1])} steps in {m['elapsed_s'][-1]:.0f} s of training loop, "
        f"median {np.nanmedian(m['images_per_s']):.0f} images/s"
    )
    head = (
        f"{'':>14s} {'FLD':>8s} {'floor':>7s} {'KID':>8s} {'p>=0.9':>9s} {'classes':>8s} {'match':>7s} {'sample s':>8s}"
    )
    lines = [f"quality per compute (Heun 18 steps, CFG 3, n = {args.n})", head]
    for mins in args.minutes:
        ck = checkpoint_at(run, mins)
        if ck is None:
            lines.append(f"{mins:>10g} min   (no kept checkpoint that early)")
            continue
        step, el, path = ck
        r = evaluate(path, n=args.n)
        lines.append(row(f"{mins:g} min/{step}", r) + f"   (step {step} at {el:.0f} s)")
    final = run / "checkpoints" / "last.ckpt"
    lines += [
        "",
        f"FLD against sampler evaluations, final checkpoint, Heun, CFG 3, n = {args.n}",
        head.replace(" " * 14, f"{'steps (NFE)':>14s}", 1),
    ]
    for st in args.steps:
        r = evaluate(final, n=args.n, steps=st)
        lines.append(row(f"{st} ({2 * st - 1})", r))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
