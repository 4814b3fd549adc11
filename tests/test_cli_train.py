"`sgm-nb train` / `sgm-nb sample` end to end on a tiny config, and one-line errors for bad input."

import json

import matplotlib.pyplot as plt
import pytest
import torch
from helpers import cli, cli_inproc, one_line_error, tiny_config
from omegaconf import OmegaConf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    OmegaConf.save(tiny_config(2, every=2), d / "tiny.yaml")
    r = cli("train", "--base", "tiny.yaml", "lightning.trainer.max_steps=2", "--name", "t", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "done: step 2" in r.stdout
    (run,) = (d / "runs").iterdir()
    return d, run


@pytest.fixture(scope="module")
def trained_inproc(tmp_path_factory):
    "A tiny run trained in this process: a checkpoint for the error paths of `sample`."
    from sgm_nb.training import train

    d = tmp_path_factory.mktemp("cli_inproc")
    r = train(tiny_config(2, every=2), run_dir=d / "runs" / "t", progress=False, verbose=False)
    return d, r.run_dir


@pytest.mark.subprocess
def test_train_resume_and_sample(trained):
    d, run = trained
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "images", "metrics.csv"]
    r = cli("train", "--resume", run, "lightning.trainer.max_steps=3", cwd=d)
    assert r.returncode == 0 and "done: step 3" in r.stdout, r.stderr
    r = cli(
        "sample",
        "--ckpt",
        run / "checkpoints" / "last.ckpt",
        "--n",
        10,
        "--nrow",
        5,
        "--sampler",
        "heun",
        "--steps",
        2,
        "--cfg-scale",
        2,
        "--classes",
        "0,1,2",
        "--out",
        d / "grid.png",
        cwd=d,
    )
    assert r.returncode == 0, r.stderr
    assert plt.imread(d / "grid.png").shape[:2] == (2 * 16 + 2, 5 * 16 + 2)  # 2 rows of 5 digits of 14 px, padding 2


@pytest.mark.subprocess
def test_sample_reads_an_sgm_lightning_checkpoint(trained):
    "sgm's layout: a state_dict (model.diffusion_model.*, model_ema.*, conditioner.*), no config: --base gives it."
    d, run = trained
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    sgm_ckpt = d / "sgm" / "checkpoints" / "last.ckpt"
    sgm_ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": ck["state_dict"], "global_step": ck["global_step"], "epoch": 0}, sgm_ckpt)
    r = cli("sample", "--ckpt", sgm_ckpt, "--n", 4, "--steps", 2, "--out", d / "g2.png", cwd=d)
    one_line_error(r, "sample", "holds no config", "--base")
    r = cli(
        "sample",
        "--ckpt",
        sgm_ckpt,
        "--base",
        "tiny.yaml",
        "--n",
        4,
        "--steps",
        2,
        "--shape",
        "1,14,14",
        "--out",
        d / "g2.png",
        cwd=d,
    )
    assert r.returncode == 0, r.stderr
    r = cli(
        "sample",
        "--ckpt",
        sgm_ckpt,
        "--base",
        "tiny.yaml",
        "model.params.use_ema=false",
        "--n",
        4,
        "--steps",
        2,
        "--out",
        d / "g3.png",
        cwd=d,
    )
    assert r.returncode == 0, r.stderr  # EMA read without an EMA in the config


