# Two commands from a fresh clone (see README):
#   make demo   set up .venv and run the CPU digit-reversal comparison
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.seqlab-installed

.PHONY: demo test test-slow bench setup clean

setup: $(STAMP)

# Re-installs when pyproject.toml changes; the editable install picks up code changes by itself.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

# Extra flags for the demo, e.g. `make demo ARGS="--trainer.overwrite true"` to run it again.
ARGS ?=

demo: $(STAMP)
	$(BIN)/seqlab fit --recipe recipes/reverse_digits_cpu.yaml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Opt-in: the long tests (multi-process training, a full budget recipe).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_wkv7.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_trainer_overhead.py

clean:
	rm -rf $(VENV) runs build *.egg-info
