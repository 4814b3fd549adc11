"Guidance after CFG (IntervalCFG, AutoGuidance: toy, config, the sgm-nb command) and EDM2's post-hoc EMA."

import math

import pytest
import torch
import torch.nn as nn
from helpers import cli, tiny_config
from omegaconf import OmegaConf

from sgm_nb.checkpoint import resolve_bad_ckpt, save_checkpoint
from sgm_nb.config import build_engine, find_config, load_config, to_container
from sgm_nb.ema import (
    LitEma,
    PostHocEma,
    PowerEma,
    gamma_to_sigma_rel,
    posthoc_ema_coefficients,
    power_profile_dot,
    sigma_rel_to_gamma,
)
from sgm_nb.guiders import AutoGuidance, IntervalCFG, VanillaCFG, engine_denoiser
from sgm_nb.oracle import GaussianMixture
from sgm_nb.sampling import EulerEDMSampler, HeunEDMSampler
from sgm_nb.utils import instantiate_from_config

f64 = torch.float64
DISC = {"target": "sgm_nb.sigma_sampling.EDMDiscretization"}
AG_BAD_CKPT = "model.params.sampler_config.params.guider_config.params.bad_ckpt"
KEPT_2 = "trainstep_checkpoints/step=000002.ckpt"


def _net_denoiser(dtype):
    "A fixed random conditional 'denoiser' network: nonlinear in x, sigma and c['vector'] (B, 3)."
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 2)).to(dtype)

    @torch.no_grad()
    def denoiser(x, sigma, c):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1).expand(len(x), 1)
        return x / (1 + s**2) + net(torch.cat([x, s.log(), c["vector"].to(x)], 1))

    return denoiser


def _sample(guider_config, denoiser, dtype, cond=True, steps=8, n=16):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=dtype)
    c = {"vector": torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)}
    uc = {"vector": torch.zeros(n, 3, dtype=dtype)}
    return HeunEDMSampler(DISC, num_steps=steps, guider_config=guider_config)(denoiser, z, c if cond else uc, uc)


def _icfg(w, lo, hi):
    return {"target": "sgm_nb.guiders.IntervalCFG", "params": {"scale": w, "sigma_min": lo, "sigma_max": hi}}


# --- IntervalCFG ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_interval_cfg_holding_every_sigma_is_vanilla_cfg_bit_for_bit(dtype):
    D = _net_denoiser(dtype)
    vanilla = _sample({"target": "sgm_nb.guiders.VanillaCFG", "params": {"scale": 2.5}}, D, dtype)
    for lo, hi in ((0.0, float("inf")), (0.0, 80.0)):
        assert torch.equal(_sample(_icfg(2.5, lo, hi), D, dtype), vanilla)
    assert not torch.equal(_sample(_icfg(2.5, 0.0, 1.0), D, dtype), vanilla)  # a band: another sampler


def test_interval_cfg_outside_its_interval_is_the_conditional_denoiser():
    D = _net_denoiser(f64)
    conditional = _sample(None, D, f64)
    torch.testing.assert_close(_sample(_icfg(4.0, 100.0, 200.0), D, f64), conditional, rtol=0, atol=1e-10)
    assert (_sample(_icfg(4.0, 0.0, float("inf")), D, f64) - conditional).abs().max() > 1e-2


def test_interval_cfg_chooses_per_sample():
    out = torch.cat([torch.zeros(5, 2, 3, dtype=f64), torch.ones(5, 2, 3, dtype=f64)])  # [D_u; D_c]
    sigma = torch.tensor([0.01, 0.5, 1.0, 10.0, 11.0], dtype=f64)
    got = IntervalCFG(4.0, 0.5, 10.0)(out, sigma)
    assert got.shape == (5, 2, 3)
    assert got[:, 0, 0].tolist() == [1.0, 4.0, 4.0, 4.0, 1.0]  # inclusive bounds, conditional outside
    assert torch.equal(IntervalCFG(4.0, 0.5, 10.0)(out, 2.0), VanillaCFG(4.0)(out, 2.0))  # a scalar sigma
    with pytest.raises(ValueError, match="sigma_max must be"):
        IntervalCFG(1.0, 2.0, 1.0)


