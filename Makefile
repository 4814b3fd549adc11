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

.PHONY: help venv install train test test-fast export clean-nbs sync-check docs-smoke lab clean

help:
	@echo "make train      run the main job (creates .venv on first use)"
	@echo "make test       run the whole test suite: every notebook (slow cells included) and tests/"
	@echo "make test-fast  as test, but skipping cells flagged #| slow"
	@echo "make export     nbdev-clean + nbdev-export after editing notebooks"
	@echo "make sync-check fail if notebooks are not clean or the library is out of sync"
	@echo "make lab        start JupyterLab on nbs/"

venv: $(STAMP)
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --disable-pip-version-check -q $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	@touch $@

train: $(STAMP)
	$(BIN)/sgm-nb-demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest --nb-flags="$(NB_FLAGS)"

test-fast: $(STAMP)
	$(BIN)/python -m pytest --nb-flags=""

export: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/nbdev-export

sync-check: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash .ci/sync-check

docs-smoke: $(STAMP)
	$(BIN)/nbdev-proc-nbs

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

clean:
	rm -rf _proc _docs _site build dist *.egg-info
