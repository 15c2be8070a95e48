# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export KERAS_BACKEND := jax
export JAX_PLATFORMS ?= cpu

.PHONY: demo test test-fast bench venv venv-test grading docs lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[docs]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

venv-test: $(VENV)/.installed-test

# A grading machine: everything `autograder list/check/grade/grade-all/release/validate` need.
$(VENV)/.installed-grading: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[grading]'
	touch $@

grading: $(VENV)/.installed-grading
	@command -v bwrap >/dev/null || echo "note: install bubblewrap (apt-get install bubblewrap) for the full sandbox"

demo: $(VENV)/.installed
	$(VENV)/bin/dlfunc train

# Serial by default: the grading tests time each call into a submission, and two
# pytest workers beside grade-all's own jobs overload 2 cores. With more cores,
# `make test PYTEST_ARGS="-n 4"` runs it in parallel (pytest-xdist).
PYTEST_ARGS ?= --durations=25

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -q -m "not slow" -n 2

bench: $(VENV)/.installed-test
	$(PY) benchmarks/train_step.py

# The API reference (mkdocs.yml, docs/hooks.py) into build/docs: offline, strict (a warning fails it).
docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict --clean

# ruff (lint and format, [tool.ruff]) and pyright (basic, [tool.pyright]) over the library and the grader.
LINT_PATHS ?= dlfunc autograder

lint: $(VENV)/.installed-dev
	@rc=0; \
	$(VENV)/bin/ruff check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/ruff format --check $(LINT_PATHS) || rc=1; \
	$(VENV)/bin/pyright $(LINT_PATHS) || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info
