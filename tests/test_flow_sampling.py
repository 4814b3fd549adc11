"""Rectified flow in sigma space (04_sigma_sampling, 11_samplers), pinned outside the notebooks.

sigma = t / (1 - t): SD3's logit-normal times are EDMSampling's log-normal sigmas, its timestep shift multiplies sigma,
its uniform grid in t is RectifiedFlowDiscretization, and the flow-matching Euler step in t is DDIM (the Euler step in
sigma). Everything in float64; the equalities to 1e-10."""

import math

import pytest
import torch

from sgm_nb.oracle import GaussianMixture
from sgm_nb.sampling import EulerEDMSampler, sample_euler
from sgm_nb.sigma_sampling import (
    EDMDiscretization,
    EDMSampling,
    LogitNormalSampling,
    RectifiedFlowDiscretization,
    flow_t_from_sigma,
    shift_flow_t,
    sigma_from_flow_t,
)
from sgm_nb.utils import instantiate_from_config

F64 = torch.float64
RF_TARGET = "sgm_nb.sigma_sampling.RectifiedFlowDiscretization"


def _rel(a, b):
    return ((a - b) / b).abs().max().item()


def _normal(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_flow_time_is_a_noise_level():
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 3, generator=g, dtype=F64)
    t = torch.rand(7, 1, generator=g, dtype=F64)
    sigma = sigma_from_flow_t(t)
    torch.testing.assert_close((1 - t) * x0 + t * n, (x0 + sigma * n) / (1 + sigma), rtol=0, atol=1e-12)
    torch.testing.assert_close(flow_t_from_sigma(sigma), t, rtol=0, atol=1e-15)


@pytest.mark.parametrize("m, s", [(0.0, 1.0), (-1.2, 1.2), (0.5, 0.6), (-0.3, 2.0)])
def test_sd3_logit_normal_is_edm_sampling(m, s):
    u = _normal(50_000, 1)
    sigma_sd3 = sigma_from_flow_t(torch.sigmoid(m + s * u))  # SD3: t = sigmoid(m + s u), then t / (1 - t)
    sigma_edm = EDMSampling(p_mean=m, p_std=s)(len(u), rand=u)
    assert _rel(sigma_edm, sigma_sd3) < 1e-10


def test_logit_normal_density_is_log_normal():
    t = torch.linspace(1e-4, 1 - 1e-4, 999, dtype=F64)
    m, s = 0.4, 0.9
    logit = torch.log(t / (1 - t))
    p_t = torch.exp(-0.5 * ((logit - m) / s) ** 2) / (s * math.sqrt(2 * math.pi) * t * (1 - t))
    sigma = sigma_from_flow_t(t)
    p_sigma = torch.exp(-0.5 * ((sigma.log() - m) / s) ** 2) / (sigma * s * math.sqrt(2 * math.pi))
    assert _rel(p_sigma / (1 - t) ** 2, p_t) < 1e-10  # p_t = p_sigma d sigma / dt, d sigma / dt = 1 / (1 - t)^2


@pytest.mark.parametrize("shift", [0.25, 1.0, 3.0, 6.0])
def test_timestep_shift_multiplies_sigma(shift):
    t = torch.linspace(5e-4, 1 - 5e-4, 1999, dtype=F64)
    assert _rel(sigma_from_flow_t(shift_flow_t(t, shift)), shift * sigma_from_flow_t(t)) < 1e-10


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0])
def test_logit_normal_sampling_is_sd3_recipe(shift):
    u = _normal(50_000, 2)
    m, s = 0.2, 1.1
    sigma_sd3 = sigma_from_flow_t(shift_flow_t(torch.sigmoid(m + s * u), shift))
    sampler = LogitNormalSampling(m=m, s=s, shift=shift)
    assert _rel(sampler(len(u), rand=u), sigma_sd3) < 1e-10
    assert _rel(EDMSampling(p_mean=m + math.log(shift), p_std=s)(len(u), rand=u), sigma_sd3) < 1e-10
    assert sampler(10).shape == (10,) and (sampler(10) > 0).all()


def test_edm_sampling_defaults_unchanged():
    sampler = EDMSampling()
    assert (sampler.p_mean, sampler.p_std) == (-1.2, 1.2)
    z = torch.linspace(-2, 2, 5, dtype=F64)
    torch.testing.assert_close(sampler(5, rand=z), torch.exp(-1.2 + 1.2 * z), rtol=1e-15, atol=0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 2, 10, 28])
def test_rectified_flow_grid(shift, n):
    disc = RectifiedFlowDiscretization(shift=shift)
    sigmas = disc(n, dtype=F64)
    assert sigmas.shape == (n + 1,) and sigmas[-1] == 0 and (sigmas.diff() < 0).all()
    assert abs(sigmas[0].item() - 80.0) < 80 * 1e-13  # sigma_max is the first level whatever the shift
    u = sigmas / (shift + sigmas)  # undo sigma = shift t / (1 - t): the unshifted times
    steps = u.diff()
    torch.testing.assert_close(steps, torch.full_like(steps, -u[0].item() / n), rtol=0, atol=1e-14)
    levels = sigmas[:-1]
    assert _rel(sigma_from_flow_t(shift_flow_t(u[:-1], shift)), levels) < 1e-10  # SD3's way: shift t, then convert
    assert torch.equal(disc(n, flip=True), torch.flip(disc(n), (0,)))
    assert disc(n).dtype == torch.float32 and disc(n, do_append_zero=False).shape == (n,)


