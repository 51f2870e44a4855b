# Switchboard's everyday commands. `make demo` and `make test` are the README's Quick start.

.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-from-pyproject
# The extras `make setup` installs: the tools (dev) and the Ray Serve backend (ray), whose
# tests (tests/ray) skip without it. `make setup EXTRAS=dev` leaves Ray out.
EXTRAS ?= dev,ray

# The test suite runs on PostgreSQL and Redis (pytest-django creates and drops test_<name>).
# It keeps to its own Redis database and namespace, so a `make demo` left running (database
# 0, namespace switchboard) keeps its queue, sessions and routing while the suite runs.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/test)
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# Django 6 needs Python 3.12 or newer: the first one on PATH, else pyenv's oldest such (the one CI has proven). A pyenv
# shim that is present but not activated fails the version check and is skipped.
PYTHON_OK := -c 'import sys; sys.exit(sys.version_info < (3, 12))'
find_python = for c in python3.14 python3.13 python3.12 python3; do \
	  if "$$c" $(PYTHON_OK) >/dev/null 2>&1; then echo "$$c"; exit 0; fi; done; \
	if command -v pyenv >/dev/null 2>&1; then \
	  for c in $$(ls -d "$$(pyenv root)"/versions/3.1[2-9]* 2>/dev/null | sort -V); do \
	    if "$$c/bin/python3" $(PYTHON_OK) >/dev/null 2>&1; then echo "$$c/bin/python3"; exit 0; fi; \
	  done; fi; \
	echo "Switchboard needs Python 3.12 or newer, and none was found (tried python3.14," \
	  "python3.13, python3.12 and python3 on PATH, and pyenv's versions). Install one, e.g." \
	  "'apt-get install python3.12-venv' or 'pyenv install 3.12', then run make again." >&2; exit 1

.PHONY: help setup demo up test lint format bench bench-compare screenshots clean

help:
	@echo "make demo   run the whole system with a demo app (web :8000, gateway :8001)"
	@echo "make test   run the whole test suite on PostgreSQL and Redis"
	@echo "make lint   ruff check, format check and the import layers (import-linter)"
	@echo "make bench  run the benchmarks; each run is kept in bench/results/ (commit it)"
	@echo "make bench-compare [A=file.json] [B=file.json]"
	@echo "            two benchmark runs side by side, ratio B/A per figure (default: the newest two)"
	@echo "make screenshots"
	@echo "            refresh the README's images in docs/screenshots/ (runs their browser tests)"
	@echo "make setup  create .venv and install the project (done by the others as needed)"

setup: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@if ! [ -x $(PY) ]; then \
	  python=$$($(find_python)) || exit 1; \
	  echo "creating $(VENV) with $$python"; \
	  "$$python" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

demo: setup
	$(PY) manage.py up --demo

up: setup
	$(PY) manage.py up

test: setup
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	  SWITCHBOARD_REDIS_NAMESPACE=switchboard-test $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) bench/run.py

# An empty argument means "the default": the newest run for B, the one before B for A.
bench-compare: setup
	$(PY) bench/compare.py "$(A)" "$(B)"

# Browser tests save screenshots in an ignored folder (SWITCHBOARD_SCREENSHOTS_DIR), so
# `make test` leaves the tree clean. This runs the tests that take the README's images and
# copies those into docs/screenshots/, to be committed by hand.
SCREENSHOTS_DIR := $(abspath $(or $(SWITCHBOARD_SCREENSHOTS_DIR),artifacts/screenshots))
README_SCREENSHOTS := versions.png rollback-dialog.png versions-failed.png
SCREENSHOT_TESTS := \
	tests/browser/test_versions_page.py::test_a_deployer_rolls_back_with_each_strategy_and_sees_the_current_badge_move \
	tests/browser/test_versions_page.py::test_an_admin_sees_every_status_and_only_the_actions_each_allows \
	tests/browser/test_versions_page.py::test_a_failed_deploy_shows_its_error

screenshots: setup
	@# Removed first, so an image no test took any more is missed instead of copied stale.
	rm -f $(addprefix $(SCREENSHOTS_DIR)/,$(README_SCREENSHOTS))
	SWITCHBOARD_SCREENSHOTS_DIR=$(SCREENSHOTS_DIR) \
	  $(MAKE) --no-print-directory test PYTEST_ARGS="$(SCREENSHOT_TESTS) -q"
	cp $(addprefix $(SCREENSHOTS_DIR)/,$(README_SCREENSHOTS)) docs/screenshots/
	@git status --short docs/screenshots/

clean:
	rm -rf $(VENV) var/collected-static .pytest_cache .ruff_cache
