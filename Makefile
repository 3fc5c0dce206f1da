# Set-up and everyday commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch that this machine serves from local disk; the package itself only asks for a range.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= dev,train,serve,eval
# DeepSpeed lives in its own folder so the main environment stays without it (transformers imports an installed
# deepspeed on every save_pretrained); only the `deepspeed`-marked tests put it on the path.
DS_SITE := .deepspeed-site
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-slow test-all test-deepspeed lint format demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

test-all: setup $(DS_SITE)/.installed
	$(PY) -m pytest -q -m "not gpu and not deepspeed"
	PYTHONPATH=$(CURDIR)/$(DS_SITE) $(PY) -m pytest -q -m deepspeed

# DeepSpeed (tests marked `deepspeed`: ZeRO-2/3 on CPU, single process) is installed in $(DS_SITE); its other
# needs (torch, pydantic via the serve extra, numpy, packaging, psutil, tqdm) come from the main environment.
$(DS_SITE)/.installed: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps --target $(DS_SITE) "deepspeed>=0.15" hjson py-cpuinfo einops msgpack ninja
	touch $@

test-deepspeed: setup $(DS_SITE)/.installed
	PYTHONPATH=$(CURDIR)/$(DS_SITE) $(PY) -m pytest -q -m deepspeed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: setup
	$(VENV)/bin/inf-llava demo

clean:
	rm -rf $(VENV) $(DS_SITE) build dist src/*.egg-info .pytest_cache .ruff_cache
