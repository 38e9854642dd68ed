# Parley's two commands: `make run` and `make test` (see README.md).
# Needs only GNU make and Python 3.11; everything else is installed into .venv.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

# `make test` needs real PostgreSQL and Redis. The environment (or `make test DATABASE_URL=...`)
# wins over these defaults; `make run` does not use them and stays on the embedded defaults
# unless DATABASE_URL / REDIS_URL are set in the environment.
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/parley)
TEST_REDIS_URL    := $(or $(REDIS_URL),redis://127.0.0.1:6379/0)
PYTEST_ARGS ?=

.PHONY: help run test test-browser migrate demo clean

help:
	@echo "make run    install into $(VENV), migrate, load demo data, serve http://$(HOST):$(PORT) with daphne"
	@echo "make test   install test dependencies into $(VENV), run the suite on PostgreSQL and Redis"
	@echo "            (DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL); PYTEST_ARGS=... for pytest)"
	@echo "make test-browser   the browser tests (Chromium via Playwright), a run of their own"
	@echo "make migrate | make demo | make clean (removes $(VENV), collected static files and the SQLite db)"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found (looked for python3.11 and python3)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Parley needs Python 3.11; $(PYTHON) is $$($(PYTHON) --version). Try: make PYTHON=/path/to/python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing Parley into $(VENV) (the first time takes a minute)"
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "Installing Parley and its test dependencies into $(VENV)"
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

migrate: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo

# DEBUG stays off (as in production): WhiteNoise serves the collected static files, so the
# admin and API docs are styled without Django's debug static view. DJANGO_DEBUG=1 turns it on.
run: demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "Parley on http://$(HOST):$(PORT)/  (admin: /admin/, API docs: /api/v1/docs, health: /healthz)"
	@echo "Log in as alice, bob, carol or dave (password parley-demo), or admin (password parley-admin)"
	@# With a broker (REDIS_URL or CELERY_BROKER_URL) tasks are queued, so a worker (every queue)
	@# and beat run beside daphne and stop with it; on the embedded defaults Celery is eager.
	@if [ -n "$$REDIS_URL$$CELERY_BROKER_URL" ]; then \
		echo "Starting a Celery worker and beat (broker configured)"; \
		$(BIN)/celery -A chatproject worker -l warning & worker=$$!; \
		$(BIN)/celery -A chatproject beat -l warning --schedule /tmp/parley-celerybeat-schedule & beat=$$!; \
		trap 'kill $$worker $$beat 2>/dev/null' EXIT INT TERM; \
		$(BIN)/daphne -b $(HOST) -p $(PORT) chatproject.asgi:application; \
	else \
		exec $(BIN)/daphne -b $(HOST) -p $(PORT) chatproject.asgi:application; \
	fi

test: $(VENV)/.installed-test
	DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' $(BIN)/pytest $(PYTEST_ARGS)

# Chromium through Playwright against a real daphne (Debian's chromium package, not a download).
test-browser: $(VENV)/.installed-test
	DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' $(BIN)/pytest -m browser tests/browser $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
