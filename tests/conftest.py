import os

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--nb-flags",
        default=os.environ.get("SGM_NB_FLAGS", "slow"),
        help="space-separated notebook cell flags to run (default 'slow'; '' skips slow cells). "
        "'gpu' is added automatically when CUDA is available.",
    )


@pytest.fixture(scope="session")
def nb_flags(request):
    flags = request.config.getoption("--nb-flags").split()
    import torch

    if torch.cuda.is_available() and "gpu" not in flags:
        flags.append("gpu")
    return flags
