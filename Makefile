# Switchyard — see README.md. `make run` and `make test` are the two entry points.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
HOST ?= 127.0.0.1
PORT ?= 8000
# These machines export PYTHONDONTWRITEBYTECODE=1, so every Python process (each test's
# daphne, worker and manage.py) compiled every module from source again: 3-8 s a process.
# Bytecode caches go to __pycache__/, which git ignores.
unexport PYTHONDONTWRITEBYTECODE
# Tests talk to the real services; .ci/run starts them if they are down.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchyard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help setup run dev worker beat migrate seed test test-fast check bench demo-video lint fmt shell logs clean

help: ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.13.8

$(VENV)/.installed: $(PY) requirements.lock pyproject.toml
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.installed ## Create the virtualenv and install the locked dependencies

migrate: setup ## Apply database migrations
	$(PY) manage.py migrate --noinput

seed: migrate ## Create the demo provider, agent, admin user and an API token
	$(PY) manage.py seed_demo

run: setup ## Serve on http://127.0.0.1:8000 (embedded defaults; Celery too when REDIS_URL is set)
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py seed_demo
	@bash scripts/run.sh $(HOST) $(PORT)

dev: setup ## daphne with autoreload on :8000; with REDIS_URL also a worker that restarts on change
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py seed_demo
	@if [ -n "$${REDIS_URL:-}" ]; then \
	  trap 'kill 0' INT TERM EXIT; \
	  $(PY) manage.py devworker & \
	  $(PY) manage.py runserver $(HOST):$(PORT); \
	else $(PY) manage.py runserver $(HOST):$(PORT); fi

worker: setup ## Start a Celery worker (needs REDIS_URL)
	$(PY) -m celery -A config worker -l info --pool threads --concurrency 4 \
	  -Q "$${CELERY_QUEUE:-switchyard}.control,$${CELERY_QUEUE:-switchyard}"

beat: setup ## Start Celery beat (periodic tasks, needs REDIS_URL)
	$(PY) -m celery -A config beat -l info

test: setup ## The whole suite with coverage (fails under the threshold in pyproject.toml)
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

test-fast: setup ## The suite without end-to-end process tests
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

check: lint ## Lint, types and the fast tests (what to run before a commit)
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(PY) -m pytest -m "not e2e" -x -q $(PYTEST_ARGS)

bench: setup ## Benchmarks in tests/perf (prints tables, writes var/bench/*.json)
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(PY) tests/perf/run_all.py

demo-video: setup ## Record docs/media/demo-*.webm: three console scenarios in headless chromium (ffmpeg)
	$(PY) scripts/demo_video.py

lint: setup ## Ruff lint and format check, mypy (config in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	env -u DATABASE_URL -u REDIS_URL $(VENV)/bin/mypy

fmt: setup ## Ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

logs: ## Follow the systemd units' JSON logs; RUN=<run id> or REQ=<request id> keeps one trail
	journalctl -f -o cat -u 'switchyard-*' | grep --line-buffered -F -- "$${RUN:-$${REQ:-}}"

shell: setup ## Django shell
	$(PY) manage.py shell

clean: ## Remove the virtualenv, var/ (database, keys) and caches
	rm -rf $(VENV) var .pytest_cache .ruff_cache .coverage .coverage.* htmlcov staticfiles
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
