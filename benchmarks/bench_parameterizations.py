"""Parameterizations head to head on the 2-D oracle: same network, data, σ distribution and budget; only the scaling
and its weighting differ.

    .venv/bin/python benchmarks/bench_parameterizations.py [--steps 4000] [--seeds 3] [--batch 256] \
        [--samples 3000] [--quick]
    .venv/bin/python benchmarks/bench_parameterizations.py --fair [--budgets 500,1500,4000] [--seeds 2]

`--fair` runs the Score-versus-EDM comparison of nbs/08 with the noise level fed to the network the same way for every
run (see `FAIR` and `run_fair` below); without it, the six-way comparison described next.

Five runs per seed (and one supplementary, below), each `sgm_nb.scalings` scaling with its matching `sgm_nb.weightings`
weighting:

  EDM             EDMScaling(sigma_data=σd) + EDMWeighting(sigma_data=σd)    w·c_out² = 1
  Eps             EpsScaling                + EpsWeighting                   w·c_out² = 1
  V               VScaling                  + VWeighting                     w·c_out² = 1
  V, EDM c_noise  VScalingWithEDMcNoise     + VWeighting                     w·c_out² = 1
  Score           ScoreScaling              + EpsWeighting                   w·c_out² = σ²

"Matching" is the weighting with w·c_out² = 1 (nbs/03_weightings), so each network regresses its own target with unit
weight at every σ. sgm has no weighting with w = 1/c_out² = σ⁻⁴ for the score; as nbs/08_score_to_denoiser does, Score
uses EpsWeighting, which makes its loss classic denoising score matching with λ(σ) = σ² (Song & Ermon). σd, the only
σ_data parameter (EDM's), is the ring's data std per coordinate, sqrt(tr Cov / 2) = sqrt(2.02) ≈ 1.42, for scaling and
weighting alike; V's and Eps's scalings have σ_data = 1 built in. A sixth, supplementary row trains EDM at sgm's
default sigma_data = 0.5 (scaling and weighting), because with σd equal to the std of this isotropic data EDM's F = 0 is
already the best linear (Wiener) denoiser c_skip·x, and a small network can stall there (see RESULTS.md).

Shared by every run of a seed: `sgm_nb.score.ToyMLP(hidden=64)` with the same initial weights (torch.manual_seed(seed)
before it is built), the same training σ distribution (`EDMSampling()`, log σ ~ N(-1.2, 1.2²)), the same stream of
fresh exact `ring8` samples, the same loss draws (σ and noise come from the global RNG in the same order), and the
same optimizer: Adam(lr=3e-3) with cosine decay over `--steps` steps of `--batch` points, in float32, through
`sgm_nb.denoiser.Denoiser` and `sgm_nb.loss.StandardDiffusionLoss` (the recipe of nbs/08).

Measured per trained model, against the exact mixture oracle `GaussianMixture.from_toy('ring8')` (float64):
  * excess denoising error E||D_θ(x;σ) − D*(x;σ)||² (`sgm_nb.metrics.excess_denoising_error`) at 32 log-spaced σ in
    [0.002, 80] on 4,000 exact clean points (same points and noise for all models), averaged over the grid points in
    each σ band, i.e. uniformly in log σ. Yardsticks: "D = x" (the trivial denoiser, c_skip·x of Eps and Score) and
    "Wiener" (D = σd²/(σ²+σd²)·x, the best linear denoiser of this zero-mean isotropic data, and EDM's c_skip·x:
    F = 0).
  * `--samples` samples from `HeunEDMSampler` on `EDMDiscretization()` with 18 steps (35 NFE; sgm's start
    x·sqrt(1 + σ_max²)), from the same starting noise for all models, compared with as many exact samples: sliced W2
    (`sliced_wasserstein`, 128 directions), MMD² with a Gaussian kernel of bandwidth 0.5 (`mmd2_gaussian`; between the
    component std 0.14 and the mode spacing 1.53), mode coverage (`mode_coverage`: modes with ≥ 10 % of their expected
    count within 3 component stds, 0.42), the fraction of samples within 0.42 of a mode (`near_mode_fraction`) and the
    mean exact log p_data of the samples, each clamped at -50 as in nbs/08 (`mean_log_prob`), and "mode TV", the total
    variation between the samples' nearest-mode histogram and the equal mode weights 1/8 (computed here: sgm_nb.metrics
    has no such function). Reference rows: a second set of exact samples (the sampling floor at this n) and the exact
    D* through the same 35-NFE Heun sampler (the discretization floor).
  * training wall time.
Values are mean ± sample standard deviation over seeds. One thread (torch.set_num_threads(1)): the tensors are tiny and
the machine is a shared 2-core one, where intra-op threads only add contention.
"""

