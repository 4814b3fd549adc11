"The Fabric loop: bit-exact resume, atomic checkpoints under SIGKILL, SIGTERM, non-finite losses, DDP, sgm YAML."

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tiny_config
from omegaconf import OmegaConf

from sgm_nb.checkpoint import load_checkpoint, read_metrics
from sgm_nb.config import build_engine, load_config
from sgm_nb.data import MNIST5kLoader
from sgm_nb.training import NonFiniteLossError, train

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _equal_state(a, b):
    assert sorted(a) == sorted(b)
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_resume_is_bit_identical(tmp_path):
    cfg = tiny_config(4, every=2, accumulate_grad_batches=2, gradient_clip_val=1.0)
    full = train(cfg, run_dir=tmp_path / "full", progress=False, verbose=False)
    train(
        tiny_config(2, every=2, accumulate_grad_batches=2, gradient_clip_val=1.0),
        run_dir=tmp_path / "res",
        progress=False,
        verbose=False,
    )
    res = train(
        OmegaConf.create({"lightning": {"trainer": {"max_steps": 4}}}),
        resume=tmp_path / "res",
        progress=False,
        verbose=False,
    )
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(res.checkpoint)
    assert (a["global_step"], b["global_step"]) == (4, 4)
    assert _equal_state(a["state_dict"], b["state_dict"]) == []
    assert any(k.startswith("model_ema.") for k in a["state_dict"])
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert _equal_state(sa, sb) == []
    ma, mb = read_metrics(full.run_dir / "metrics.csv"), read_metrics(res.run_dir / "metrics.csv")
    assert list(mb["step"]) == [1, 2, 3, 4] and list(ma["loss"]) == list(mb["loss"])


KILLER = textwrap.dedent("""
    import sys, torch
    from sgm_nb.checkpoint import save_checkpoint
    i = 0
    while True:
        i += 1
        save_checkpoint({"state_dict": {"w": torch.full((4_000_000,), float(i))}, "global_step": i}, sys.argv[1])
        print(i, flush=True)
""")


