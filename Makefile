# Two-command quick start: `make demo` and `make test` (each creates .venv when missing; the test
# set-up installs the test, ONNX and Ray extras).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-cluster clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: installing the default (CUDA) torch build"; $(PIP) install -q torch; \
	else \
		echo "No CUDA: installing the CPU build torch==2.13.0"; $(PIP) install -q torch==2.13.0; \
	fi
	$(PIP) install -q -e ".[test,onnx,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/patchmatch demo outputs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -m "not cluster" tests

# The Ray tests: a local Ray instance and a two-node cluster in a network namespace (about 3 minutes)
test-cluster: $(STAMP)
	$(PY) -m pytest -q -m cluster tests

clean:
	rm -rf $(VENV) outputs
