# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export KERAS_BACKEND := jax
export JAX_PLATFORMS ?= cpu

.PHONY: demo test test-fast bench venv venv-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

venv-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/dlfunc train

# Two pytest workers: the suite is mostly single-threaded compilation, so it runs
# about twice as fast on CI's 2 cores. PYTEST_ARGS="-n 0" runs it serially.
PYTEST_ARGS ?= -n 2 --durations=25

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -q -m "not slow" -n 2

bench: $(VENV)/.installed-test
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build *.egg-info