# --- AutoGuidance --------------------------------------------------------------------------------------------------


def test_autoguidance_interpolates_between_the_bad_and_the_good_sampler():
    good, bad = _net_denoiser(f64), lambda x, s, c: 0.7 * _net_denoiser(f64)(x, s, c)
    ag = lambda w: {"target": "sgm_nb.guiders.AutoGuidance", "params": {"scale": w, "bad_denoiser": bad}}
    torch.testing.assert_close(_sample(ag(1.0), good, f64), _sample(None, good, f64), rtol=0, atol=1e-12)
    torch.testing.assert_close(_sample(ag(0.0), good, f64), _sample(None, bad, f64), rtol=0, atol=1e-12)
    g = AutoGuidance(3.0, bad_denoiser=bad)
    x, s, c = torch.randn(4, 2, dtype=f64), torch.full((4,), 0.8, dtype=f64), {"vector": torch.randn(4, 3, dtype=f64)}
    d_good = good(*g.prepare_inputs(x, s, c, None))
    torch.testing.assert_close(g(d_good, s), bad(x, s, c) + 3.0 * (d_good - bad(x, s, c)), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="without prepare_inputs"):
        g(d_good, s)  # the kept inputs are used once


def test_autoguidance_sharpens_on_the_data_where_cfg_leaves_it():
    ring = GaussianMixture.from_toy("ring8")
    sub = lambda widen: GaussianMixture(
        torch.full((2,), 0.5, dtype=f64), ring.means[:2], ring.covs[:2] + widen * torch.eye(2, dtype=f64)
    )
    good, bad = sub(0.0), sub(0.06)
    D = lambda x, s, c: torch.where(c["vector"][:, :1] > 0, good.denoiser(x, s), ring.denoiser(x, s))
    z = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    c, uc = {"vector": torch.ones(400, 1, dtype=f64)}, {"vector": torch.zeros(400, 1, dtype=f64)}
    run = lambda g: HeunEDMSampler(DISC, num_steps=16, guider_config=g)(D, z, c, uc)
    logp = lambda g: good.log_prob(run(g)).mean().item()
    base = logp(None)
    cfg = logp({"target": "sgm_nb.guiders.VanillaCFG", "params": {"scale": 3.0}})
    ag = logp({"target": "sgm_nb.guiders.AutoGuidance", "params": {"scale": 3.0, "bad_denoiser": bad}})
    assert cfg < base - 0.3 < base + 0.5 < ag


def test_mnist_autoguidance_config_builds_with_a_frozen_class_embedding():
    cfg = load_config([find_config("mnist_autoguidance")])
    engine = build_engine(cfg)
    g = engine.sampler.guider
    assert isinstance(g, AutoGuidance) and g.scale == 2.0 and g.bad_ckpt is None and g.bad_denoiser is None
    emb = engine.conditioner.embedders[0]
    assert not any(p.requires_grad for p in emb.parameters())  # every checkpoint of a run reads c the same way
    sampler_cfg = to_container(cfg)["model"]["params"]["sampler_config"]
    assert isinstance(instantiate_from_config(sampler_cfg), EulerEDMSampler)
    g.prepare_inputs(torch.zeros(1, 2), torch.ones(1), {}, {})
    with pytest.raises(ValueError, match="has no bad model: set guider_config.params.bad_ckpt"):
        g(torch.zeros(1, 2), 1.0)


def _tiny_checkpoints(tmp_path):
    "A good and a bad (perturbed) checkpoint of the tiny config, sampled with AutoGuidance."
    cfg = tiny_config()
    OmegaConf.update(
        cfg,
        "model.params.sampler_config.params.guider_config",
        {"target": "sgm_nb.guiders.AutoGuidance", "params": {"scale": 2.0, "bad_ckpt": None}},
        merge=False,
    )
    torch.manual_seed(0)
    engine = build_engine(cfg)
    paths = []
    for name in ("good", "bad"):
        if name == "bad":
            with torch.no_grad():
                for p in engine.model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            engine.model_ema = LitEma(engine.model, decay=0.99)  # its EMA: the perturbed weights
            with torch.no_grad():
                for p in engine.model.parameters():
                    p.add_(1.0)  # training weights that differ from the EMA's
        state = {"state_dict": engine.state_dict(), "config": to_container(cfg), "sample_shape": [1, 14, 14]}
        paths.append(save_checkpoint(state, tmp_path / name / "checkpoints" / "last.ckpt"))
    return paths


