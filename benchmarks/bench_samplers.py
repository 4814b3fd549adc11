"""Each sampler's own overhead, side by side with the cost of its denoiser calls alone.

    .venv/bin/python benchmarks/bench_samplers.py [--points 10000] [--repeats 5]

Every sampler runs with 35 denoiser evaluations (18 steps for the two-evaluation samplers, 35 for the others) on
`--points` 2-D points with the exact `ring8` mixture oracle (float64). A first run records the denoiser's inputs and
outputs. Then, side by side: the sampler alone, driven by a denoiser that hands back the recorded outputs in order (so
what is timed is the sampler's own step arithmetic, noise, guider and Python), and the 35 oracle calls alone on the
recorded inputs. Timing each directly, rather than as a difference of two large numbers, keeps the overhead measurable
on a busy machine. Printed per sampler: both medians, the overhead per step and overhead / denoiser. Measured at 1
thread and at torch's default thread count (on a busy 2-core machine torch's intra-op threads can slow small tensor
operations down a lot).
"""

import argparse
import statistics
import time

import torch

from sgm_nb.oracle import GaussianMixture
from sgm_nb.utils import instantiate_from_config

SAMPLERS = [  # (class, steps for 35 evaluations, extra params)
    ("EulerEDMSampler", 35, {}),
    ("HeunEDMSampler", 18, {}),
    ("DPM2Sampler", 18, {}),
    ("EulerAncestralSampler", 35, {}),
    ("DPMPP2SAncestralSampler", 18, {}),
    ("DPM2AncestralSampler", 18, {}),
    ("DPMPP2MSampler", 35, {}),
    ("LinearMultistepSampler", 35, {"order": 4}),
    ("DPMPP2MSDESampler", 35, {}),
    ("DPMPP3MSDESampler", 35, {}),
    ("HeunEDMSampler", 18, {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}),
]


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench(name, steps, params, gmm, noise, repeats):
    sampler = instantiate_from_config(
        {
            "target": f"sgm_nb.sampling.{name}",
            "params": {
                "discretization_config": {"target": "sgm_nb.sigma_sampling.EDMDiscretization"},
                "num_steps": steps,
                **params,
            },
        }
    )
    calls = []

    def recording(x, sigma, c):
        d = gmm(x, sigma, c)
        calls.append((x.clone(), sigma.clone(), d))
        return d

    sampler(recording, noise, {})

    def replaying(x, sigma, c):
        return next(outputs)

    def sampler_alone():
        nonlocal outputs
        outputs = iter([d for _, _, d in calls])
        sampler(replaying, noise, {})

    outputs = None
    own = timed(sampler_alone, repeats)
    alone = timed(lambda: [gmm(x, s, {}) for x, s, _ in calls], repeats)
    return len(calls), own, alone


def run(points, repeats):
    gmm = GaussianMixture.from_toy("ring8")
    noise = torch.randn(points, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {points} points, median of {repeats}")
    print(
        f"{'sampler':<30} {'evals':>5} {'sampler alone ms':>16} {'35 D calls ms':>13} {'per step us':>11} "
        f"{'sampler/D':>9}"
    )
    for name, steps, params in SAMPLERS:
        nfe, own, alone = bench(name, steps, params, gmm, noise, repeats)
        label = name + (" (churn)" if params.get("s_churn") else "")
        print(
            f"{label:<30} {nfe:>5} {1e3 * own:16.2f} {1e3 * alone:13.1f} {1e6 * own / steps:11.0f} {own / alone:9.3f}"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        run(a.points, a.repeats)


if __name__ == "__main__":
    main()
