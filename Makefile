# Tally — the two commands are `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tally-installed

.PHONY: demo test up down status lint lint-sql install system-deps clean-state

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "Tally needs Python 3.11, found " + sys.version' \
	  || { echo "Create the venv with Python 3.11: make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e '.[dev,local]'
	@# an older install left tally.egg-info in plugins/ (on sys.path): Airflow would see the
	@# `airflow.plugins` entry point twice (pyproject.toml, tool.distutils.egg_info)
	@rm -rf plugins/tally.egg-info
	@# pyspark is an sdist: uv builds a new 1.3 GB wheel revision whenever the index answers a
	@# revalidation as modified, and keeps every old one. Drop those (only unreferenced entries).
	@$(BIN)/uv cache prune --quiet || true
	@touch $(STAMP)

install: $(STAMP)

# System packages: a Java 17 runtime for Spark, runuser (util-linux) for Postgres as root;
# headless Chromium for the browser tests of Data Docs (they skip, saying so, without it).
system-deps:
	@if ! command -v java >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else \
	    echo "Spark needs Java 17. Install it, then re-run:"; \
	    echo "  sudo apt-get install -y openjdk-17-jre-headless   # Debian/Ubuntu"; \
	    echo "  brew install openjdk@17                           # macOS"; \
	    exit 1; \
	  fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The Data Docs browser tests need headless Chromium (they skip without it):"; \
	    echo "  sudo apt-get install -y chromium   # Debian (Ubuntu: the chromium snap, or TALLY_CHROMIUM=/path/to/chrome)"; \
	  fi; \
	fi

demo: install
	$(BIN)/tally demo

test: system-deps install
	$(BIN)/ruff check .
	@$(MAKE) --no-print-directory lint-sql
	$(BIN)/pytest -q

up: install
	$(BIN)/tally up

down:
	@test -x $(BIN)/tally && $(BIN)/tally down || echo "nothing to stop"

status:
	$(BIN)/tally status

lint: install
	$(BIN)/ruff check .
	@$(MAKE) --no-print-directory lint-sql

# sqlfluff with the dbt templater on the dbt project (config: dbt_project/.sqlfluff). dbt needs a
# database to compile against: TALLY_DBT_HOST's, else a throwaway embedded Postgres.
lint-sql: install
	$(BIN)/python -m tally_local.lint_sql dbt_project models tests snapshots

# Stop the stack and delete all local state (databases, lake, logs).
clean-state: down
	rm -rf .tally