def test_engine_denoiser_samples_with_the_checkpoints_ema_weights(tmp_path):
    good, bad = _tiny_checkpoints(tmp_path)
    D = engine_denoiser(bad)
    eng = D.engine
    ema = {k: v for k, v in eng.model_ema.state_dict().items() if k not in ("decay", "num_updates")}
    for name, p in eng.model.named_parameters():
        assert torch.equal(p, ema[name.replace(".", "")])  # the EMA's weights are the ones sampled
    x = torch.randn(2, 1, 14, 14)
    c = {"vector": eng.conditioner.embedders[0](torch.tensor([3, 7]))}
    assert D(x, torch.full((2,), 1.5), c).shape == x.shape


@pytest.mark.subprocess
def test_sgm_nb_sample_runs_autoguidance_from_the_config(tmp_path):
    good, bad = _tiny_checkpoints(tmp_path)
    common = ("sample", "--ckpt", good, "--n", "2", "--batch-size", "2", "--steps", "3")
    r = cli(*common, "--out", tmp_path / "ag.png", f"{AG_BAD_CKPT}={bad}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ag.png").stat().st_size > 0
    r = cli(*common, "--out", tmp_path / "none.png", cwd=tmp_path)
    assert r.returncode != 0 and "has no bad model" in r.stderr


