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

# Warnings are errors. Executed notebooks are cached in _build/.jupyter_cache, keyed
# on their code only: after a LABCODE_QUICK=1 build, `make clean` before a full one.
book: $(VENV)/.installed-base
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Opens every page of _build/html in headless Chromium (/usr/bin/chromium, Debian
# package `chromium`); run `make book` first. Screenshots go to _build/screenshots.
.PHONY: browser-test
$(VENV)/.installed-browser: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test,book,browser]"
	touch $@

browser-test: $(VENV)/.installed-browser
	$(PY) -m pytest -q tests/test_browser.py

test: $(VENV)/.installed-test
	LABCODE_QUICK=1 $(PY) -m pytest -q tests
	LABCODE_QUICK=1 LABCODE_STRICT=1 $(PY) -m pytest -q --nbval-lax chapters --ignore-glob='*/exercises.ipynb'

# Speed figures quoted in README (CPU here; benchmarks/gpu_check.sh on a CUDA machine).
bench: $(VENV)/.installed-test
	$(PY) benchmarks/layers.py
	$(PY) benchmarks/loader.py --quick
	$(PY) benchmarks/fit_overhead.py --quick
	$(PY) benchmarks/time_to_98.py --quick
	$(PY) benchmarks/grading.py

clean:
	rm -rf _build
