"Flow matching, min-SNR, soft-min-SNR, EDM2's uncertainty against independent expressions; the rectified-flow config."

import math

import pytest
import torch
from helpers import ROOT, cli

from sgm_nb.config import build_engine, find_config, load_config
from sgm_nb.loss import StandardDiffusionLoss
from sgm_nb.scalings import EDMScaling, EpsScaling, RectifiedFlowScaling, VScaling, ideal_target
from sgm_nb.sigma_sampling import EDMSampling
from sgm_nb.weightings import (
    MinSNRWeighting,
    RectifiedFlowWeighting,
    SoftMinSNRWeighting,
    effective_weight,
)

f64 = torch.float64


def rel(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def test_rectified_flow_scaling_is_the_interpolation_and_targets_the_velocity():
    t = torch.linspace(0.0, 0.99, 100, dtype=f64)
    sigma = t / (1 - t)
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(100, 3, generator=g, dtype=f64), torch.randn(100, 3, generator=g, dtype=f64)
    c_skip, c_out, c_in, c_noise = RectifiedFlowScaling()(sigma[:, None])
    x_t = (1 - t[:, None]) * x0 + t[:, None] * n
    torch.testing.assert_close(c_in * (x0 + sigma[:, None] * n), x_t, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_skip[:, 0], 1 - t, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_out[:, 0], -t, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_noise[:, 0], 1000 * t, rtol=0, atol=1e-9)
    # the denoiser built from F = v returns x0, and the ideal target is v = n - x0
    s = torch.logspace(-4, 3, 8, dtype=f64)
    x0, n = torch.randn(8, 1, 4, 4, generator=g, dtype=f64), torch.randn(8, 1, 4, 4, generator=g, dtype=f64)
    torch.testing.assert_close(ideal_target(RectifiedFlowScaling(), x0, n, s), n - x0, rtol=0, atol=1e-10)
    cs, co, _, _ = RectifiedFlowScaling()(s[:, None, None, None])
    torch.testing.assert_close(cs * (x0 + s[:, None, None, None] * n) + co * (n - x0), x0, rtol=0, atol=1e-10)


def test_rectified_flow_weighting_gives_the_plain_velocity_mse():
    g = torch.Generator().manual_seed(1)
    x0, n, F = (torch.randn(6, 1, 5, 5, generator=g, dtype=f64) for _ in range(3))
    s = torch.logspace(-3, 2, 6, dtype=f64)
    s4 = s[:, None, None, None]
    c_skip, c_out, _, _ = RectifiedFlowScaling()(s4)
    D = c_skip * (x0 + s4 * n) + c_out * F
    sgm = RectifiedFlowWeighting()(s) * (D - x0).square().flatten(1).mean(1)
    assert rel(sgm, (F - (n - x0)).square().flatten(1).mean(1)) < 1e-10
    assert rel(RectifiedFlowWeighting()(s), ((1 + s) / s) ** 2) < 1e-14


@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_min_snr_matches_the_papers_per_target_weights(gamma):
    s = torch.logspace(-3, 2, 200, dtype=f64)
    snr = s**-2
    mw = MinSNRWeighting(gamma)
    x0_target = lambda sig: (torch.zeros_like(sig), torch.ones_like(sig), torch.ones_like(sig), sig)  # noqa: E731
    expected = {
        "x0": torch.minimum(snr, torch.full_like(snr, gamma)),
        "eps": torch.minimum(snr, torch.full_like(snr, gamma)) / snr,
        "v": torch.minimum(snr, torch.full_like(snr, gamma)) / (snr + 1),
    }
    for name, sc in (("x0", x0_target), ("eps", EpsScaling()), ("v", VScaling())):
        assert rel(effective_weight(mw, sc, s), expected[name]) < 1e-12, name
    assert mw(torch.zeros(1)).item() == gamma


def test_soft_min_snr_is_k_diffusions_weight_and_a_soft_minimum():
    s = torch.logspace(-3, 2, 200, dtype=f64)
    for sd in (0.5, 1.0):
        k_diffusion = (s * sd) ** 2 / (s**2 + sd**2) ** 2  # its weight on the MSE of EDM's target
        assert rel(effective_weight(SoftMinSNRWeighting(sd), EDMScaling(sd), s), k_diffusion) < 1e-12
        assert rel(SoftMinSNRWeighting(sd)(s), 1 / (s**2 + 1 / sd**-2)) < 1e-12  # 1 / (1/SNR + 1/gamma)
        hard = MinSNRWeighting(sd**-2)(s)
        assert (SoftMinSNRWeighting(sd)(s) <= hard).all() and (SoftMinSNRWeighting(sd)(s) >= hard / 2).all()


def test_logit_normal_t_is_edm_sampling_at_zero_one():
    z = torch.linspace(-3, 3, 61, dtype=f64)
    sigma = EDMSampling(p_mean=0.0, p_std=1.0)(61, rand=z)
    t = sigma / (1 + sigma)
    torch.testing.assert_close(torch.log(t / (1 - t)), z, rtol=0, atol=1e-12)  # logit t = z ~ N(0, 1)


def test_rectified_flow_config_loads_and_builds():
    cfg = load_config([find_config("mnist_rectified_flow")])
    cpu = load_config([find_config("mnist_cpu")])
    assert cfg.model.params.network_config == cpu.model.params.network_config
    assert cfg.lightning.trainer.max_steps == cpu.lightning.trainer.max_steps
    assert cfg.data == cpu.data
    e = build_engine(cfg)
    assert type(e.denoiser.scaling).__name__ == "RectifiedFlowScaling"
    loss = e.loss_fn
    assert isinstance(loss, StandardDiffusionLoss)
    assert type(loss.loss_weighting).__name__ == "RectifiedFlowWeighting"
    assert (loss.sigma_sampler.p_mean, loss.sigma_sampler.p_std) == (0.0, 1.0)
    # one loss evaluation on real-shaped data is finite and positive
    torch.manual_seed(0)
    batch = {"jpg": torch.rand(4, 1, 28, 28) * 2 - 1, "cls": torch.arange(4)}
    out = loss(e.model, e.denoiser, e.conditioner, batch["jpg"], batch)
    assert out.shape == (4,) and torch.isfinite(out).all() and (out > 0).all()
    assert math.isclose(float(EDMSampling(0.0, 1.0)(1, rand=torch.zeros(1))), 1.0)


@pytest.mark.subprocess
def test_rectified_flow_trains_from_the_cli(tmp_path):
    r = cli(
        "train",
        "--base",
        ROOT / "sgm_nb" / "configs" / "mnist_rectified_flow.yaml",
        "lightning.trainer.max_steps=2",
        "lightning.modelcheckpoint.params.every_n_train_steps=2",
        "lightning.callbacks.image_logger.params.batch_frequency=1000",
        "data.params.batch_size=8",
        "data.params.limit=64",
        "model.params.sampler_config.params.num_steps=2",
        "--no-progress",
        "--name",
        "rf",
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "done: step 2" in r.stdout
    (run,) = (tmp_path / "runs").iterdir()
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # and it samples: the same Heun solver, the denoiser D(x; sigma) built from RectifiedFlowScaling
    r = cli("sample", "--ckpt", ckpt, "--n", 4, "--nrow", 2, "--steps", 2, "--out", tmp_path / "g.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").is_file()


def test_uncertainty_optimum_is_the_log_of_the_loss():
    "u* = ln L: the gradient of exp(-u) L + u vanishes there, and Adam on a fixed loss profile finds it."
    from sgm_nb.objectives import EDM2Uncertainty

    L = torch.logspace(-2, 2, 9, dtype=f64)
    u = L.log().requires_grad_()
    (g,) = torch.autograd.grad((torch.exp(-u) * L + u).sum(), u)
    assert g.abs().max() < 1e-12
    torch.manual_seed(0)
    unc = EDM2Uncertainty(64)
    opt = torch.optim.Adam(unc.parameters(), lr=0.05)
    target = lambda s: 1 + s**2  # noqa: E731  a loss that grows with sigma
    for k in range(300):
        for group in opt.param_groups:
            group["lr"] = 0.05 * (1 - k / 300)
        sigma = torch.exp(torch.randn(512))
        out = unc(sigma)
        loss = (torch.exp(-out) * target(sigma) + out).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = torch.exp(torch.linspace(-1, 1, 9))
    with torch.no_grad():
        assert (unc(s) - target(s).log()).abs().max() < 0.03


def test_uncertainty_weighted_loss_wraps_the_standard_loss():
    from sgm_nb.denoiser import Denoiser
    from sgm_nb.objectives import UncertaintyWeightedLoss

    class Zero(torch.nn.Module):
        def forward(self, x, t, c=None):
            return torch.zeros_like(x)

    cfgs = (
        {"target": "sgm_nb.sigma_sampling.EDMSampling"},
        {"target": "sgm_nb.weightings.EDMWeighting"},
    )
    uwl, plain = UncertaintyWeightedLoss(*cfgs, logvar_channels=16), StandardDiffusionLoss(*cfgs)
    torch.nn.init.normal_(uwl.uncertainty.linear.weight)
    den = Denoiser({"target": "sgm_nb.scalings.EDMScaling"})
    x0 = torch.rand(8, 1, 6, 6) * 2 - 1
    torch.manual_seed(3)
    a = uwl._forward(Zero(), den, {}, x0, {})
    torch.manual_seed(3)
    b = plain._forward(Zero(), den, {}, x0, {})
    u = uwl.uncertainty(uwl.last_sigmas)
    torch.testing.assert_close(a, torch.exp(-u) * b + u)
    assert [n for n, _ in uwl.named_parameters()] == ["uncertainty.linear.weight"]


def test_lambda_profiles_against_closed_forms():
    from sgm_nb.objectives import lambda_profile, profile_quantiles, sigma_grid
    from sgm_nb.scalings import ScoreScaling
    from sgm_nb.weightings import EDMWeighting, EpsWeighting

    z90 = 1.2815515655446004
    for pm, ps in ((-1.2, 1.2), (0.0, 1.0), (0.5, 0.7)):
        lam, mass = lambda_profile(RectifiedFlowScaling(), RectifiedFlowWeighting(), EDMSampling(pm, ps))
        q = profile_quantiles(lam, mass)  # matched pair: lambda ~ N(-2 pm, 4 ps^2)
        torch.testing.assert_close(
            q, torch.tensor([-2 * pm - 2 * ps * z90, -2 * pm, -2 * pm + 2 * ps * z90], dtype=f64), rtol=0, atol=5e-3
        )
        # weight sigma^2 on the score's target tilts ln sigma by 2 ps^2
        lam, mass = lambda_profile(ScoreScaling(), EpsWeighting(), EDMSampling(pm, ps))
        assert abs(profile_quantiles(lam, mass, (0.5,)).item() + 2 * (pm + 2 * ps**2)) < 5e-3
    sigma, p = sigma_grid(EDMSampling())
    assert abs(p.sum().item() - 1) < 1e-12 and abs((p * sigma.log()).sum().item() + 1.2) < 1e-9
    lam_t, mass_t = lambda_profile(EDMScaling(), EDMWeighting(), EDMSampling())  # matched: the sampler's own p
    lam_e, mass_e = lambda_profile(EDMScaling(), EDMWeighting(), EDMSampling(), frame="eps")
    torch.testing.assert_close(lam_e, lam_t, rtol=0, atol=0)
    w = 1 + torch.exp(-lam_t) / 0.25  # the eps-frame factor w sigma^2 = 1 + sigma^2 / sigma_d^2, sigma^2 = e^-lambda
    expected = mass_t * w / (mass_t * w).sum()
    keep = expected > 1e-12
    assert rel(mass_e[keep], expected[keep]) < 1e-9
    with pytest.raises(ValueError, match="frame must be 'target' or 'eps', got 'x0'"):
        lambda_profile(EDMScaling(), EDMWeighting(), EDMSampling(), frame="x0")