def test_rectified_flow_shift_scales_the_grid():
    base = RectifiedFlowDiscretization(sigma_max=20.0)(12, do_append_zero=False, dtype=F64)
    for shift in (0.5, 3.0):
        shifted = RectifiedFlowDiscretization(shift=shift, sigma_max=20.0 * shift)(12, do_append_zero=False, dtype=F64)
        assert _rel(shifted, shift * base) < 1e-10


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"shift": 0.0}, "shift must be a finite number > 0, got 0.0"),
        ({"sigma_max": -1.0}, "sigma_max must be a finite number > 0"),
        ({"sigma_max": float("inf")}, "sigma_max must be a finite number > 0"),
    ],
)
def test_rectified_flow_grid_refuses_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        RectifiedFlowDiscretization(**kw)


def test_logit_normal_sampling_refuses_bad_parameters():
    with pytest.raises(ValueError, match="shift must be a finite number > 0"):
        LogitNormalSampling(shift=-2.0)
    with pytest.raises(ValueError, match="s must be a finite number > 0"):
        LogitNormalSampling(s=0.0)


# --- the flow-matching Euler step is DDIM (11_samplers)

RING8 = GaussianMixture.from_toy("ring8")


def _oracle(x, sigma):
    return RING8.denoiser(x, sigma)


def flow_euler(denoise, x_t, ts, callback=None):
    "SD3-style Euler in t: x_t += (t' - t) v with v = (x_t - x0_hat) / t, the denoiser asked at x_t / (1 - t)."
    for t, t_next in zip(ts[:-1], ts[1:]):
        x0_hat = denoise(x_t / (1 - t), t / (1 - t))
        if callback is not None:
            callback(x_t, t)
        x_t = x_t + (t_next - t) * (x_t - x0_hat) / t
    return x_t


def _random_grid(seed, n=14):
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.rand(n, generator=g, dtype=F64).tolist(), reverse=True) + [0.0]


def _rf_grid(n=12, shift=3.0):
    return [flow_t_from_sigma(s) for s in RectifiedFlowDiscretization(shift=shift)(n, dtype=F64).tolist()]


@pytest.mark.parametrize("grid", ["random 0", "random 1", "rf shift 1", "rf shift 3", "edm"])
def test_flow_euler_is_ddim_step_for_step(grid):
    if grid.startswith("random"):
        ts = _random_grid(int(grid[-1]))
    elif grid == "edm":
        ts = [flow_t_from_sigma(s) for s in EDMDiscretization(0.01, 20.0)(10, dtype=F64).tolist()]
    else:
        ts = _rf_grid(shift=float(grid[-1]))
    sigmas = [sigma_from_flow_t(t) for t in ts]
    x_sigma0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(5), dtype=F64) * (1 + sigmas[0] ** 2) ** 0.5
    in_t, in_sigma = [], []
    end_t = flow_euler(_oracle, (1 - ts[0]) * x_sigma0, ts, callback=lambda x, t: in_t.append(x / (1 - t)))
    end_sigma = sample_euler(_oracle, x_sigma0, sigmas, callback=lambda x, i, s, sh, d: in_sigma.append(x))
    assert len(in_t) == len(in_sigma) == len(ts) - 1
    err = (torch.stack(in_t + [end_t]) - torch.stack(in_sigma + [end_sigma])).abs().max().item()
    assert err < 1e-10 * x_sigma0.abs().max().item(), err
    torch.testing.assert_close(end_t, _oracle(in_t[-1], sigmas[-2]), rtol=0, atol=1e-12)  # the last step jumps to D


def test_one_flow_step_is_the_ddim_formula():
    x = RING8.sample(16, generator=torch.Generator().manual_seed(3), sigma=2.0)
    for s, s_next in ((2.0, 0.7), (40.0, 9.0), (0.3, 0.0)):
        d = _oracle(x, s)
        t, t_next = flow_t_from_sigma(s), flow_t_from_sigma(s_next)
        x_t_next = (1 - t) * x + (t_next - t) * ((1 - t) * x - d) / t
        ddim = x + (s_next - s) * (x - d) / s
        torch.testing.assert_close(x_t_next / (1 - t_next), ddim, rtol=0, atol=1e-10)


def test_euler_edm_sampler_on_the_rf_grid_is_the_flow_sampler():
    "The config-built sampler (sgm's start, no churn) on RectifiedFlowDiscretization runs SD3's Euler in t."
    cfg = {"target": RF_TARGET, "params": {"shift": 3.0, "sigma_max": 50.0}}
    sampler = instantiate_from_config(
        {"target": "sgm_nb.sampling.EulerEDMSampler", "params": {"discretization_config": cfg, "num_steps": 10}}
    )
    assert isinstance(sampler, EulerEDMSampler)
    noise = torch.randn(32, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    out = sampler(RING8, noise, {})
    ts = [flow_t_from_sigma(s) for s in RectifiedFlowDiscretization(shift=3.0, sigma_max=50.0)(10, dtype=F64).tolist()]
    x_t0 = (1 - ts[0]) * noise * (1 + 50.0**2) ** 0.5  # sgm's start sqrt(1 + sigma_0^2) n, as x_t
    torch.testing.assert_close(out, flow_euler(_oracle, x_t0, ts), rtol=0, atol=1e-10)