import argparse
import datetime
import math
import platform
import statistics
import time

import torch

from sgm_nb.denoiser import Denoiser
from sgm_nb.loss import StandardDiffusionLoss
from sgm_nb.metrics import (
    excess_denoising_error,
    mean_log_prob,
    mmd2_gaussian,
    mode_coverage,
    near_mode_fraction,
    sliced_wasserstein,
)
from sgm_nb.oracle import GaussianMixture
from sgm_nb.sampling import HeunEDMSampler
from sgm_nb.scalings import EDMScaling, EpsScaling, ScoreScaling, VScaling, VScalingWithEDMcNoise
from sgm_nb.score import SigmaScoreScaling, ToyMLP, WithEDMcNoise
from sgm_nb.sigma_sampling import EDMDiscretization, EDMSampling
from sgm_nb.utils import instantiate_from_config
from sgm_nb.weightings import EDMWeighting, EpsWeighting, VWeighting, effective_weight

RING = GaussianMixture.from_toy("ring8")
SIGMA_DATA = RING.covariance().diagonal().mean().sqrt().item()  # per-coordinate data std, sqrt(2.02)
COMP_STD = RING.covs[0, 0, 0].sqrt().item()  # 0.141
BANDS = [(0.002, 0.05), (0.05, 0.5), (0.5, 5.0), (5.0, 80.0)]


def _cfg(cls, **params):
    return {"target": f"{cls.__module__}.{cls.__name__}", "params": params}


PARAMS = {  # name: (scaling config, weighting config)
    "EDM": (_cfg(EDMScaling, sigma_data=SIGMA_DATA), _cfg(EDMWeighting, sigma_data=SIGMA_DATA)),
    "Eps": (_cfg(EpsScaling), _cfg(EpsWeighting)),
    "V": (_cfg(VScaling), _cfg(VWeighting)),
    "V, EDM c_noise": (_cfg(VScalingWithEDMcNoise), _cfg(VWeighting)),
    "Score": (_cfg(ScoreScaling), _cfg(EpsWeighting)),
    "EDM, σd=0.5": (_cfg(EDMScaling), _cfg(EDMWeighting)),  # supplementary: sgm's default sigma_data, not the data std
}


FAIR = {  # name: (scaling config, weighting config); every c_noise but the last is EDM's ln(σ)/4
    "EDM σd=1.42": (_cfg(EDMScaling, sigma_data=SIGMA_DATA), _cfg(EDMWeighting, sigma_data=SIGMA_DATA)),
    "EDM σd=0.5": (_cfg(EDMScaling), _cfg(EDMWeighting)),
    "Score": (_cfg(WithEDMcNoise, scaling_config=_cfg(ScoreScaling)), _cfg(EpsWeighting)),
    "σ·Score σd=1.42": (
        _cfg(WithEDMcNoise, scaling_config=_cfg(SigmaScoreScaling, sigma_data=SIGMA_DATA)),
        _cfg(EpsWeighting),
    ),
    "Score, c_noise=σ": (_cfg(ScoreScaling), _cfg(EpsWeighting)),  # sgm's ScoreScaling: the c_noise effect alone
}