@pytest.mark.subprocess
def test_checkpoint_survives_sigkill_during_save(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.05, 0.13, 0.29):
        p = subprocess.Popen([PY, "-c", KILLER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
        p.stdout.readline()  # one save done: a checkpoint exists
        time.sleep(delay)  # then kill it, most likely inside a save
        p.send_signal(signal.SIGKILL)
        p.wait()
        ck = load_checkpoint(path)  # never truncated: it loads, and is one whole save
        w = ck["state_dict"]["w"]
        assert w.numel() == 4_000_000 and bool((w == ck["global_step"]).all())


SIGTERM_RUN = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    from helpers import tiny_config
    from sgm_nb.training import train
    torch.set_num_threads(1)
    r = train(tiny_config(100_000, every=100_000), run_dir=sys.argv[1], progress=False, verbose=False)
    print("STOPPED", r.stopped_by, r.step, flush=True)
""")


def _stop_a_run_with(sig, logdir, cmd, **kw):
    "Start `cmd` (a run under `logdir` that checkpoints only at its end), send `sig` after its second row."
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    t0 = time.time()
    rows = lambda: max((len(m.read_text().splitlines()) for m in Path(logdir).rglob("metrics.csv")), default=0)
    while time.time() - t0 < 120 and rows() < 3:
        time.sleep(0.2)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    return p, out, err


@pytest.mark.subprocess
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    "Before the first scheduled checkpoint (every 100,000 steps): the signal's checkpoint makes the run resumable."
    run = tmp_path / "run"
    p, out, err = _stop_a_run_with(sig, tmp_path, [PY, "-c", SIGTERM_RUN, str(run), str(Path(__file__).parent)])
    assert p.returncode == 0, err
    _, by, step = out.split()[-3:]
    ck = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert by == sig.name and ck["global_step"] == int(step) >= 2
    assert read_metrics(run / "metrics.csv")["step"][-1] == int(step)
    assert "Traceback" not in err


@pytest.mark.subprocess
def test_ctrl_c_on_the_command_line_saves_and_exits_130(tmp_path):
    OmegaConf.save(tiny_config(100_000, every=100_000), tmp_path / "tiny.yaml")
    cmd = [PY, "-m", "sgm_nb.cli", "train", "--base", "tiny.yaml", "--no-progress"]
    p, out, err = _stop_a_run_with(signal.SIGINT, tmp_path / "runs", cmd, cwd=tmp_path)
    assert p.returncode == 130 and "stopped by SIGINT at step" in out and "Traceback" not in err, err
    (folder,) = (tmp_path / "runs").iterdir()
    step = load_checkpoint(folder / "checkpoints" / "last.ckpt")["global_step"]
    r = subprocess.run(
        [PY, "-m", "sgm_nb.cli", "train", "--resume", folder, f"lightning.trainer.max_steps={step + 1}"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and f"done: step {step + 1}" in r.stdout, r.stderr


@pytest.mark.subprocess
def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    p = subprocess.Popen(
        [PY, "-m", "sgm_nb.cli", "train", "--base", "mnist_tiny"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # the interpreter is up; torch is still loading
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip() in ("sgm-nb: interrupted", "sgm-nb train: interrupted"), err
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_ctrl_c_that_an_import_swallowed_still_stops(tmp_path, monkeypatch, capsys):
    # Python prints and drops a KeyboardInterrupt raised inside importlib's lock callback; the run must still stop
    from sgm_nb import cli

    parse_args = cli.parse_args

    def parse_then_swallowed_ctrl_c(argv):
        args = parse_args(argv)
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass
        return args

    monkeypatch.setattr(cli, "parse_args", parse_then_swallowed_ctrl_c)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--base", "mnist_tiny"]) == 130
    assert capsys.readouterr().err.strip() == "sgm-nb train: interrupted"
    assert not (tmp_path / "runs").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class PoisonedLoader(MNIST5kLoader):
    "Images become NaN from micro-batch `at` on."

    def __init__(self, at, **kw):
        super().__init__(**kw)
        self.at = at

    def batch(self, m, *a, **kw):
        b = super().batch(m, *a, **kw)
        if m >= self.at:
            b["jpg"] = b["jpg"] * float("nan")
        return b


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(10, every=2)
    ld = PoisonedLoader(at=4, batch_size=8, limit=64, size=14)  # step 5 (micro-batch 4) goes NaN
    with pytest.raises(NonFiniteLossError, match="between steps 5 and 5; the last good checkpoint is .*last.ckpt"):
        train(cfg, run_dir=tmp_path / "run", loader=ld, progress=False, verbose=False)
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_a_loss_gone_nan_at_an_image_step_stops_before_the_grid(tmp_path):
    "The check runs before the grid: no grid is drawn, and no FLD computed, from diverged weights."
    cfg = tiny_config(10, every=4, log_every_n_steps=1000)
    cfg.lightning.callbacks.image_logger.params.update(batch_frequency=5, increase_log_steps=False)
    ld = PoisonedLoader(at=4, batch_size=8, limit=64, size=None)  # 28 px digits: grids are measured; step 5 is NaN
    with pytest.raises(NonFiniteLossError, match="between steps 5 and 5; the last good checkpoint is .*last.ckpt"):
        train(cfg, run_dir=tmp_path / "run", loader=ld, progress=False, verbose=False)
    assert list((tmp_path / "run" / "images").iterdir()) == []
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_max_time_checkpoints_and_stops(tmp_path):
    r = train(
        tiny_config(100_000, every=100_000, max_time={"seconds": 2}),
        run_dir=tmp_path / "run",
        progress=False,
        verbose=False,
    )
    assert r.stopped_by == "max_time" and 1 <= r.step < 100_000
    assert load_checkpoint(r.checkpoint)["global_step"] == r.step
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    assert m["step"][-1] == r.step and 2 <= m["elapsed_s"][-1] < 30


class RecordingWriter:
    "Stands in for TensorBoard's SummaryWriter (tensorboard is not a dependency): records what the loop logs."

    calls = []

    def __init__(self, log_dir):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        RecordingWriter.calls.append((tag, float(value), step))

    def close(self):
        RecordingWriter.calls.append(("closed", 0.0, 0))


def test_tensorboard_gets_every_metric_row_when_installed(tmp_path, monkeypatch):
    import types

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = RecordingWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    RecordingWriter.calls = []
    train(tiny_config(3, every=3), run_dir=tmp_path / "run", progress=False, verbose=False)
    losses = [(v, step) for tag, v, step in RecordingWriter.calls if tag == "train/loss"]
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    assert losses == list(zip(m["loss"].tolist(), m["step"].astype(int).tolist())) and len(losses) == 3
    assert RecordingWriter.calls[-1][0] == "closed"


DDP_RUN = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    from helpers import tiny_config
    from sgm_nb.training import train
    torch.set_num_threads(1)
    r = train(tiny_config(3, every=3), run_dir=sys.argv[1], progress=False, verbose=False)
    import torch.distributed as dist
    from pathlib import Path
    Path(sys.argv[1], f"rank{dist.get_rank()}.txt").write_text(f"{dist.get_rank()} {dist.get_world_size()} {r.step}")
""")


@pytest.mark.subprocess
def test_ddp_on_cpu_two_processes(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_RUN)
    torchrun = str(Path(PY).parent / "torchrun")
    r = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "run"),
            str(Path(__file__).parent),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert [(tmp_path / "run" / f"rank{i}.txt").read_text() for i in (0, 1)] == ["0 2 3", "1 2 3"]
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 3
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    assert list(m["step"]) == [1, 2, 3] and all(l == l for l in m["loss"])  # finite losses, one row per step
    assert m["images_per_s"][0] > 0


