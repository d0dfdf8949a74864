# Two commands do all set-up on a fresh machine: `make up` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint format bench clean redfish-validate backup restore migration-compat

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the control plane on the embedded default (SQLite + filesystem broker) with a demo fleet.
up: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py load_demo_fleet
	$(BIN)/python manage.py runfactory

## Run the whole suite against real PostgreSQL and Redis (127.0.0.1 by default); the preflight
## installs Debian's chromium, prometheus (promtool) and nginx when they are missing and we are root.
test: $(STAMP)
	@$(BIN)/python -m tests.preflight
	$(BIN)/pytest $(PYTEST_ARGS)

## ruff, the layer and purity contracts (import-linter, see pyproject.toml) and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## DMTF's Redfish Service and Protocol Validators against a simulated BMC (both flavours), PDU
## and CDU (offline, ../shared/redfish; the protocol validator over HTTPS with the site CA).
redfish-validate: $(STAMP)
	$(BIN)/python -m tests.redfish_validate

## Back up the configured database (DATABASE_URL; default the embedded one) into
## var/backups/<time>, or BACKUP=dir; `make restore BACKUP=dir` restores into an empty database
## and proves it against the backup's manifest (docs/OPERATIONS.md).
backup: $(STAMP)
	$(BIN)/python manage.py backup $(BACKUP)

restore: $(STAMP)
	@test -n "$(BACKUP)" || (echo "usage: make restore BACKUP=var/backups/<time>" && exit 2)
	$(BIN)/python manage.py restore $(BACKUP)

## The previous version (parent of the newest migration, or COMPAT_BASE) writes and verifies on
## the schema this version migrates: what a rolling upgrade needs (PostgreSQL, DATABASE_URL).
migration-compat: $(STAMP)
	$(BIN)/python -m tests.migration_compat

bench: $(STAMP)
	@$(BIN)/python -m tests.preflight --services-only
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
