"""What loading trusts and refuses, and what a run never loses: config targets, strict loading, the EMA fallback,
sgm's c_noise, resuming nested and loose checkpoints, broken files, full disks, config mistakes named by key."""

import csv
import errno
import math
import os
import subprocess
import sys
import threading

import pytest
import torch
from helpers import cli_inproc, one_line_error, tiny_config
from omegaconf import OmegaConf

from sgm_nb.checkpoint import (
    atomic_write,
    load_checkpoint,
    read_metrics,
    remove_stale_tmp,
    run_dir_for,
    save_checkpoint,
)
from sgm_nb.config import build_engine, find_config, load_config
from sgm_nb.training import train


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A tiny run of 2 steps, trained in this process, and its folder."
    d = tmp_path_factory.mktemp("trust")
    OmegaConf.save(tiny_config(2, every=2), d / "tiny.yaml")
    r = train(tiny_config(2, every=2), run_dir=d / "runs" / "t", progress=False, verbose=False)
    return d, r.run_dir


def _ckpt(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


# -- Security: a config from any file names only the classes a config may name


def _put(cfg: dict, dotted: str, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        cfg = cfg[int(k)] if isinstance(cfg, list) else cfg[k]
    cfg[keys[-1]] = value


PAYLOADS = [
    ("model.params.network_config", {"target": "os.system", "params": {"command": "touch {marker}"}}),
    (
        "model.params.denoiser_config.params.scaling_config",
        {"target": "builtins.open", "params": {"file": "{marker}", "mode": "w"}},
    ),
    (
        "model.params.conditioner_config.params.emb_models.0.target",
        "os.system",
    ),
    (
        "model.params.sampler_config.params.guider_config",
        {"target": "builtins.open", "params": {"file": "{marker}", "mode": "w"}},
    ),
    ("model.params.network_wrapper", "antigravity.fly"),
    ("model.params.optimizer_config", {"target": "builtins.open", "params": {"file": "{marker}", "mode": "w"}}),
    ("data", {"target": "builtins.open", "params": {"file": "{marker}", "mode": "w"}}),
]


def _evil_checkpoint(run_dir, dest, place, payload, marker):
    ck = _ckpt(run_dir)
    text = OmegaConf.to_yaml(OmegaConf.create({"p": payload})).replace("{marker}", str(marker))
    _put(ck["config"], place, OmegaConf.to_container(OmegaConf.create(text))["p"])
    ck["config"]["allowed_targets"] = ["os.system", "builtins.open", "antigravity.fly"]  # a file never widens the list
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ck, dest)
    return dest


@pytest.mark.parametrize("place,payload", PAYLOADS, ids=[p for p, _ in PAYLOADS])
def test_a_weights_only_checkpoint_cannot_run_its_config(run, place, payload, tmp_path, capsys, monkeypatch):
    d, run_dir = run
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(run_dir, tmp_path / "evil" / "checkpoints" / "last.ckpt", place, payload, marker)
    (tmp_path / "evil" / "config.yaml").write_text("{}")
    target = payload if isinstance(payload, str) else payload["target"]
    if not place.startswith("data"):
        r = cli_inproc(
            "sample", "--ckpt", evil, "--out", tmp_path / "g.png", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
        )
        one_line_error(r, "sample", "is not a class a config may name", repr(target))
    r = cli_inproc("train", "--resume", evil, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "train", "is not a class a config may name", repr(target))
    assert not marker.exists() and not (tmp_path / "g.png").exists()
    assert "antigravity" not in sys.modules


def test_a_users_yaml_may_allow_more_classes_and_a_checkpoint_may_not(run, tmp_path):
    d, run_dir = run
    cfg = tiny_config(2)
    cfg.model.params.network_config = {"target": "torch.nn.Identity"}
    with pytest.raises(ValueError, match="model.params.network_config.target 'torch.nn.Identity' is not a class"):
        build_engine(cfg)
    cfg.allowed_targets = ["torch.nn.Identity"]
    assert type(build_engine(cfg).model.diffusion_model).__name__ == "Identity"
    with pytest.raises(ValueError, match="allowed_targets must be a list"):
        load_config([{"model": {}, "allowed_targets": "torch.nn.Identity"}])


def test_a_checkpoint_config_with_an_interpolation_is_refused(run, tmp_path):
    from sgm_nb.inference import load_engine

    d, run_dir = run
    ck = _ckpt(run_dir)
    ck["config"]["model"]["params"]["input_key"] = "${oc.env:HOME}"
    save_checkpoint(ck, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match=r"config.model.params.input_key is an interpolation"):
        load_engine(tmp_path / "x.ckpt")


def test_a_run_folders_own_config_cannot_allow_classes(run, tmp_path):
    "sgm's checkpoints carry no config; the one found in their run folder is trusted no more than a checkpoint."
    from sgm_nb.inference import load_engine

    d, run_dir = run
    sgm = tmp_path / "sgm_run"
    cfg = OmegaConf.to_container(tiny_config(2))
    cfg["model"]["params"]["network_config"] = {"target": "torch.nn.Identity"}
    cfg["allowed_targets"] = ["torch.nn.Identity"]
    (sgm / "configs").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), sgm / "configs" / "x-project.yaml")
    save_checkpoint({"state_dict": _ckpt(run_dir)["state_dict"]}, sgm / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="'torch.nn.Identity' is not a class a config may name"):
        load_engine(sgm / "checkpoints" / "last.ckpt")