def test_a_run_is_autoguided_by_its_own_kept_checkpoint(tmp_path):
    # a relative bad_ckpt is read in the sampled run's checkpoints folder; grids before it is kept sample D alone
    from sgm_nb.inference import sample_grid
    from sgm_nb.training import train

    cfg = tiny_config(max_steps=4, every=2)
    OmegaConf.update(
        cfg,
        "model.params.sampler_config.params.guider_config",
        {"target": "sgm_nb.guiders.AutoGuidance", "params": {"scale": 2.0, "bad_ckpt": KEPT_2}},
        merge=False,
    )
    cfg.lightning.callbacks.metrics_over_trainsteps_checkpoint = {"params": {"every_n_train_steps": 2}}
    cfg.lightning.callbacks.image_logger.params.update(batch_frequency=1, increase_log_steps=False)
    res = train(cfg, logdir=tmp_path / "runs", name="ag", progress=False, verbose=False)
    run = res.checkpoint.parent.parent
    grids = sorted(p.name for p in (run / "images").glob("samples_*"))
    assert grids == [f"samples_gs-{s:06d}.png" for s in (1, 2, 3, 4)]
    for ckpt in (res.checkpoint, run / "checkpoints" / KEPT_2):
        g = AutoGuidance(2.0, bad_ckpt=KEPT_2)
        assert resolve_bad_ckpt(g, ckpt) == (run / "checkpoints" / KEPT_2).absolute()
        out = sample_grid(ckpt, tmp_path / f"{ckpt.stem}.png", n=2, batch_size=2, steps=2)
        assert out.stat().st_size > 0
    moved = tmp_path / "moved"
    run.rename(moved)  # the config names the kept step, not a path: the run still samples where it now is
    assert sample_grid(moved / "checkpoints" / "last.ckpt", tmp_path / "m.png", n=2, batch_size=2).stat().st_size > 0
    lone = tmp_path / "lone" / "last.ckpt"
    lone.parent.mkdir()
    lone.write_bytes((moved / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"lone/trainstep_checkpoints/step=000002\.ckpt"):
        sample_grid(lone, tmp_path / "l.png", n=2, batch_size=2)


# --- post-hoc EMA --------------------------------------------------------------------------------------------------


def test_sigma_rel_and_gamma_are_inverse_and_match_the_profiles_std():
    for s in (0.01, 0.05, 0.1, 0.2, 0.28):
        g = sigma_rel_to_gamma(s)
        assert abs(gamma_to_sigma_rel(g) - s) < 1e-12
        u = torch.rand(400_000, generator=torch.Generator().manual_seed(0), dtype=f64) ** (1 / (g + 1))  # ~ u^g
        assert abs(u.std().item() - s) < 3e-3 * max(s, 0.05) / 0.05
    assert abs(sigma_rel_to_gamma(0.05) - 16.97) < 0.01 and abs(sigma_rel_to_gamma(0.10) - 6.94) < 0.01


def test_power_ema_weights_telescope():
    holder = nn.Module()
    holder.p = nn.Parameter(torch.zeros(3, dtype=f64))
    thetas = torch.randn(51, 3, dtype=f64, generator=torch.Generator().manual_seed(0))
    ema, g = PowerEma(holder, gamma=4.0), 4.0
    for th in thetas[1:]:
        with torch.no_grad():
            holder.p.copy_(th)
        ema(holder)
    tau = torch.arange(1, 51, dtype=f64)
    w = (tau ** (g + 1) - (tau - 1) ** (g + 1)) / 50 ** (g + 1)
    torch.testing.assert_close(ema.p, (w[:, None] * thetas[1:]).sum(0), rtol=0, atol=1e-12)
    assert set(ema.state_dict()) == {"decay", "num_updates", "gamma", "p"}


def test_power_profile_dot_matches_quadrature():
    u = torch.linspace(0, 5, 500_001, dtype=f64)
    prof = lambda t, g: torch.where(u <= t, (g + 1) * u**g / t ** (g + 1), 0.0)
    for ta, ga, tb, gb in ((5.0, 3.0, 2.0, 9.0), (3.0, 0.5, 3.0, 0.5)):
        ref = torch.trapezoid(prof(ta, ga) * prof(tb, gb), u).item()
        assert abs(power_profile_dot(ta, ga, tb, gb).item() - ref) < 1e-3 * ref


def _walk_and_track(model, step, steps, every=20, direct_sigma_rels=(0.03, 0.07, 0.15)):
    post = PostHocEma(model, (0.05, 0.10), every=every)
    direct = {s: PowerEma(model, sigma_rel=s) for s in direct_sigma_rels}
    for i in range(steps):
        step(i)
        post(model)
        for e in direct.values():
            e(model)
    return post, direct


def _rel_errors(post, direct, model, sigma_rel):
    rebuilt, e = post.reconstruct(sigma_rel), direct[sigma_rel]
    out = {}
    for name, p in model.named_parameters():
        d = e.get_buffer(e.m_name2s_name[name])
        out[name] = ((rebuilt[name] - d).norm() / (d - p.detach()).norm()).item()
    return out


def test_posthoc_reconstruction_matches_a_directly_tracked_ema_on_a_random_walk():
    holder = nn.Module()
    holder.p = nn.Parameter(torch.zeros(40, dtype=f64))
    walk = torch.randn(400, 40, dtype=f64, generator=torch.Generator().manual_seed(3)).cumsum(0)

    def step(i):
        with torch.no_grad():
            holder.p.copy_(walk[i])

    post, direct = _walk_and_track(holder, step, 400)
    assert [s["t"] for s in post.snapshots[-2:]] == [400, 400] and len(post.snapshots) == 40
    errs = {s: _rel_errors(post, direct, holder, s)["p"] for s in direct}
    assert max(errs.values()) < 0.02, errs
    assert _rel_errors(post, {0.07: direct[0.15]}, holder, 0.07)["p"] > 0.1  # the test can tell lengths apart


def test_posthoc_reconstruction_matches_a_directly_tracked_ema_of_a_trained_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.SiLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    X = torch.randn(256, 8)
    Y = X[:, :1] * X[:, 1:2]

    def step(i):
        opt.zero_grad()
        (net(X) - Y).pow(2).mean().backward()
        opt.step()

    post, direct = _walk_and_track(net, step, 300, direct_sigma_rels=(0.07, 0.15))
    errs = _rel_errors(post, direct, net, 0.07)
    assert max(errs.values()) < 0.02, errs
    assert all(v.dtype == torch.float32 for v in post.reconstruct(0.07).values())
    assert max(_rel_errors(post, {0.07: direct[0.15]}, net, 0.07).values()) > 0.1


def test_posthoc_coefficients_reproduce_a_tracked_profile_exactly():
    # the target is one of the snapshots: least squares must pick it alone
    ts, gs = [100.0, 100.0, 200.0, 200.0], [16.97, 6.94, 16.97, 6.94]
    x = posthoc_ema_coefficients(ts, gs, 200.0, 6.94)
    torch.testing.assert_close(x, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=f64), rtol=0, atol=1e-6)


