"""Sampler error against the number of denoiser evaluations (NFE), on exact oracles (issue 8, item 3).

    .venv/bin/python benchmarks/bench_sampler_nfe.py [--points 2000] [--dim 784]

Two measures for each deterministic sampler of sgm_nb.sampling on the EDM grid (sigma_max 80, rho 7), all in float64:

1. ODE error, Gaussian data in `--dim` dimensions (a random covariance with eigenvalues from 1e-3 to 1): the exact
   probability-flow ODE has a closed form (`sgm_nb.oracle.gaussian_flow`), so each sampler's end point is compared with
   the exact end point of the same start noise: RMS error per dimension.
2. Distribution error, the 2-D `ring8` mixture: sliced W2 of the samples against exact samples, beside the floor of
   two exact draws.

NFE counts denoiser calls: Euler and the multistep samplers use one per step, Heun and DPM-2 two (one on the last
step to sigma = 0).
"""

import argparse
import datetime

import torch

from sgm_nb.metrics import sliced_wasserstein
from sgm_nb.oracle import GaussianMixture, gaussian_flow
from sgm_nb.utils import instantiate_from_config

SAMPLERS = {
    "Euler": ("EulerEDMSampler", 1),
    "Heun": ("HeunEDMSampler", 2),
    "DPM-2": ("DPM2Sampler", 2),
    "DPM++ 2M": ("DPMPP2MSampler", 1),
    "LMS (order 4)": ("LinearMultistepSampler", 1),
}
NFES = [5, 9, 17, 35, 65]


def sampler(cls: str, steps: int):
    params = {"num_steps": steps, "discretization_config": {"target": "sgm_nb.sigma_sampling.EDMDiscretization"}}
    if cls == "LinearMultistepSampler":
        params["order"] = 4
    return instantiate_from_config({"target": f"sgm_nb.sampling.{cls}", "params": params})


def steps_for(nfe: int, per_step: int) -> int:
    "Steps that spend `nfe` evaluations: n for one-call samplers, (nfe + 1) / 2 for two-call ones (last step: one"
    "call)."
    return nfe if per_step == 1 else (nfe + 1) // 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=784)
    args = ap.parse_args()
    torch.set_num_threads(1)
    f64, g = torch.float64, torch.Generator().manual_seed(0)
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, 1 thread, "
        f"{args.points} points, float64"
    )

    q = torch.linalg.qr(torch.randn(args.dim, args.dim, dtype=f64, generator=g)).Q
    lam = torch.logspace(-3, 0, args.dim, dtype=f64)
    gauss = GaussianMixture.gaussian(torch.randn(args.dim, dtype=f64, generator=g) * 0.3, q @ lam.diag() @ q.T)
    ring = GaussianMixture.from_toy("ring8")
    noise_d = torch.randn(args.points, args.dim, dtype=f64, generator=g)
    noise_2 = torch.randn(args.points, 2, dtype=f64, generator=g)
    exact_2 = ring.sample(args.points, g)
    floor = sliced_wasserstein(ring.sample(args.points, g), exact_2)

    rows = {}
    for name, (cls, per) in SAMPLERS.items():
        for nfe in NFES:
            smp = sampler(cls, steps_for(nfe, per))
            start = noise_d * (1 + 80.0**2) ** 0.5
            x = smp(lambda x, s, c: gauss.denoiser(x, s), noise_d, {})
            ode_err = (x - gaussian_flow(gauss, start, 80.0, 0.0)).square().mean().sqrt().item()
            sw = sliced_wasserstein(smp(lambda x, s, c: ring.denoiser(x, s), noise_2, {}), exact_2)
            rows[name, nfe] = (ode_err, sw)

    print(f"\nODE error (RMS per dimension vs the exact flow), Gaussian data, d = {args.dim}")
    print(f"{'NFE':>16s}" + "".join(f"{n:>11d}" for n in NFES))
    for name in SAMPLERS:
        print(f"{name:>16s}" + "".join(f"{rows[name, n][0]:11.2e}" for n in NFES))
    print(f"\nsliced W2 vs exact samples, ring8 (floor of two exact draws: {floor:.4f})")
    print(f"{'NFE':>16s}" + "".join(f"{n:>11d}" for n in NFES))
    for name in SAMPLERS:
        print(f"{name:>16s}" + "".join(f"{rows[name, n][1]:11.4f}" for n in NFES))


if __name__ == "__main__":
    main()