# -- Loading: strict by default, EMA parts fall back to the checkpoint's weights, sgm's c_noise on request


def _sgm_style(run_dir, dest, drop=(), add=None):
    "The run's weights as sgm writes them: a state_dict without a config, less the keys that start with `drop`."
    sd = {k: v for k, v in _ckpt(run_dir)["state_dict"].items() if not k.startswith(tuple(drop))}
    sd.update(add or {})
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"state_dict": sd, "global_step": 2}, dest)
    return dest


UNCONDITIONAL = [
    "model.params.conditioner_config.params.emb_models=[]",
    "model.params.network_config.params.num_classes=null",
    "model.params.network_config.params.adm_in_channels=null",
]


@pytest.mark.parametrize(
    "drop,add,overrides,needle",
    [
        (
            ["conditioner.embedders.0.embedding"],
            None,
            [],
            "missing keys (first: 'conditioner.embedders.0.embedding.weight')",
        ),
        ([], {"extra.weight": torch.ones(2)}, [], "unexpected keys (first: 'extra.weight')"),
        ([], None, UNCONDITIONAL, "unexpected keys"),
    ],
    ids=["missing-class-embedding", "unexpected-key", "conditional-under-unconditional"],
)
def test_sampling_loads_strictly(run, tmp_path, drop, add, overrides, needle, capsys, monkeypatch):
    d, run_dir = run
    ck = _sgm_style(run_dir, tmp_path / "c.ckpt", drop, add)
    args = ["sample", "--ckpt", ck, "--base", d / "tiny.yaml", *overrides, "--n", 2, "--steps", 1, "--out"]
    r = cli_inproc(*args, tmp_path / "g.png", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "sample", needle, "--non-strict")
    assert not (tmp_path / "g.png").exists()
    r = cli_inproc(*args, tmp_path / "g.png", "--non-strict", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert r.returncode == 0 and (tmp_path / "g.png").exists(), r.stderr
    assert "note: checkpoint does not fit the config" in r.stderr and needle in r.stderr


def test_evaluate_loads_strictly_too(run, tmp_path, capsys, monkeypatch):
    d, run_dir = run
    ck = _sgm_style(run_dir, tmp_path / "c.ckpt", add={"extra.weight": torch.ones(2)})
    r = cli_inproc(
        "evaluate",
        "--ckpt",
        ck,
        "--base",
        d / "tiny.yaml",
        "--n",
        2,
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    one_line_error(r, "evaluate", "'extra.weight'")


def test_an_sgm_ema_checkpoint_samples_with_its_own_class_embedding(run, tmp_path, capsys):
    "sgm writes model_ema.* but no conditioner_ema.*: the EMA of the embedding starts from the loaded embedding."
    from sgm_nb.inference import load_engine

    d, run_dir = run
    sd = _ckpt(run_dir)["state_dict"]
    ck = _sgm_style(run_dir, tmp_path / "sgm.ckpt", drop=["conditioner_ema."])
    engine, _, _ = load_engine(ck, [str(d / "tiny.yaml")])
    emb = sd["conditioner.embedders.0.embedding.weight"]
    assert torch.equal(engine.conditioner_ema.embedders0embeddingweight, emb)
    with engine.ema_scope():
        assert torch.equal(engine.conditioner.embedders[0].embedding.weight, emb)
    assert "no conditioner_ema.*" in capsys.readouterr().err
    # with the network's EMA missing too, both fall back, and the network's shadows are its loaded weights
    ck = _sgm_style(run_dir, tmp_path / "noema.ckpt", drop=["conditioner_ema.", "model_ema."])
    engine, _, _ = load_engine(ck, [str(d / "tiny.yaml")])
    w = "diffusion_model.out.2.weight"
    assert torch.equal(getattr(engine.model_ema, w.replace(".", "")), sd[f"model.{w}"])
    assert "no model_ema.*" in capsys.readouterr().err


def test_an_ema_checkpoint_under_a_config_without_ema_samples_from_the_ema(run, tmp_path):
    from sgm_nb.inference import load_engine

    d, run_dir = run
    sd = _ckpt(run_dir)["state_dict"]
    ck = _sgm_style(run_dir, tmp_path / "sgm.ckpt")
    engine, _, _ = load_engine(ck, [str(d / "tiny.yaml")], ["model.params.use_ema=false"])
    assert torch.equal(
        engine.conditioner.embedders[0].embedding.weight, sd["conditioner_ema.embedders0embeddingweight"]
    )
    w = "diffusion_model.out.2.weight"
    assert torch.equal(engine.model.get_parameter(w), sd[f"model_ema.{w.replace('.', '')}"])


def test_sgm_c_noise_is_an_explicit_option_and_said(tmp_path, capsys):
    from sgm_nb.denoiser import DiscreteDenoiser
    from sgm_nb.inference import load_engine

    cfg = {"target": "sgm_nb.scalings.EDMScaling"}
    ddpm = {"target": "sgm_nb.sigma_sampling.LegacyDDPMDiscretization"}
    seen = {}
    net = lambda x, c_noise, cond: seen.update(c=c_noise) or torch.zeros_like(x)
    sgm = DiscreteDenoiser(cfg, 1000, ddpm, quantize_c_noise="sgm")
    ours = DiscreteDenoiser(cfg, 1000, ddpm)
    sigma = sgm.sigmas
    sgm(net, torch.zeros(1000, 1, 1, 1), sigma, {})
    c_noise = 0.25 * sigma.log()  # sgm: sigma_to_idx(c_noise), as if c_noise were a sigma
    assert torch.equal(seen["c"], sgm.sigma_to_idx(c_noise)) and (seen["c"] == 0).sum() > 300
    ours(net, torch.zeros(1000, 1, 1, 1), sigma, {})
    assert torch.equal(seen["c"], torch.arange(1000))
    with pytest.raises(ValueError, match="quantize_c_noise must be true, false or 'sgm', got 'sgn'"):
        DiscreteDenoiser(cfg, 1000, ddpm, quantize_c_noise="sgn")
    # an sgm-format checkpoint of mnist_cond_discrete_eps: sampling says which index is fed, and how to get sgm's
    base = find_config("mnist_cond_discrete_eps")
    e = build_engine(load_config([base]))
    save_checkpoint({"state_dict": e.state_dict()}, tmp_path / "d.ckpt")
    load_engine(tmp_path / "d.ckpt", [base])
    assert "feeds the network the index of sigma (quantize_c_noise=sgm feeds sgm's" in capsys.readouterr().err
    key = "model.params.denoiser_config.params.quantize_c_noise=sgm"
    engine, _, _ = load_engine(tmp_path / "d.ckpt", [base], [key])
    assert engine.denoiser.quantize_c_noise == "sgm" and "sgm's index" in capsys.readouterr().err
    eps = "model.params.denoiser_config.params.scaling_config.target=sgm_nb.scalings.EpsScaling"
    load_engine(tmp_path / "d.ckpt", [base], [eps])
    assert "DiscreteDenoiser" not in capsys.readouterr().err  # c_noise = sigma: the same index, nothing to say


# -- Resume: a nested checkpoint resumes its run, one behind or outside a run continues in a new folder


def test_resume_from_a_nested_checkpoint_continues_its_run(tmp_path, capsys):
    cfg = tiny_config(4, every=2)
    cfg.lightning.callbacks.metrics_over_trainsteps_checkpoint = {"params": {"every_n_train_steps": 2}}
    r = train(cfg, logdir=tmp_path / "runs", name="n", progress=False, verbose=False)
    kept = r.run_dir / "checkpoints" / "trainstep_checkpoints"
    assert sorted(p.name for p in kept.iterdir()) == ["step=000002.ckpt", "step=000004.ckpt"]
    more = OmegaConf.create({"lightning": {"trainer": {"max_steps": 5}}})
    r2 = train(more, resume=kept / "step=000004.ckpt", logdir=tmp_path / "runs", progress=False, verbose=False)
    assert r2.run_dir == r.run_dir.absolute() and r2.step == 5
    assert list((tmp_path / "runs").iterdir()) == [r.run_dir] and not (r.run_dir / "checkpoints" / "images").exists()
    # a kept checkpoint behind last.ckpt: a new run folder, the old run untouched
    r3 = train(more, resume=kept / "step=000002.ckpt", logdir=tmp_path / "runs", progress=False, verbose=False)
    assert r3.run_dir.parent == tmp_path / "runs" and r3.run_dir != r2.run_dir and r3.step == 5
    assert _ckpt(r.run_dir)["global_step"] == 5 and list(read_metrics(r3.run_dir / "metrics.csv")["step"]) == [3, 4, 5]
    assert "is behind" in capsys.readouterr().err


def test_resume_from_a_loose_checkpoint_starts_a_run_folder(run, tmp_path, capsys, monkeypatch):
    d, run_dir = run
    (tmp_path / "x").mkdir()
    save_checkpoint(_ckpt(run_dir), tmp_path / "x" / "good.ckpt")
    monkeypatch.chdir(tmp_path)
    more = OmegaConf.create({"lightning": {"trainer": {"max_steps": 3}}})
    r = train(more, resume="x/good.ckpt", logdir="runs", progress=False, verbose=False)
    assert r.run_dir.resolve().parent == (tmp_path / "runs").resolve() and r.step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "x"]
    assert "lies outside a run folder" in capsys.readouterr().err


def test_resume_keeps_its_seed_and_names_changed_settings(run, tmp_path, capsys):
    d, run_dir = run
    save_checkpoint(_ckpt(run_dir), tmp_path / "r" / "checkpoints" / "last.ckpt")
    (tmp_path / "r" / "config.yaml").write_text("{}")
    more = OmegaConf.create({"lightning": {"trainer": {"max_steps": 3}}, "data": {"params": {"batch_size": 4}}})
    with pytest.raises(ValueError, match="seed 5 is not the seed 23 of the run being resumed"):
        train(more, resume=tmp_path / "r", seed=5, progress=False, verbose=False)
    r = train(more, resume=tmp_path / "r", seed=23, progress=False, verbose=False)
    err = capsys.readouterr().err
    assert r.step == 3 and "data.params.batch_size 8 -> 4" in err and "lightning.trainer.max_steps 2 -> 3" in err


def test_resume_trims_metrics_past_the_checkpoint(tmp_path):
    "A run killed after writing rows past its checkpoint: the resumed run drops them and writes them again."
    full = train(tiny_config(4, every=2), run_dir=tmp_path / "full", progress=False, verbose=False)
    cut = train(tiny_config(2, every=2), run_dir=tmp_path / "cut", progress=False, verbose=False)
    with open(cut.run_dir / "metrics.csv", "a") as f:
        f.write("3,0,9.0,0.001,1,0.1,1,0,1,1\n4,0,9.0,0.001,1,0.1,1,0,1,1\n5,0,9")  # two rows and a half one
    more = OmegaConf.create({"lightning": {"trainer": {"max_steps": 4}}})
    train(more, resume=cut.run_dir, progress=False, verbose=False)
    a, b = read_metrics(full.run_dir / "metrics.csv"), read_metrics(cut.run_dir / "metrics.csv")
    assert list(b["step"]) == [1, 2, 3, 4] and list(a["loss"]) == list(b["loss"])


# -- Broken and unreadable files


def test_empty_and_truncated_checkpoints_are_named(run, tmp_path, capsys, monkeypatch):
    d, run_dir = run
    data = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.ckpt': the file is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.ckpt")
    for n in (10, len(data) // 2, len(data) - 100):
        (tmp_path / "cut.ckpt").write_bytes(data[:n])
        with pytest.raises(ValueError, match=rf"cut.ckpt' \({n} bytes\): cut short or not a torch file"):
            load_checkpoint(tmp_path / "cut.ckpt")
    r = cli_inproc(
        "sample", "--ckpt", "empty.ckpt", "--out", "g.png", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    one_line_error(r, "sample", "empty.ckpt", "is empty")
    r = cli_inproc("train", "--resume", "cut.ckpt", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "train", "cut.ckpt", "cut short")


def test_a_pickled_function_is_refused_by_name(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="refusing checkpoint .* it asks to import posix.system, and loading never"):
        load_checkpoint(tmp_path / "evil.ckpt")


class _FullDisk:
    "A file object that accepts `room` bytes, then fails as a full disk does."

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, b):
        self.room -= len(b)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def _fill_disk(monkeypatch, room=4096):
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **kw: _FullDisk(real(fd, *a, **kw), room))


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    p = save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, tmp_path / "last.ckpt")
    before = p.read_bytes()
    _fill_disk(monkeypatch)
    with pytest.raises(OSError, match=r"cannot write '.*last.ckpt': No space left on device") as e:
        save_checkpoint({"state_dict": {"w": torch.randn(100_000)}}, p)
    assert e.value.errno == errno.ENOSPC and "enforce fail" not in str(e.value)
    assert p.read_bytes() == before and sorted(q.name for q in tmp_path.iterdir()) == ["last.ckpt"]
    with pytest.raises(OSError, match=r"cannot write '.*notes.txt': No space left on device"):
        with atomic_write(tmp_path / "notes.txt", "w") as f:
            f.write("x" * 10_000)
            f.flush()


