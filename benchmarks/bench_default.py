"""The search for the CPU default: candidates trained at equal wall time, each measured by `sgm-nb evaluate`.

Every candidate trains the same network, data, optimizer and 1,200 steps of 64 digits as `mnist_cpu` (so the same
wall time, up to the noise of a shared machine), one after another, never two at once:

- `mnist_cpu`: EDM, a trainable class embedding, CFG 3 with Heun 18 (the previous default);
- `mnist_rectified_flow`: the same with rectified flow's scaling, weighting and logit-normal t;
- `mnist_cpu_flow`: rectified flow, a frozen class embedding, autoguided by the run's own step-300 checkpoint, Euler;
- `mnist_cpu_flow` with `ucg_rate: 0` (no label dropout: autoguidance never asks for the unconditional model).

Each is evaluated with its own config's sampler and guider at `--n`, then the chosen run is swept over the sampler
(Euler, Heun, DPM++ 2M, steps) and the autoguidance weight, and `sgm-nb evaluate --n 2000` is timed on it.

    python benchmarks/bench_default.py --out runs_default [--n 1000]

Appends each result to `OUT/results.jsonl` as it finishes (copied to benchmarks/bench_default.jsonl for the record);
run again with the same `--out`, it skips what that file already holds.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from sgm_nb.checkpoint import read_metrics

CHOSEN = "mnist_cpu_flow"
CANDIDATES = {  # label: (packaged config, overrides)
    "edm_cfg": ("mnist_cpu", []),
    "rf_cfg": ("mnist_rectified_flow", []),
    "rf_auto": (CHOSEN, []),
    "rf_auto_ucg0": (CHOSEN, ["model.params.conditioner_config.params.emb_models.0.ucg_rate=0.0"]),
}
GUIDER = "model.params.sampler_config.params.guider_config.params.scale"


def sgm_nb(*args) -> float:
    "Run the `sgm-nb` command next to this Python; return its wall time in seconds."
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("sgm-nb")), *map(str, args)], check=True)
    return time.perf_counter() - t0


def done(out: Path) -> dict:
    "{(kind, label): row} of what OUT/results.jsonl already holds."
    path = out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {(r["kind"], r["label"]): r for r in rows}


def record(out: Path, row: dict):
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def train(label: str, args) -> Path:
    "Train candidate `label`; record its wall time and images per second; return its run folder."
    if ("train", label) in done(args.out):
        return Path(done(args.out)["train", label]["run"])
    config, overrides = CANDIDATES[label]
    logdir = args.out / "runs"
    seconds = sgm_nb("train", "--base", config, "--name", label, "--logdir", logdir, "--no-progress", *overrides)
    run = max((p for p in logdir.iterdir() if p.name.endswith(label)), key=lambda p: p.stat().st_mtime)
    m = read_metrics(run / "metrics.csv")
    cfg = OmegaConf.load(run / "config.yaml")
    images = int(m["step"][-1]) * cfg.data.params.batch_size
    row = {"kind": "train", "label": label, "config": config, "overrides": overrides, "steps": int(m["step"][-1])}
    record(args.out, {**row, "wall_s": round(seconds, 1), "images_per_s": round(images / seconds, 1), "run": str(run)})
    return run


def evaluate(run: Path, label: str, args, *extra, n=None):
    "`sgm-nb evaluate` on the run's last checkpoint (its config's sampler unless `extra` says otherwise), recorded."
    if ("eval", label) in done(args.out):
        return
    js = args.out / f"eval_{label}.json"
    ckpt = run / "checkpoints" / "last.ckpt"
    seconds = sgm_nb("evaluate", "--ckpt", ckpt, "--n", n or args.n, "--json", js, *extra)
    record(args.out, {"kind": "eval", "label": label, "wall_s": round(seconds, 1), **json.loads(js.read_text())})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    runs = {label: train(label, args) for label in CANDIDATES}
    for label, run in runs.items():
        evaluate(run, label, args)
    chosen = runs["rf_auto"]
    for sampler, steps in (("euler", 8), ("euler", 18), ("heun", 18), ("dpmpp_2m", 12)):
        evaluate(chosen, f"rf_auto_{sampler}{steps}", args, "--sampler", sampler, "--steps", steps)
    for w in (1.5, 2.5, 3.0):
        evaluate(chosen, f"rf_auto_w{w:g}", args, f"{GUIDER}={w}")
    evaluate(chosen, "rf_auto_n2000", args, n=2000)


if __name__ == "__main__":
    main()
