# Two commands from a fresh clone (see README):
#   make demo   set up .venv and run the CPU digit-reversal comparison
#   make test   set up .venv and run the test suite, without the slow tests
#   (CI runs `make test`, `make test-slow` and `make test-nlp`: .ci/run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.seqlab-installed

.PHONY: demo test lint test-slow test-nlp test-all bench setup clean

setup: $(STAMP)

# Re-installs when pyproject.toml changes; the editable install picks up code changes by itself.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev,onnx]"
	touch $(STAMP)

# Extra flags for the demo, e.g. `make demo ARGS="--trainer.overwrite true"` to run it again.
ARGS ?=

demo: $(STAMP)
	$(BIN)/seqlab fit --recipe recipes/reverse_digits_cpu.yaml $(ARGS)

# The linter and the formatter first (a second), then the suite without the tests marked slow,
# on TEST_WORKERS processes (pytest-xdist; `make test TEST_WORKERS=0` runs them in this one).
# loadgroup: tests marked with the same xdist_group (sharing an install) run in one worker.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo  # the import contracts in pyproject.toml

# The tests marked slow (multi-process training, many-process fault runs, the CPU budget recipe,
# which alone takes ~10 min), one at a time: several start processes of their own and time them.
# CI runs it after `make test` (.ci/run).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The PaddleNLP plugins (pnlp_llama, pnlp_mamba) need the `paddlenlp` extra, which pins numpy
# to 1.26 and adds ~1.8 GB, so they get their own venv. A fresh install took 2.0-4.9 min (three
# installs on a shared 2-core machine, 2026-11-29) and the tests ~2 min: `make test-nlp` from
# nothing took 4.0 min. `make test-all` runs both suites.
NLP_VENV  ?= .venv-nlp
NLP_BIN   := $(NLP_VENV)/bin
NLP_STAMP := $(NLP_VENV)/.seqlab-installed

$(NLP_STAMP): pyproject.toml
	test -x $(NLP_BIN)/python || $(PYTHON) -m venv $(NLP_VENV)
	$(NLP_BIN)/python -m pip install --quiet --upgrade pip
	$(NLP_BIN)/python -m pip install --quiet -e ".[cpu,dev,paddlenlp]"
	touch $(NLP_STAMP)

# The plugins' tests, and every model's contract checks under paddlenlp's numpy.
test-nlp: $(NLP_STAMP)
	$(NLP_BIN)/python -m pytest -q tests/test_paddlenlp_plugins.py tests/test_models.py

test-all: test test-nlp

# `--executor ray` (seqlab/ray_executor.py) on a real two-node Ray cluster on this machine:
# tests/test_ray.py's tests marked `ray`, which the other targets leave out. Ray is the `ray`
# extra (pinned; an 80 MB wheel, ~250 MB installed with its dependencies, none of which changes
# seqlab's): it goes into .venv, ~10-20 s from a warm pip cache. The tests took ~4 min on this
# shared 2-core machine (a Ray cluster starts in ~10 s; each tiny run is a few seconds).
RAY_STAMP := $(VENV)/.seqlab-ray-installed

$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[ray]"
	touch $(RAY_STAMP)

.PHONY: test-ray
test-ray: $(RAY_STAMP)
	$(BIN)/python -c "import ray"  # a missing Ray fails here, never as skipped tests
	$(BIN)/python -m pytest -q -m ray tests/test_ray.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_wkv7.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_trainer_overhead.py

clean:
	rm -rf $(VENV) $(NLP_VENV) runs build *.egg-info
