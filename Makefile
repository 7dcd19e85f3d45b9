# The two commands a newcomer runs: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: book test venv clean bench

$(VENV)/.installed-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book]"
	touch $@

$(VENV)/.installed-test: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,book]"
	touch $@ $(VENV)/.installed-base

book: $(VENV)/.installed-base
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: $(VENV)/.installed-test
	LABCODE_QUICK=1 $(PY) -m pytest -q tests
	LABCODE_QUICK=1 $(PY) -m pytest -q --nbval-lax chapters

bench: $(VENV)/.installed-test
	$(PY) benchmarks/layers.py

clean:
	rm -rf _build
