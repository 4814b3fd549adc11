"Latent diffusion from the command line: `sgm-nb train --base mnist_latent`, `sgm-nb sample`, the shipped first stage."

import matplotlib.pyplot as plt
import pytest
import torch
from helpers import cli, one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SHORT = [
    "lightning.trainer.max_steps=4",
    "lightning.modelcheckpoint.params.every_n_train_steps=2",
    "lightning.callbacks.image_logger.params.batch_frequency=4",
    "lightning.callbacks.image_logger.params.log_images_kwargs.N=8",
    "lightning.trainer.log_every_n_steps=1",
]
FS_CKPT = "model.params.first_stage_config.params.ckpt_path"


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("latent")  # run from a folder without the assets: weights come from the package
    r = cli("train", "--base", "mnist_latent", *SHORT, "--no-progress", "--name", "lat", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "done: step 4" in r.stdout
    (run,) = (d / "runs").iterdir()
    return d, run


def test_latent_train_trains_on_latents_with_the_frozen_shipped_first_stage(latent_run):
    from sgm_nb.autoencoder import mnist_autoencoder

    d, run = latent_run
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    sd = ck["state_dict"]
    assert sd["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 4  # the UNet sees 4 latent channels
    shipped = mnist_autoencoder().state_dict()
    fs = {k[len("first_stage_model.") :]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    assert fs.keys() == shipped.keys() and all(torch.equal(fs[k], shipped[k]) for k in fs)  # loaded and not trained
    assert plt.imread(run / "images" / "samples_gs-000004.png").shape[:2] == (32, 8 * 30 + 2)  # decoded 28 px digits


def test_latent_sample_decodes_to_digits(latent_run):
    d, run = latent_run
    r = cli(
        "sample",
        "--ckpt",
        run / "checkpoints" / "last.ckpt",
        "--n",
        10,
        "--nrow",
        5,
        "--steps",
        3,
        "--shape",
        "4,7,7",
        "--out",
        d / "grid.png",
        cwd=d,
    )
    assert r.returncode == 0, r.stderr
    assert plt.imread(d / "grid.png").shape[:2] == (
        2 * 30 + 2,
        5 * 30 + 2,
    )  # 2 rows of 5 decoded 28 px digits, padding 2


def test_latent_checkpoint_records_the_latent_shape(latent_run):
    d, run = latent_run
    assert list(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["sample_shape"]) == [4, 7, 7]
    r = cli("sample", "--ckpt", run / "checkpoints" / "last.ckpt", "--n", 4, "--steps", 2, "--out", d / "g4.png", cwd=d)
    assert r.returncode == 0, r.stderr
    assert plt.imread(d / "g4.png").shape[:2] == (32, 4 * 30 + 2)


@pytest.mark.parametrize("kind", ["missing", "corrupt", "wrong"])
def test_bad_first_stage_weights_are_one_line_errors(latent_run, kind):
    d, run = latent_run
    bad = d / f"{kind}.pt"
    if kind == "corrupt":
        bad.write_bytes(b"\x80\x02 not a torch file")
    if kind == "wrong":
        torch.save({"encoder.conv_in.weight": torch.zeros(2)}, bad)
    needle = {
        "missing": "does not exist",
        "corrupt": "cannot read first-stage weights",
        "wrong": "do not fit this autoencoder",
    }[kind]
    r = cli("train", "--base", "mnist_latent", *SHORT, f"{FS_CKPT}={bad}", cwd=d)
    one_line_error(r, "train", f"{kind}.pt", needle)
    r = cli(
        "sample",
        "--ckpt",
        run / "checkpoints" / "last.ckpt",
        "--n",
        2,
        "--steps",
        2,
        "--shape",
        "4,7,7",
        f"{FS_CKPT}={bad}",
        "--out",
        d / "never.png",
        cwd=d,
    )
    one_line_error(r, "sample", f"{kind}.pt", needle)
    assert not (d / "never.png").exists()


def test_shipped_autoencoder_is_reproduced_by_the_notebook_recipe():
    "Retrain the first stage as nbs/20_autoencoder.ipynb does: same bits, or (other CPU kernels) an equivalent one."
    from sgm_nb.autoencoder import mnist_autoencoder, same_autoencoder, train_autoencoder
    from sgm_nb.data import mnist5k_split

    ok, why = same_autoencoder(
        train_autoencoder(mnist5k_split("train")[0]), mnist_autoencoder(), mnist5k_split("test")[0]
    )
    assert ok, why