def train(scaling_cfg, weighting_cfg, steps, batch, seed, lr=3e-3):
    "Train one ToyMLP on fresh ring8 samples; returns (D(x, sigma) in float64, seconds)."
    torch.manual_seed(seed)  # same initial weights and same loss draws (sigma, noise) for every parameterization
    net, den = ToyMLP(hidden=64), Denoiser(scaling_cfg)
    loss_fn = StandardDiffusionLoss(_cfg(EDMSampling), weighting_cfg)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    data = torch.Generator().manual_seed(10_000 + seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn._forward(net, den, None, RING.sample(batch, generator=data).float(), {}).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    secs = time.perf_counter() - t0
    net.eval()
    return torch.no_grad()(lambda x, s: den(net, x.float(), s.float(), None).double()), secs


def band_means(errs, sigmas):
    "Mean of the per-σ errors over the grid points of each band (the last band includes its upper end)."
    out = []
    for i, (lo, hi) in enumerate(BANDS):
        m = (sigmas >= lo) & ((sigmas <= hi) if i == len(BANDS) - 1 else (sigmas < hi))
        out.append(errs[m].mean().item())
    return out


def sample_metrics(x, ref):
    radius = 3 * COMP_STD
    return {
        "SW2": sliced_wasserstein(x, ref),
        "MMD2": mmd2_gaussian(x, ref, bandwidth=0.5),
        "modes": mode_coverage(x, RING.means, radius, min_count=max(1, len(x) // (8 * 10))),
        "near": near_mode_fraction(x, RING.means, radius),
        "logp": mean_log_prob(x, lambda x: RING.log_prob(x).clamp_min(-50.0)),  # one far-off sample can't dominate
        "tv": mode_weight_tv(x),
    }


def mode_weight_tv(x):
    "Total variation between the nearest-mode histogram of the samples and the ring's equal weights 1/8."
    counts = torch.bincount(torch.cdist(x.double(), RING.means).argmin(1), minlength=len(RING.means)).double()
    return 0.5 * (counts / len(x) - RING.weights).abs().sum().item()


def evaluate(D, x0_eval, sig_eval, x_T, ref, sampler):
    errs = excess_denoising_error(D, RING.denoiser, x0_eval, sig_eval, generator=torch.Generator().manual_seed(2))
    samples = sampler(lambda x, s, c: D(x, s), x_T, {})
    return errs, sample_metrics(samples, ref)


def ms(vals, fmt):
    "mean ± sd (sd omitted for one value)."
    if len(vals) == 1:
        return format(vals[0], fmt)
    return f"{format(statistics.mean(vals), fmt)} ± {format(statistics.stdev(vals), fmt)}"


def _machine() -> str:
    "When, where and with what the run was made: the first line of every record."
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        f"{now:%Y-%m-%d %H:%M} UTC, {platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )


def _eval_setup(n_samples, n_eval, n_sig):
    "What every run is measured with: the sigma grid, held-out data, starting noise, reference samples, the sampler."
    sig_eval = torch.logspace(math.log10(0.002), math.log10(80.0), n_sig, dtype=torch.float64)
    x0_eval = RING.sample(n_eval, generator=torch.Generator().manual_seed(1))
    x_T = torch.randn(n_samples, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = RING.sample(n_samples, generator=torch.Generator().manual_seed(4))
    return sig_eval, x0_eval, x_T, ref, HeunEDMSampler(_cfg(EDMDiscretization), num_steps=18)


def run(steps, n_seeds, batch, n_samples, n_eval, n_sig):
    t_start = time.perf_counter()
    sig_eval, x0_eval, x_T, ref, sampler = _eval_setup(n_samples, n_eval, n_sig)
    print(_machine())
    print(
        f"ring8, sigma_data (EDM) = {SIGMA_DATA:.4f}; ToyMLP(hidden=64), Adam 3e-3 cosine, {steps} steps x batch "
        f"{batch}, "
        f"seeds {list(range(n_seeds))}; eval {n_eval} points x {n_sig} sigmas; {n_samples} Heun samples, 18 steps (35 "
        "NFE)"
    )
    s_chk = torch.logspace(-3, 2, 11, dtype=torch.float64)
    for name, (sc, wt) in PARAMS.items():  # the effective weight each pair puts on its own target, stated and checked
        lam = effective_weight(instantiate_from_config(wt), instantiate_from_config(sc), s_chk)
        expect = s_chk**2 if name == "Score" else torch.ones_like(s_chk)  # w·c_out²
        assert torch.allclose(lam, expect, rtol=1e-12), (name, lam)

    results = {name: {"errs": [], "bands": [], "secs": [], "samples": []} for name in PARAMS}
    for seed in range(n_seeds):
        for name, (sc, wt) in PARAMS.items():
            D, secs = train(sc, wt, steps, batch, seed)
            errs, sm = evaluate(D, x0_eval, sig_eval, x_T, ref, sampler)
            r = results[name]
            r["errs"].append(errs)
            r["bands"].append(band_means(errs, sig_eval))
            r["secs"].append(secs)
            r["samples"].append(sm)
            print(
                f"  seed {seed} {name:15s} train {secs:5.1f}s  bands "
                + " ".join(f"{v:.2e}" for v in r["bands"][-1])
                + f"  SW2 {sm['SW2']:.4f}",
                flush=True,
            )

    trivial = excess_denoising_error(
        lambda x, s: x, RING.denoiser, x0_eval, sig_eval, generator=torch.Generator().manual_seed(2)
    )
    wiener = excess_denoising_error(
        lambda x, s: SIGMA_DATA**2 / (s[:, None] ** 2 + SIGMA_DATA**2) * x,
        RING.denoiser,
        x0_eval,
        sig_eval,
        generator=torch.Generator().manual_seed(2),
    )
    exact2 = RING.sample(n_samples, generator=torch.Generator().manual_seed(5))
    floors = {
        "exact vs exact": sample_metrics(exact2, ref),
        "D* + Heun 35 NFE": sample_metrics(sampler(lambda x, s, c: RING.denoiser(x, s), x_T, {}), ref),
    }

    band_hdr = " ".join(
        f"{f'[{lo:g}, {hi:g}' + (']' if i == len(BANDS) - 1 else ')'):>21s}" for i, (lo, hi) in enumerate(BANDS)
    )
    print(f"\nExcess denoising error E||D - D*||^2, band means (mean ± sd over {n_seeds} seeds)")
    print(f"{'parameterization':16s} {band_hdr}")
    for name, r in results.items():
        cols = [ms([b[i] for b in r["bands"]], ".2e") for i in range(len(BANDS))]
        print(f"{name:16s} " + " ".join(f"{c:>21s}" for c in cols))
    print(f"{'D = x (trivial)':16s} " + " ".join(f"{v:>21.2e}" for v in band_means(trivial, sig_eval)))
    print(f"{'Wiener c_skip·x':16s} " + " ".join(f"{v:>21.2e}" for v in band_means(wiener, sig_eval)))

    print(
        f"\nSamples: HeunEDMSampler, 18 steps (35 NFE), {n_samples} samples vs {n_samples} exact (mean ± sd over "
        f"{n_seeds} seeds)"
    )
    print(
        f"{'parameterization':16s} {'sliced W2':>17s} {'MMD² (h=0.5)':>21s} {'modes':>11s} {'near mode':>15s} "
        f"{'log p (≥-50)':>15s} {'mode TV':>15s} {'train s':>11s}"
    )
    for name, r in results.items():
        get = lambda k, r=r: [s[k] for s in r["samples"]]
        print(
            f"{name:16s} {ms(get('SW2'), '.3g'):>17s} {ms(get('MMD2'), '.2e'):>21s} {ms(get('modes'), '.2f'):>11s} "
            f"{ms(get('near'), '.4f'):>15s} {ms(get('logp'), '.3f'):>15s} {ms(get('tv'), '.3f'):>15s} "
            f"{ms(r['secs'], '.1f'):>11s}"
        )
    for name, f in floors.items():
        print(
            f"{name:16s} {f['SW2']:>17.4f} {f['MMD2']:>21.2e} {f['modes']:>11.2f} {f['near']:>15.4f} "
            f"{f['logp']:>15.3f} {f['tv']:>15.3f}"
        )

    print("\nPer-σ excess error, mean over seeds")
    names = list(results)
    print(f"{'sigma':>8s} " + " ".join(f"{n[:14]:>14s}" for n in names) + f" {'D = x':>14s} {'Wiener':>14s}")
    for j, s in enumerate(sig_eval.tolist()):
        row = [torch.stack(results[n]["errs"])[:, j].mean().item() for n in names] + [
            trivial[j].item(),
            wiener[j].item(),
        ]
        print(f"{s:8.4f} " + " ".join(f"{v:14.3e}" for v in row))
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f}s")


def run_fair(budgets, n_seeds, batch, n_samples, n_eval, n_sig):
    "Score against EDM with one c_noise (EDM's) and embedding for all, at several budgets and seeds."
    t_start = time.perf_counter()
    sig_eval, x0_eval, x_T, ref, sampler = _eval_setup(n_samples, n_eval, n_sig)
    print(
        f"{_machine()}; fair mode, budgets {budgets}, seeds {list(range(n_seeds))}, batch {batch}, "
        f"sigma_data {SIGMA_DATA:.4f}"
    )
    table = {}
    for steps in budgets:
        for name, (sc, wt) in FAIR.items():
            rows = []
            for seed in range(n_seeds):
                D, secs = train(sc, wt, steps, batch, seed)
                errs, sm = evaluate(D, x0_eval, sig_eval, x_T, ref, sampler)
                rows.append((band_means(errs, sig_eval), sm, secs))
            table[steps, name] = rows
            print(f"  {steps:5d} steps {name:17s} done ({sum(r[2] for r in rows):.1f}s)", flush=True)
    band_hdr = " ".join(
        f"[{lo:g}, {hi:g}{']' if i == len(BANDS) - 1 else ')'}".rjust(21) for i, (lo, hi) in enumerate(BANDS)
    )
    print(f"\nExcess error E||D - D*||^2, band means, mean ± sd over {n_seeds} seeds; then samples (35-NFE Heun)")
    print(f"{'steps':>5s} {'run':17s} {band_hdr} {'sliced W2':>17s} {'near mode':>15s} {'log p (≥-50)':>17s}")
    for (steps, name), rows in table.items():
        cols = [ms([r[0][i] for r in rows], ".2e").rjust(21) for i in range(len(BANDS))]
        get = lambda k, rows=rows: [r[1][k] for r in rows]
        print(
            f"{steps:5d} {name:17s} {' '.join(cols)} {ms(get('SW2'), '.3g'):>17s} {ms(get('near'), '.3f'):>15s} "
            f"{ms(get('logp'), '.2f'):>17s}"
        )
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f}s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--quick", action="store_true", help="smoke test: 150 steps, 2 seeds, 500 samples, 8 sigmas")
    p.add_argument("--fair", action="store_true", help="Score vs EDM with EDM's c_noise for all, at several budgets")
    p.add_argument("--budgets", default="500,1500,4000", help="--fair: comma-separated training steps")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.fair:
        budgets = [150] if a.quick else [int(b) for b in a.budgets.split(",")]
        seeds = 2 if a.quick else a.seeds
        run_fair(
            budgets,
            seeds,
            128 if a.quick else a.batch,
            500 if a.quick else a.samples,
            500 if a.quick else 4000,
            8 if a.quick else 32,
        )
    elif a.quick:
        run(150, 2, 128, 500, 500, 8)
    else:
        run(a.steps, a.seeds, a.batch, a.samples, 4000, 32)


if __name__ == "__main__":
    main()