def test_a_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    OmegaConf.save(tiny_config(2, every=2), tmp_path / "tiny.yaml")
    _fill_disk(monkeypatch, room=20_000)  # config.yaml fits, the checkpoint does not
    r = cli_inproc(
        "train", "--base", "tiny.yaml", "--logdir", "runs", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    one_line_error(r, "train", "last.ckpt", "No space left on device")
    assert list((tmp_path / "runs").iterdir()) == []  # no checkpoint was written: the new run folder is gone


def test_a_metrics_row_the_disk_refuses_names_the_file(tmp_path):
    from sgm_nb.checkpoint import MetricsCSV

    m = MetricsCSV(tmp_path / "metrics.csv", ["step"])
    m.f = _FullDisk(m.f, 0)
    m.w = csv.DictWriter(m.f, fieldnames=["step"])
    with pytest.raises(OSError, match=r"cannot write '.*metrics.csv': No space left on device"):
        m.write({"step": 1})


# -- Atomic writes: synced, unique temporary names that say whose they are; stale ones cleaned up


def test_atomic_write_syncs_and_uses_unique_temporary_names(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    p = tmp_path / "a.txt"
    with atomic_write(p, "w") as f1, atomic_write(p, "w") as f2:
        tmps = sorted(q.name for q in tmp_path.glob(".a.txt.*.tmp"))
        f1.write("one")
        f2.write("two")
    assert len(tmps) == 2 and all(f"-{os.getpid()}." in t for t in tmps)
    assert p.read_text() == "one" and len(synced) == 4  # the file and its folder, for each write
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.txt"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_files_go_and_live_ones_stay(run, tmp_path):
    from sgm_nb.checkpoint import _host

    d, run_dir = run
    save_checkpoint(_ckpt(run_dir), tmp_path / "runs" / "old" / "checkpoints" / "last.ckpt")
    (tmp_path / "runs" / "old" / "config.yaml").write_text("{}")
    ckdir = tmp_path / "runs" / "old" / "checkpoints"
    dead = ckdir / f".last.ckpt.{_host()}-{_dead_pid()}.abc123.tmp"
    nested = ckdir / "trainstep_checkpoints" / f".step=000002.ckpt.{_host()}-{_dead_pid()}.x_y.tmp"
    live = ckdir / f".last.ckpt.{_host()}-{os.getpid()}.def456.tmp"
    foreign = ckdir / f".last.ckpt.otherhost-{_dead_pid()}.ghi789.tmp"
    for f in (dead, nested, live, foreign):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half a checkpoint")
    assert remove_stale_tmp(tmp_path / "nothing") == []
    # a new run in the same log folder cleans up beside it
    train(tiny_config(1, every=1), logdir=tmp_path / "runs", name="new", progress=False, verbose=False)
    assert not dead.exists() and not nested.exists() and live.exists() and foreign.exists()
    dead.write_bytes(b"again")
    train(
        OmegaConf.create({"lightning": {"trainer": {"max_steps": 3}}}),
        resume=ckdir.parent,
        progress=False,
        verbose=False,
    )
    assert not dead.exists() and live.exists()  # and resuming the run itself cleans it


def test_two_runs_started_at_once_get_two_folders(tmp_path):
    got = []
    threads = [threading.Thread(target=lambda: got.append(run_dir_for("cfg", tmp_path, "same"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)


# -- Configs: every mistake named by its key


@pytest.mark.parametrize(
    "override,needle",
    [
        ("lightning.callbacks.image_loger.params.batch_frequency=3", "unknown key lightning.callbacks.image_loger"),
        (
            "lightning.callbacks.image_logger.params.batch_frequncy=3",
            "unknown key lightning.callbacks.image_logger.params.batch_frequncy",
        ),
        (
            "lightning.callbacks.image_logger.params.log_images_kwargs.n_row=3",
            "unknown key lightning.callbacks.image_logger.params.log_images_kwargs.n_row",
        ),
        (
            "lightning.modelcheckpoint.params.every_n_train_step=3",
            "unknown key lightning.modelcheckpoint.params.every_n_train_step",
        ),
        (
            "lightning.callbacks.metrics_over_trainsteps_checkpoint.params.every_n_train_step=3",
            "unknown key lightning.callbacks.metrics_over_trainsteps_checkpoint.params.every_n_train_step",
        ),
        ("lightning.trainer.max_steps=three", "lightning.trainer.max_steps must be an integer >= -1, got 'three'"),
        (
            "lightning.callbacks.image_logger.params.disabled=maybe",
            "lightning.callbacks.image_logger.params.disabled must be true or false",
        ),
        (
            "model.params.network_config.params.channel_mult=two",
            "model.params.network_config.params.channel_mult must be",
        ),
        (
            "model.params.network_config.params.num_res_blocks=two",
            "params.num_res_blocks must be int | list[int], got 'two'",
        ),
        ("model.params.use_ema=3", "model.params.use_ema must be bool, got 3"),
        ("model.param.use_ema=true", "unknown key model.param"),
        ("model.params.conditioner_config.params.emb_models.5.ucg_rate=0.1", "emb_models.5.ucg_rate=0.1"),
        ("data.params.bach_size=4", "data.params.bach_size: MNIST5kLoader has no parameter 'bach_size'"),
    ],
)
def test_config_mistakes_are_named_by_key(tmp_path, override, needle, capsys, monkeypatch):
    OmegaConf.save(tiny_config(2), tmp_path / "tiny.yaml")
    r = cli_inproc(
        "train",
        "--base",
        "tiny.yaml",
        override,
        "--logdir",
        "runs",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    one_line_error(r, "train", needle)
    assert not (tmp_path / "runs").exists()


def test_a_list_element_override_applies(tmp_path):
    emb = "model.params.conditioner_config.params.emb_models"
    cfg = load_config([find_config("mnist_tiny")], [f"{emb}.0.ucg_rate=0.1", "lightning.trainer.max_steps=9"])
    assert cfg.model.params.conditioner_config.params.emb_models[0].ucg_rate == 0.1
    assert cfg.lightning.trainer.max_steps == 9


def test_yaml_syntax_errors_say_where(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  params:\n    a: [1, 2\n  b: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml': line 4, column 4: did not find expected ',' or ']'"):
        load_config([tmp_path / "bad.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of sections"):
        load_config([tmp_path / "list.yaml"])


def test_a_folder_is_not_a_config(tmp_path, capsys, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "mnist_tiny").mkdir()  # named like a packaged config: it does not hide it
    monkeypatch.chdir(tmp_path)
    assert find_config("mnist_tiny").endswith(os.path.join("sgm_nb", "configs", "mnist_tiny.yaml"))
    r = cli_inproc("train", "--base", "configs", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "train", "'configs' is a folder, not a YAML file")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_config([tmp_path / "configs"])


def test_an_override_after_an_option(tmp_path, capsys, monkeypatch):
    "Overrides in two places, one before an option and one after: both are read as overrides."
    OmegaConf.save(tiny_config(2), tmp_path / "tiny.yaml")
    args = ["train", "lightning.trainer.max_steps=1", "--base", "tiny.yaml", "--name", "t", "modle.x=1"]
    r = cli_inproc(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "train", "unknown config section 'modle'")  # read as an override, not refused by argparse
    with pytest.raises(SystemExit) as e:  # anything else there is still a malformed command line
        cli_inproc(*args[:-1], "stray", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert e.value.code == 2 and capsys.readouterr().err == "sgm-nb: error: unrecognized arguments: stray\n"


def test_a_failure_in_the_first_step_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    OmegaConf.save(tiny_config(2), tmp_path / "tiny.yaml")
    bad = "model.params.network_config.params.adm_in_channels=64"  # builds, then fails in the first forward
    r = cli_inproc(
        "train", "--base", "tiny.yaml", bad, "--logdir", "runs", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    one_line_error(r, "train", "mat1 and mat2 shapes cannot be multiplied")
    assert list((tmp_path / "runs").iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")  # a folder that was there is never removed
    with pytest.raises(RuntimeError):
        train(load_config([tmp_path / "tiny.yaml"], [bad]), run_dir=tmp_path / "mine", progress=False, verbose=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# -- Outputs are checked before any sampling


@pytest.mark.parametrize(
    "out,needle",
    [
        ("file.txt/grid.png", "folder 'file.txt' is not a folder"),
        ("missing/grid.png", "folder 'missing' does not exist"),
        ("grid.jpg", "--out must name a .png file"),
    ],
)
def test_out_is_checked_before_sampling(run, tmp_path, out, needle, capsys, monkeypatch):
    d, run_dir = run
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setattr("sgm_nb.inference.load_engine", lambda *a, **k: pytest.fail("sampling started"))
    r = cli_inproc(
        "sample",
        "--ckpt",
        run_dir / "checkpoints" / "last.ckpt",
        "--out",
        out,
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    one_line_error(r, "sample", needle)
    assert not (tmp_path / "missing").exists()


# -- Offline data


def _offline(monkeypatch):
    import urllib.error

    def refuse(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("sgm_nb.data.urllib.request.urlopen", refuse)


@pytest.mark.parametrize("loader,offline", [("MNISTLoader", "MNIST5kLoader"), ("CIFAR10Loader", "Shapes10Loader")])
def test_offline_sgm_loaders_say_how_to_train_offline(tmp_path, monkeypatch, loader, offline):
    import sgm_nb.data as data

    _offline(monkeypatch)
    with pytest.raises(data.DownloadError, match=rf"\(offline\?\).*to train offline, use data.target=.*{offline}"):
        getattr(data, loader)(batch_size=8, root=tmp_path)


def test_a_cached_file_with_a_wrong_md5_is_named_as_such(tmp_path, monkeypatch):
    from sgm_nb.data import DATASETS, DownloadError, download

    _offline(monkeypatch)
    res = DATASETS["mnist"]["files"]["train_labels"]
    (tmp_path / res.filename).write_bytes(b"an old, broken download")
    wrong = (
        rf"{res.filename} is there but is not the right file \(md5 [0-9a-f]+, expected {res.md5}\): replace or delete"
    )
    with pytest.raises(DownloadError, match=wrong):
        download(res, tmp_path)
    (tmp_path / res.filename).unlink()
    with pytest.raises(DownloadError, match="Copy the file into"):
        download(res, tmp_path)


def test_cifar10_cond_trains_offline_on_the_generated_colour_set(tmp_path):
    cfg = load_config(
        [find_config("cifar10_cond")],
        [
            "data.target=sgm_nb.data.Shapes10Loader",
            "data.params={batch_size: 4, n: 40}",
            "model.params.network_config.params.num_res_blocks=1",
            "model.params.network_config.params.channel_mult=[1]",
            "lightning.trainer.max_steps=1",
            "lightning.callbacks.image_logger.params.disabled=true",
        ],
    )
    r = train(cfg, run_dir=tmp_path / "run", progress=False, verbose=False)
    ck = load_checkpoint(r.checkpoint)
    assert r.step == 1 and ck["sample_shape"] == [3, 32, 32] and math.isfinite(r.last_loss)
