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
    assert (run / "checkpoints" / "last.ckpt").is_file()
