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

.PHONY: help run test test-browser migrate demo clean stack

help:
	@echo "make run    install into $(VENV), migrate, load demo data, serve http://$(HOST):$(PORT) with the gateway (daphne)"
	@echo "make test   install test dependencies into $(VENV), check the import floors and the types, run"
	@echo "            the suite on PostgreSQL and Redis"
	@echo "            (DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL); PYTEST_ARGS=... for pytest)"
	@echo "make test-browser   the browser tests (Chromium via Playwright), a run of their own"
	@echo "make stack  the production-like stack (Procfile.stack): 2 daphne gateways behind HAProxy on"
	@echo "            http://127.0.0.1:8080, Celery worker and beat, PostgreSQL ($(STACK_DATABASE_URL)), 2 Redis"
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
		$(BIN)/parley-gateway -b $(HOST) -p $(PORT) chatproject.asgi:application; \
	else \
		exec $(BIN)/parley-gateway -b $(HOST) -p $(PORT) chatproject.asgi:application; \
	fi

# The floors (import-linter: imports run downward, no circles) and the types (mypy), then the suite.
test: $(VENV)/.installed-test
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' $(BIN)/pytest $(PYTEST_ARGS)

# Chromium through Playwright against a real daphne (Debian's chromium package, not a download).
test-browser: $(VENV)/.installed-test
	DATABASE_URL='$(TEST_DATABASE_URL)' REDIS_URL='$(TEST_REDIS_URL)' $(BIN)/pytest -m browser tests/browser $(PYTEST_ARGS)

# The production-like stack on one machine (Procfile.stack, stack.env, docs/operations.md):
# its own database, created if missing, migrated and seeded, then honcho runs every process
# until Ctrl-C. `make stack DATABASE_URL=...` names another database; a DATABASE_URL that is
# only exported (say, for make test) is not used, since this target seeds demo users into it.
STACK_DATABASE_URL := $(if $(filter command line,$(origin DATABASE_URL)),$(DATABASE_URL),$(shell sed -n 's/^DATABASE_URL=//p' stack.env))
STACK_METRICS_DIR  := $(shell sed -n 's/^PROMETHEUS_MULTIPROC_DIR=//p' stack.env)
STACK_DATABASE_ENV := $(patsubst %/,%,$(dir $(STACK_METRICS_DIR)))/database.env
# Setup runs before the stack's Redis servers are up: on the embedded channel layer and eager Celery.
STACK_SETUP := env -u REDIS_URL -u CHANNEL_REDIS_URLS -u CELERY_BROKER_URL -u PROMETHEUS_MULTIPROC_DIR \
	DATABASE_URL='$(STACK_DATABASE_URL)'

define STACK_CREATEDB
import sys, psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
url = sys.argv[1]
name = conninfo_to_dict(url)["dbname"]
try:
    admin = psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=5)
except psycopg.OperationalError as error:
    sys.exit(f"make stack: PostgreSQL does not answer for {url}: {error}")
with admin:
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"Created the database {name}")
endef
export STACK_CREATEDB

$(VENV)/.installed-stack: pyproject.toml | $(BIN)/python
	@echo "Installing Parley and the stack's dependencies (honcho) into $(VENV)"
	$(BIN)/pip install --quiet -e '.[stack]'
	@touch $@ $(VENV)/.installed

stack: $(VENV)/.installed-stack
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || \
		{ echo "make stack needs redis-server and redis-cli (Debian: apt-get install redis-server)" >&2; exit 1; }
	@command -v haproxy >/dev/null || \
		{ echo "make stack needs HAProxy, its load balancer (Debian: apt-get install haproxy)" >&2; exit 1; }
	@$(BIN)/python -c "$$STACK_CREATEDB" '$(STACK_DATABASE_URL)'
	$(STACK_SETUP) $(BIN)/python manage.py migrate --noinput
	$(STACK_SETUP) $(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(STACK_SETUP) $(BIN)/python manage.py seed_demo
	@rm -rf '$(STACK_METRICS_DIR)' && mkdir -p '$(STACK_METRICS_DIR)'
	@printf 'DATABASE_URL=%s\n' '$(STACK_DATABASE_URL)' > '$(STACK_DATABASE_ENV)'
	@echo "Parley stack on http://127.0.0.1:8080/ (gateways :8001 :8002, Redis :6391 :6392); Ctrl-C stops it"
	exec $(BIN)/honcho -f Procfile.stack -e 'stack.env,$(STACK_DATABASE_ENV)' start

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 .pytest_cache .hypothesis .mypy_cache .import_linter_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
