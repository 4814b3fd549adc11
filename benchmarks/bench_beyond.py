"""EDM against rectified flow at equal compute on MNIST, then CFG, IntervalCFG and AutoGuidance on the EDM model.

Both objectives train mnist_cpu's network, data, optimizer and budget (`mnist_cpu` and `mnist_rectified_flow`), with
one change for both: the class embedding is frozen (a fixed random vector per class, as `mnist_autoguidance` does),
so that an early checkpoint of the EDM run reads the conditioning as the last one does and can serve as the bad model
of autoguidance. Each model is evaluated with `sgm-nb evaluate` (FLD, class match and the rest beside the real-digit
floor at the same n) with the config's sampler (Heun, 18 steps); the guidance sweep varies only the guider
(CFG, IntervalCFG and AutoGuidance on the EDM model; CFG and AutoGuidance on the rectified-flow one); with
`--sigma-data S` a third run, EDM with sigma_data S, evaluated at CFG 2.

    python benchmarks/bench_beyond.py --out runs_beyond [--steps 1200] [--n 500] [--bad-step 300] [--sigma-data 0.96]

Writes `OUT/results.json` (appended to as each evaluation finishes) and prints a table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from sgm_nb.config import find_config

GUIDER = "model.params.sampler_config.params.guider_config"


def bench_config(name: str, steps: int, keep_every: int, out: Path) -> Path:
    "The packaged config `name` with a frozen class embedding, a kept checkpoint every `keep_every` steps."
    cfg = OmegaConf.load(find_config(name))
    cfg.model.params.conditioner_config.params.emb_models[0].is_trainable = False
    sched = cfg.model.params.scheduler_config.params
    sched.max_decay_steps = max(steps, sched.warm_up_steps + 1)
    cfg.lightning.trainer.max_steps = steps
    cfg.lightning.callbacks.metrics_over_trainsteps_checkpoint = {"params": {"every_n_train_steps": keep_every}}
    path = out / f"{name}_frozen.yaml"
    OmegaConf.save(cfg, path)
    return path


def sgm_nb(*args) -> float:
    "Run the `sgm-nb` command next to this Python; return its wall time in seconds."
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("sgm-nb")), *map(str, args)], check=True)
    return time.perf_counter() - t0


def train(name: str, args, *overrides: str, label: str | None = None) -> Path:
    "Train the frozen-embedding variant of `name` (with `overrides`); return its run folder."
    logdir, label = args.out / "runs", label or name
    base = bench_config(name, args.steps, args.bad_step, args.out)
    seconds = sgm_nb("train", "--base", base, "--name", label, "--logdir", logdir, *overrides)
    run = max((p for p in logdir.iterdir() if p.name.endswith(label)), key=lambda p: p.stat().st_mtime)
    row = {"kind": "train", "config": name, "label": label, "overrides": list(overrides), "steps": args.steps}
    record(args.out, {**row, "wall_s": round(seconds, 1), "run": str(run)})
    return run


def evaluate(run: Path, label: str, args, *overrides, cfg_scale=None):
    "`sgm-nb evaluate --n N` on the run's last checkpoint with the given guider overrides; the result recorded."
    js = args.out / f"eval_{label}.json"
    extra = ["--cfg-scale", cfg_scale] if cfg_scale is not None else []
    seconds = sgm_nb(
        "evaluate", "--ckpt", run / "checkpoints" / "last.ckpt", "--n", args.n, "--json", js, *extra, *overrides
    )
    record(args.out, {"kind": "eval", "label": label, "wall_s": round(seconds, 1), **json.loads(js.read_text())})


def autoguide(run: Path, label: str, scale: float, args):
    "Autoguidance of the run's last checkpoint by its own kept checkpoint at `--bad-step`."
    bad = run / "checkpoints" / "trainstep_checkpoints" / f"step={args.bad_step:06d}.ckpt"
    guider = [f"{GUIDER}.target=sgm_nb.guiders.AutoGuidance", f"{GUIDER}.params={{scale: {scale}, bad_ckpt: '{bad}'}}"]
    evaluate(run, label, args, *guider)


def record(out: Path, row: dict):
    with open(out / "results.json", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--bad-step", type=int, default=300, help="the kept checkpoint that guides as the bad model")
    p.add_argument("--interval", type=float, nargs=2, default=(0.28, 5.42), help="IntervalCFG's sigma interval")
    p.add_argument("--sigma-data", type=float, default=None, help="also train EDM with this sigma_data (CFG 2)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    edm, rf = train("mnist_cpu", args), train("mnist_rectified_flow", args)
    for scale in (1.0, 2.0, 3.0):
        evaluate(edm, f"edm_cfg{scale:g}", args, cfg_scale=scale)
    evaluate(rf, "rf_cfg3", args, cfg_scale=3.0)
    lo, hi = args.interval
    for scale in (2.0, 3.0):
        evaluate(
            edm,
            f"edm_interval{scale:g}",
            args,
            f"{GUIDER}.target=sgm_nb.guiders.IntervalCFG",
            f"{GUIDER}.params.scale={scale}",
            f"{GUIDER}.params.sigma_min={lo}",
            f"{GUIDER}.params.sigma_max={hi}",
        )
        autoguide(edm, f"edm_auto{scale:g}", scale, args)
    evaluate(rf, "rf_cfg2", args, cfg_scale=2.0)
    autoguide(rf, "rf_auto2", 2.0, args)
    if args.sigma_data:  # EDM preconditioned for the digits' root mean square instead of sgm's 0.5
        sd = args.sigma_data
        keys = ["denoiser_config.params.scaling_config", "loss_fn_config.params.loss_weighting_config"]
        edm_sd = train(
            "mnist_cpu", args, *[f"model.params.{k}.params.sigma_data={sd}" for k in keys], label=f"sd{sd:g}"
        )
        evaluate(edm_sd, f"edm_sd{sd:g}_cfg2", args, cfg_scale=2.0)


if __name__ == "__main__":
    main()
