# Two commands do everything on a fresh clone: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install the pinned dependencies first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint docs bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The data at hand: the official CIFAR-10 beside this clone; without it the official tarball is downloaded (checked).
DATA ?= $(if $(wildcard ../shared/data/cifar10/cifar-10-batches-py),../shared/data/cifar10,cifar10)

# The main job: Fig. 1/6 (degradation of plain nets, cured by residual learning) at the quick budget: about 30 minutes
# on 2 CPU cores with bf16 units, about 65 in fp32 on 2 cores without them (docs: Reproducing the paper). Interrupted?
# Run it again: finished trainings are reused and the interrupted one resumes.
demo: $(STAMP)
	$(BIN)/resnetlab reproduce degradation --budget quick --data $(DATA)

test: $(STAMP) lint docs
	$(BIN)/python -m pytest -q

# The documentation site, built offline into site/; --strict makes a broken link, a missing page or a missing API
# reference fail (and with it `make test`).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks) tools hubconf.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info site