def test_lit_ema_state_dict_keys_and_update_are_sgms():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    ema = LitEma(net, decay=0.5)
    assert list(ema.state_dict()) == ["decay", "num_updates", "0weight", "0bias", "1weight", "1bias"]
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema(net)
    d = min(0.5, 2 / 11)  # the warm-up at n = 1
    for name, p in net.named_parameters():
        s = name.replace(".", "")
        torch.testing.assert_close(ema.get_buffer(s), d * before[s] + (1 - d) * p.detach(), rtol=0, atol=1e-6)
    assert math.isclose(ema.current_decay().item(), 2 / 11, rel_tol=1e-6)


# --- post-hoc EMA in a run ------------------------------------------------------------------------------------------


def _posthoc_config(steps: int):
    cfg = tiny_config(steps, every=2)
    OmegaConf.update(cfg, "model.params.posthoc_ema_config", {"sigma_rels": [0.05, 0.10], "every": 2})
    return cfg


def test_a_run_keeps_posthoc_snapshots_that_resume_continues(tmp_path):
    from sgm_nb.checkpoint import load_checkpoint, load_posthoc_snapshots
    from sgm_nb.training import train

    full = train(_posthoc_config(6), run_dir=tmp_path / "full", progress=False, verbose=False)
    train(_posthoc_config(4), run_dir=tmp_path / "res", progress=False, verbose=False)
    train(OmegaConf.create({"lightning": {"trainer": {"max_steps": 6}}}), resume=tmp_path / "res", verbose=False)
    names = lambda run: sorted(p.name for p in (run / "posthoc_ema").iterdir())
    assert names(full.run_dir) == names(tmp_path / "res") and len(names(full.run_dir)) == 2 * 3  # t = 2, 4, 6
    a, b = (load_posthoc_snapshots(r / "posthoc_ema") for r in (full.run_dir, tmp_path / "res"))
    assert [(s["t"], s["gamma"]) for s in a] == [(s["t"], s["gamma"]) for s in b]
    assert all(torch.equal(sa["state"][k], sb["state"][k]) for sa, sb in zip(a, b) for k in sa["state"])
    sd = load_checkpoint(full.checkpoint)["state_dict"]
    assert any(k.startswith("posthoc_emas.") for k in sd)  # the power EMAs themselves: what resume continues


def test_posthoc_checkpoint_samples_the_rebuilt_ema(tmp_path):
    from sgm_nb.checkpoint import load_checkpoint, load_posthoc_snapshots, posthoc_ema_checkpoint
    from sgm_nb.inference import sample_grid
    from sgm_nb.training import train

    res = train(_posthoc_config(6), run_dir=tmp_path / "run", progress=False, verbose=False)
    out = posthoc_ema_checkpoint(res.checkpoint, 0.07, tmp_path / "run" / "checkpoints" / "ph.ckpt")
    ph = PostHocEma(nn.Module(), sigma_rels=())
    ph.snapshots = load_posthoc_snapshots(tmp_path / "run" / "posthoc_ema")
    want, sd = ph.reconstruct(0.07, t=6), load_checkpoint(out)["state_dict"]
    assert want and all(torch.equal(sd[f"model_ema.{k.replace('.', '')}"], v) for k, v in want.items())
    before = load_checkpoint(res.checkpoint)["state_dict"]
    assert any(not torch.equal(sd[k], before[k]) for k in sd if k.startswith("model_ema.") and k in before)
    assert sample_grid(out, tmp_path / "g.png", n=2, batch_size=2).stat().st_size > 0
    with pytest.raises(ValueError, match="not in a run's checkpoints folder"):
        loose = tmp_path / "loose.ckpt"
        loose.write_bytes(res.checkpoint.read_bytes())
        posthoc_ema_checkpoint(loose, 0.07, tmp_path / "x.ckpt")