SGM_MNIST_COND = """
model:
  base_learning_rate: 1.0e-4
  target: sgm.models.diffusion.DiffusionEngine
  params:
    denoiser_config:
      target: sgm.modules.diffusionmodules.denoiser.Denoiser
      params:
        scaling_config:
          target: sgm.modules.diffusionmodules.denoiser_scaling.EDMScaling
          params:
            sigma_data: 1.0
    network_config:
      target: sgm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 1
        out_channels: 1
        model_channels: 32
        attention_resolutions: []
        num_res_blocks: 4
        channel_mult: [1, 2, 2]
        num_head_channels: 32
        num_classes: sequential
        adm_in_channels: 128
    conditioner_config:
      target: sgm.modules.GeneralConditioner
      params:
        emb_models:
          - is_trainable: True
            input_key: cls
            ucg_rate: 0.2
            target: sgm.modules.encoders.modules.ClassEmbedder
            params:
              embed_dim: 128
              n_classes: 10
    first_stage_config:
      target: sgm.models.autoencoder.IdentityFirstStage
    loss_fn_config:
      target: sgm.modules.diffusionmodules.loss.StandardDiffusionLoss
      params:
        loss_weighting_config:
          target: sgm.modules.diffusionmodules.loss_weighting.EDMWeighting
          params:
            sigma_data: 1.0
        sigma_sampler_config:
          target: sgm.modules.diffusionmodules.sigma_sampling.EDMSampling
    sampler_config:
      target: sgm.modules.diffusionmodules.sampling.EulerEDMSampler
      params:
        num_steps: 50
        discretization_config:
          target: sgm.modules.diffusionmodules.discretizer.EDMDiscretization
        guider_config:
          target: sgm.modules.diffusionmodules.guiders.VanillaCFG
          params:
            scale: 3.0
data:
  target: sgm.data.mnist.MNISTLoader
  params:
    batch_size: 512
    num_workers: 1
lightning:
  modelcheckpoint:
    params:
      every_n_train_steps: 5000
  callbacks:
    metrics_over_trainsteps_checkpoint:
      params:
        every_n_train_steps: 25000
    image_logger:
      target: main.ImageLogger
      params:
        disabled: False
        batch_frequency: 1000
        max_images: 16
        increase_log_steps: True
        log_first_step: False
        log_images_kwargs:
          use_ema_scope: False
          N: 16
          n_rows: 4
  trainer:
    devices: 0,
    benchmark: True
    num_sanity_val_steps: 0
    accumulate_grad_batches: 1
    max_epochs: 20
"""


def test_sgm_yaml_loads_unmodified_through_the_alias_table(tmp_path):
    (tmp_path / "mnist_cond.yaml").write_text(SGM_MNIST_COND)
    cfg = load_config([tmp_path / "mnist_cond.yaml"])
    e = build_engine(cfg)
    assert type(e).__module__ == "sgm_nb.engine" and type(e.model.diffusion_model).__module__ == "sgm_nb.unet"
    assert type(e.sampler.guider).__name__ == "VanillaCFG" and e.sampler.guider.scale == 3.0
    assert e.learning_rate == 1e-4 and e.conditioner.embedders[0].ucg_rate == 0.2
    # the packaged re-expression builds the same network, parameter for parameter
    ours = build_engine(load_config([ROOT / "sgm_nb" / "configs" / "mnist_cond.yaml"]))
    assert [(k, v.shape) for k, v in e.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    (tmp_path / "vae.yaml").write_text(
        SGM_MNIST_COND.replace(
            "sgm.models.autoencoder.IdentityFirstStage", "sgm.models.autoencoder.AutoencoderKLInferenceWrapper"
        )
    )
    with pytest.raises(
        ValueError, match="unsupported sgm target 'sgm.models.autoencoder.AutoencoderKLInferenceWrapper'"
    ):
        build_engine(load_config([tmp_path / "vae.yaml"]))


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "sgm_nb" / "configs").glob("*.yaml")))
def test_packaged_configs_build(name):
    from sgm_nb.config import TrainSettings

    cfg = load_config([ROOT / "sgm_nb" / "configs" / f"{name}.yaml"])
    e = build_engine(cfg)
    assert e.loss_fn is not None and e.sampler is not None
    assert TrainSettings.from_config(cfg.lightning).total_steps(117) > 0
