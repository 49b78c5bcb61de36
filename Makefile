# The two everyday commands work on a fresh machine: each first makes .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test-latest`: the same checks on the newest releases of every dependency.
LATEST := .venv-latest
# Extra pytest arguments, e.g. make test-latest PYTEST_ARGS="tests/unit -x".
PYTEST_ARGS ?=

.PHONY: serve test test-latest constraints lint bench web

# Installs exactly the versions in constraints.txt, so every machine and CI test the same.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

# Lint, types and tests with the tools of the venv whose bin/ is $(1).
define checks
	$(1)/ruff check messenger tests bench examples
	$(1)/ruff format --check messenger tests bench examples
	$(1)/mypy
	$(1)/python -m pytest $(PYTEST_ARGS)
endef

# Builds the web client first when Node is there and it is not built yet.
serve: $(STAMP)
	@if [ ! -f messenger/web/index.html ] && command -v npm >/dev/null; then $(MAKE) web; fi
	$(BIN)/messenger serve

test: $(STAMP)
	$(call checks,$(BIN))

# The newest releases allowed by pyproject.toml, constraints.txt ignored: what a
# release of a library (within its cap) would break shows here before it is pinned.
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,bench]"
	$(LATEST)/bin/pip list --format=freeze | grep -i -E '^(python-socketio|python-engineio|aiohttp)=='
	$(call checks,$(LATEST)/bin)

# Rewrites constraints.txt from a venv whose tests passed: .venv after a dependency was
# added there, or `make constraints FROM=$(LATEST)` after `make test-latest`.
FROM ?= $(VENV)
constraints:
	{ sed -n '/^#/p' constraints.txt; \
	  $(FROM)/bin/pip freeze --exclude-editable | grep -v -i '^messenger=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# make bench ARGS=--quick   (everything takes ~15 minutes; see docs/performance.md)
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# The web client (served at / once built); Node is needed only for this step.
web:
	cd web && npm ci --no-audit --no-fund && npm run build
