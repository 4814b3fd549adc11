# sgm_nb: every target creates and fills the virtual environment when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Without an NVIDIA driver, take the CPU build of torch 2.13.0 (pip finds it locally where a machine
# keeps it); with one, let pip resolve the CUDA build. Override: make TORCH='torch==2.x.y' ...
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
# Extra pip arguments for torch only, e.g. TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_PIP_ARGS ?=
NB_FLAGS ?= slow
STAMP := $(VENV)/.sgm_nb-installed

.PHONY: help venv install train demo test test-fast lint format export clean-nbs sync-check docs docs-smoke lab clean

help:
	@echo "make train      train the main job and sample from it (CONFIG=mnist_cpu_flow, or mnist_cond with a GPU; creates .venv)"
	@echo "make demo       the data demo: a grid of the embedded digits"
	@echo "make test       run the whole test suite: every notebook (slow cells included) and tests/"
	@echo "make test-fast  the quick tier (under two minutes): tests/ not marked slow, subprocess or browser, and ruff"
	@echo "make lint       ruff check and ruff format --check (library, notebooks, tests, benchmarks, tools); no function over 60 lines"
	@echo "make format     ruff format the notebooks, tests, benchmarks and tools, then export the library"
	@echo "make export     nbdev-clean + nbdev-export after editing notebooks"
	@echo "make sync-check fail if notebooks are not clean or the library is out of sync"
	@echo "make docs       build the offline docs site into _site/ (no Quarto, no network); open _site/index.html"
	@echo "make docs-smoke build the site and check every page in headless Chromium (tests/test_site.py; needs chromium)"
	@echo "make lab        start JupyterLab on nbs/"

venv: $(STAMP)
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --disable-pip-version-check -q $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev,notebooks]"
	@touch $@

# The CPU default: trains a small class-conditional UNet on the embedded digits with rectified flow, writes sample grids
# as it goes (runs/*_mnist_cpu_flow/images/), then samples 64 digits from the last checkpoint, autoguided by the run's
# own checkpoint of step 300. Override: make train CONFIG=mnist_cpu (the EDM recipe of nbs/19b_payoff) or mnist_cond
# With an NVIDIA driver the main job is sgm's own toy setting (mnist_cond: full MNIST, batch 512, 20 epochs).
CONFIG ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo mnist_cond || echo mnist_cpu_flow)
SAMPLE_ARGS ?= --n 64
train: $(STAMP)
	$(BIN)/sgm-nb train --base $(CONFIG) --name $(CONFIG) --logdir runs $(TRAIN_ARGS)
	run=$$(ls -td runs/*$(CONFIG)*/ | head -n 1) && \
	$(BIN)/sgm-nb sample --ckpt "$${run}checkpoints/last.ckpt" $(SAMPLE_ARGS) --out "$${run}samples.png" && \
	echo "samples: $${run}samples.png"

demo: $(STAMP)
	$(BIN)/sgm-nb-demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest --nb-flags="$(NB_FLAGS)"

# the quick tier: no notebook runs, no subprocesses, no browser; the notebooks themselves run in `make test`
test-fast: lint
	$(BIN)/python -m pytest -m "not slow and not subprocess and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/function_lengths.py --max 60

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/nbdev-export

export: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/nbdev-export

sync-check: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash .ci/sync-check

# The offline site: nbdev's processed notebooks (_proc/) to HTML, math by the MathJax copy in _site/mathjax/, search by
# the MiniSearch copy in tools/vendor/. With Quarto installed, `$(BIN)/nbdev-docs` builds the full site into _docs/.
docs: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python tools/build_site.py

# The browser check of the site alone (it builds its own copy; `make test` runs it too). nbdev-proc-nbs, which this
# target ran before, offers to download and install Quarto (curl, sudo) when `quarto` is not on PATH.
docs-smoke: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests/test_site.py tests/test_build_site.py -q

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

clean:
	rm -rf _proc _docs _site build dist *.egg-info