@pytest.mark.subprocess
def test_evaluate_prints_a_table_and_writes_json(tmp_path, trained):
    OmegaConf.save(tiny_config(2, every=2), tmp_path / "tiny.yaml")
    r = cli("train", "--base", "tiny.yaml", "data.params.size=null", "--name", "t28", cwd=tmp_path)  # 28 px digits
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    ck = run / "checkpoints" / "last.ckpt"
    r = cli(
        "evaluate",
        "--ckpt",
        ck,
        "--n",
        12,
        "--steps",
        2,
        "--batch-size",
        5,
        "--json",
        tmp_path / "e.json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert (
        "FLD (held-out digits)" in r.stdout
        and "class match" in r.stdout
        and "12 samples, EulerEDMSampler 2 steps" in r.stdout
    )
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["n"] == 12 and res["steps"] == 2 and res["samples"]["fld"] > res["real_floor"]["fld"] > 0
    one_line_error(cli("evaluate", "--ckpt", ck, "--n", 1, cwd=tmp_path), "evaluate", "--n must be")
    one_line_error(
        cli("evaluate", "--ckpt", ck, "--json", tmp_path / "no" / "e.json", cwd=tmp_path), "evaluate", "does not exist"
    )
    d, run14 = trained  # 14 px digits: the classifier reads 28 px
    one_line_error(
        cli("evaluate", "--ckpt", run14 / "checkpoints" / "last.ckpt", "--n", 4, "--steps", 1, cwd=d),
        "evaluate",
        "samples 1x14x14",
    )


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--base", "nope.yaml"], ["'nope.yaml' does not exist"]),
        (["--base", "tiny.yaml", "modle.params.x=1"], ["unknown config section 'modle'"]),
        (["--base", "tiny.yaml", "model.params.not_a_param=1"], ["not_a_param"]),
        (["--base", "tiny.yaml", "lightning.trainer.max_step=3"], ["lightning.trainer.max_step"]),
        (
            ["--base", "tiny.yaml", "model.target=sgm.models.diffusion.NotAModel"],
            ["unsupported sgm target 'sgm.models.diffusion.NotAModel'"],
        ),
        (["--base", "tiny.yaml", "data.params.batch_size=0"], ["batch_size"]),
        (["--resume", "runs/none"], ["does not exist"]),
    ],
)
def test_train_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needles, capsys, monkeypatch):
    OmegaConf.save(tiny_config(2), tmp_path / "tiny.yaml")
    r = cli_inproc("train", *args, "--logdir", "runs", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "train", *needles)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--ckpt", "missing.ckpt"], ["'missing.ckpt' does not exist"]),
        (["--ckpt", "{ckpt}", "--classes", "0,10"], ["class id 10 is out of range", "0 to 9"]),
        (["--ckpt", "{ckpt}", "--sampler", "magic"], ["unknown sampler 'magic'"]),
        (["--ckpt", "{ckpt}", "--n", "0"], ["--n must be >= 1"]),
        (
            ["--ckpt", "{ckpt}", "model.params.network_config.params.model_channels=64"],
            ["does not fit the config", "size mismatch"],
        ),
        (["--ckpt", "{bad}"], ["cannot read checkpoint"]),
        (["--ckpt", "{ckpt}", "--shape", "1,x"], ["--shape"]),
        (["--ckpt", "w.safetensors"], ["does not exist"]),
    ],
)
def test_sample_bad_input_is_one_line(trained_inproc, args, needles, capsys, monkeypatch):
    d, run = trained_inproc
    (d / "bad.ckpt").write_bytes(b"\x00" * 100)
    args = [a.format(ckpt=run / "checkpoints" / "last.ckpt", bad=d / "bad.ckpt") for a in args]
    r = cli_inproc("sample", *args, "--out", d / "never.png", cwd=d, capsys=capsys, monkeypatch=monkeypatch)
    one_line_error(r, "sample", *needles)
    assert not (d / "never.png").exists()


@pytest.mark.subprocess
def test_bad_command_line_is_one_line(tmp_path):
    r = cli("sample", "--n", "3", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--ckpt" in r.stderr


def test_safetensors_without_the_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    try:
        import safetensors  # noqa: F401

        pytest.skip("safetensors is installed")
    except ImportError:
        pass
    (tmp_path / "w.safetensors").write_bytes(b"\x00" * 16)
    OmegaConf.save(tiny_config(2), tmp_path / "tiny.yaml")
    r = cli_inproc(
        "sample",
        "--ckpt",
        "w.safetensors",
        "--base",
        "tiny.yaml",
        "--out",
        "g.png",
        cwd=tmp_path,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    one_line_error(r, "sample", "needs the safetensors package")
