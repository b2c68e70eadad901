# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-timm bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev,onnx]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tpp demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

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

# Every benchmark in bench/, one after another, each writing bench/results/*.json (torch on one
# thread: the machine is shared). `make bench BENCHES="bench_jsv bench_tpp_step"` runs a subset.
BENCHES ?= $(basename $(notdir $(wildcard bench/bench_*.py)))

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== bench/$$b.py"; OMP_NUM_THREADS=1 $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(TIMM_VENV) runs build *.egg-info src/*.egg-info .pytest_cache .hypothesis
