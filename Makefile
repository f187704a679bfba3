# Two commands on a fresh clone: `make repro` (environment + pipeline on the built-in sample data)
# and `make test`. `make install` builds only the environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stages run `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(BIN):$(PATH)
# uv installs the pinned requirements about 10x faster than pip does (cold venv, warm cache). It comes
# from PyPI into the venv itself, pinned; where it can't be had, pip does the whole install.
UV_VERSION ?= 0.13.9
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
UV_INSTALL := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

.PHONY: deps lint install repro test test-fast bench clean check-pipeline report browser

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null
	if $(PIP_INSTALL) uv==$(UV_VERSION) && $(UV_INSTALL) -r requirements.txt && $(UV_INSTALL) --no-deps -e .; \
	then :; else \
		echo "make: uv unavailable, installing with pip (slower)" >&2; \
		$(PIP_INSTALL) -r requirements.txt && $(PIP_INSTALL) --no-deps -e .; \
	fi
	touch $@

repro: install
	$(BIN)/dvc repro

# The suite on TEST_WORKERS processes (pytest-xdist); a test file stays on one worker, so a module's
# shared fixture is built once, and files go out in collection order (the longest first: conftest.py).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
PYTEST := $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),$(XDIST))

test: install browser lint
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# CI's pipeline validation: the committed dvc.lock is not stale (no stage would rerun), then `dvc dag`.
check-pipeline: install
	bash .ci/check-pipeline

# report.md + report/ (images): metrics and params diff against REPORT_BASE, ROC, confusion, curves.
REPORT_BASE ?= main
report: install
	$(BIN)/python -m deepfake_detector.evaluation.report --base $(REPORT_BASE) --output report.md

# The web page's browser test drives Debian's headless Chromium (nothing downloads a browser). As root,
# install it from apt where it is missing; elsewhere the test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver) \
		|| echo "make browser: apt-get could not install chromium; the browser test will skip" >&2; \
	else echo "make browser: no chromium, and not root to install it; the browser test will skip" >&2; fi

clean:
	rm -rf data/raw data/processed data/eval models/*.keras .pytest_cache

# dvc.yaml's code deps, regenerated from what each stage imports (after moving or adding a module).
deps: install
	$(BIN)/python tools/stagedeps.py

# ruff, pinned in requirements.txt, configured in pyproject.toml: zero findings or `make test` stops.
lint: install
	$(BIN)/ruff check .
