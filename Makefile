# The two everyday commands work on a fresh machine: each first makes .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench web

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

# Builds the web client first when Node is there and it is not built yet.
serve: $(STAMP)
	@if [ ! -f messenger/web/index.html ] && command -v npm >/dev/null; then $(MAKE) web; fi
	$(BIN)/messenger serve

test: $(STAMP)
	$(BIN)/ruff check messenger tests bench
	$(BIN)/ruff format --check messenger tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

# make bench ARGS=--quick   (everything takes ~15 minutes; see docs/performance.md)
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# The web client (served at / once built); Node is needed only for this step.
web:
	cd web && npm ci --no-audit --no-fund && npm run build
