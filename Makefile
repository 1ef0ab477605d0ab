# Two entry points, both from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TRIALS ?= 200

.PHONY: setup data run test lint bench gpu-bundle gpu-check clean

$(BIN)/hpsearch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/hpsearch data

# One rule for the data, here and in hpsearch itself: --data-dir, else $HPSEARCH_DATA_DIR, else
# ./data. A checkout beside ../shared gets ./data as a link to ../shared/data, once.
data:
	@if [ -z "$$HPSEARCH_DATA_DIR" ] && [ ! -e data ] && [ -d ../shared/data ]; then \
		ln -s ../shared/data data && echo "linked ./data -> ../shared/data"; fi

# The main job: the fashion-lenet search on the default SQLite storage (./hpsearch.db).
run: setup
	$(BIN)/hpsearch run fashion-lenet --trials $(TRIALS)

test: setup
	$(BIN)/python -m pytest

# ruff's lint and format checks, configured in pyproject.toml (CI runs them before the tests).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/lenet_epoch.py

# The GPU machine has no registry and gets only the working tree: `make gpu-bundle` (here, beside
# ../shared) copies the wheels it lacks and Fashion-MNIST into .device/; there, with .device
# carried, `make gpu-check` installs them, runs the tests on the GPU and prints every benchmark.
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=

gpu-bundle:
	$(PYTHON) benchmarks/gpu_bundle.py

gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
