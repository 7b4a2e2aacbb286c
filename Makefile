# Two commands on a fresh machine:   make run   (the main job)   and   make test   (the test suite).
# Both create .venv and install what they need. TORCH selects the PyTorch build: the default is the
# CPU build; a GPU user sets e.g. TORCH="torch==2.13.0 --index-url <their CUDA wheel index>".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONFIG ?= configs/synthetic.yaml
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp from source. Built with -march=native it includes AMX kernels on CPUs that
# advertise AMX, and those crash (SIGSEGV in decode) in VMs that do not enable AMX; build for a portable x86-64
# baseline instead. Override CMAKE_ARGS for another build (e.g. -DGGML_CUDA=on).
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
export CMAKE_ARGS

.PHONY: install run test lint bench clean

$(BIN)/ialp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --progress-bar off $(TORCH)
	$(BIN)/pip install --progress-bar off -e ".[dev]"
	touch $@

install: $(BIN)/ialp

# The config's (setting, seed) cells run in parallel processes, one per core (scripts/run_parallel.py); the last
# step prints the results table. Sequentially: $(BIN)/ialp run $(CONFIG).
run: install
	$(BIN)/python scripts/run_parallel.py $(CONFIG)

lint: install
	$(BIN)/ruff check ialp tests scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

MOVIELENS ?= $(wildcard ../shared/data/movielens/ml-latest-small)

bench: install
	$(BIN)/ialp bench env $(if $(MOVIELENS),--data-dir $(MOVIELENS))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
