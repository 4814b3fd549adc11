"""Pixel-space (mnist_cpu) vs latent (mnist_latent) diffusion at equal compute on this machine's CPU.

    flock /tmp/nbsrc/.bench.lock .venv/bin/python benchmarks/bench_latent.py [--seconds 240] [--n 128] [--threads 2]

For each config: a short calibration run measures seconds per optimizer step; the full run then gets as many steps as
fit in `--seconds` (its warm-up/cosine schedule stretched to that many steps, so both finish their schedule); after
training, `--n` class-balanced samples are drawn from the EMA weights with the config's sampler (Heun, 18 steps,
CFG 3) and decoded, and scored with sgm_nb.metrics (FLD etc. on the shipped LeNet) against the held-out digits, beside
the real-vs-real floor at the same n. Prints a markdown table: steps, images seen, training images/s, training-loop
time, sampling time (s per 100 images), FLD, KID, classifier confidence and class coverage.
"""

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from sgm_nb.checkpoint import read_metrics
from sgm_nb.config import find_config, load_config
from sgm_nb.inference import load_engine
from sgm_nb.metrics import image_metrics, real_floor
from sgm_nb.training import train


def overrides(steps: int, batch_size: int = 64) -> list:
    "Train `steps` optimizer steps with the warm-up/cosine schedule stretched to them; no intermediate images."
    return [
        f"lightning.trainer.max_steps={steps}",
        f"lightning.modelcheckpoint.params.every_n_train_steps={steps}",
        f"lightning.callbacks.image_logger.params.batch_frequency={10 * steps}",
        "lightning.callbacks.image_logger.params.increase_log_steps=False",
        f"lightning.trainer.log_every_n_steps={max(1, steps // 10)}",
        f"data.params.batch_size={batch_size}",
        f"model.params.scheduler_config.params.warm_up_steps={max(1, steps // 20)}",
        f"model.params.scheduler_config.params.max_decay_steps={steps}",
    ]


def run(name: str, steps: int, logdir: Path, log_every=None):
    "(TrainResult, seconds of the training loop alone (metrics.csv's elapsed_s), its per-log-interval images/s)."
    extra = [f"lightning.trainer.log_every_n_steps={log_every}"] if log_every else []
    res = train(
        load_config([find_config(name)], overrides(steps) + extra),
        logdir=str(logdir),
        name=name,
        progress=False,
        verbose=False,
    )
    m = read_metrics(res.run_dir / "metrics.csv")
    return res, float(m["elapsed_s"][-1]), m["images_per_s"]


@torch.no_grad()
def sample(ckpt: Path, n: int, batch_size: int = 128, seed: int = 0):
    "n decoded samples of classes 0..9 cycled, from the EMA weights with the config's sampler; (images, seconds)."
    engine, ck, _ = load_engine(ckpt)
    shape = tuple(engine.encode_first_stage(torch.zeros(1, 1, 28, 28)).shape[1:])  # latent or pixel shape
    emb = next(e for e in engine.conditioner.embedders if hasattr(e, "n_classes"))
    cls = torch.arange(n) % emb.n_classes
    torch.manual_seed(seed)
    out, t0 = [], time.perf_counter()
    with engine.ema_scope():
        for i in range(0, n, batch_size):
            c, uc = engine.conditioner.get_unconditional_conditioning(
                {emb.input_key: cls[i : i + batch_size]}, force_uc_zero_embeddings=[emb.input_key]
            )
            z = engine.sample(c, uc=uc, batch_size=len(cls[i : i + batch_size]), shape=shape)
            out.append(engine.decode_first_stage(z).float().clamp(-1, 1))
    return torch.cat(out), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=240.0, help="training wall-time budget per config")
    p.add_argument("--n", type=int, default=128, help="samples scored per config")
    p.add_argument("--calib-steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", nargs="+", default=["mnist_cpu", "mnist_latent"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {a.threads} threads, load {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in a.configs:
            _, _, ips = run(name, a.calib_steps, Path(d) / "calib", log_every=1)
            s_per_step = 64 / float(torch.tensor(ips[2:]).median())  # steps after the first two (start-up)
            steps = max(a.calib_steps, int(a.seconds / s_per_step))
            res, wall, _ = run(name, steps, Path(d) / "full")
            images, t_s = sample(res.checkpoint, a.n)
            m = image_metrics(images)
            rows.append(
                dict(
                    config=name,
                    steps=steps,
                    images=steps * 64,
                    img_s=steps * 64 / wall,
                    wall=wall,
                    sample_s=100 * t_s / a.n,
                    loss=res.last_loss,
                    **m,
                )
            )
            print(
                f"{name}: calibration {s_per_step:.3f} s/step -> {steps} steps in {wall:.0f} s; "
                f"sampling {t_s:.1f} s for {a.n}; FLD {m['fld']:.1f}",
                flush=True,
            )
    floor = real_floor(a.n)
    print(
        "\n| config | steps | images seen | train img/s | train loop s | sample s / 100 img | last loss | FLD | KID | "
        "confident | coverage |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['config']} | {r['steps']} | {r['images']:,} | {r['img_s']:.0f} | {r['wall']:.0f} | "
            f"{r['sample_s']:.1f} | "
            f"{r['loss']:.4f} | {r['fld']:.1f} | {r['kid']:.4f} | {r['confident']:.2f} | {r['coverage']} |"
        )
    print(
        f"| real digits (floor, n={a.n}) | | | | | | | {floor['fld']:.1f} | {floor['kid']:.4f} | "
        f"{floor['confident']:.2f} | {floor['coverage']} |"
    )


if __name__ == "__main__":
    main()
