# spreadedge: every target has a one-line "## comment"; `make` (or `make help`) lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

BIN := .venv/bin
# why one more than the CPUs: a test keeps its pytest process and its PostgreSQL backend busy in
# turn, and many wait (a server stopping or frozen, a timeout, an outage): on 2 cores, 2 workers
# (each with its own cluster) took 12.7 min, 3 took 10.5 and still left the CPUs 13 % idle
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
SPREADEDGE := $(BIN)/spreadedge

.PHONY: help bootstrap run test soak migrate bench bench-instructions bench-backup lint format psql pgcli db-stop clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

bootstrap: ## Install PostgreSQL 15, extensions and .venv (as root on Debian 12; idempotent)
	@bash scripts/bootstrap.sh

run: bootstrap ## Start the embedded cluster, migrate, load demo data, show PnL, serve the REST API
# why not with DATABASE_URL: every command below then uses that database, and db start created and
# started an embedded cluster under .spreadedge/ that nothing used
	@if [ -z "$${DATABASE_URL:-}" ]; then $(SPREADEDGE) db start; fi
	$(SPREADEDGE) migrate
	$(SPREADEDGE) demo
	$(SPREADEDGE) pnl
	$(SPREADEDGE) serve

test: bootstrap ## Run the tests, one worker more than the CPUs (options: PYTEST_ARGS=..., TEST_WORKERS=0 for one process)
# why the timeout: a test that hangs (a cursor that leads back, a wait that never ends) fails with
# its stack after 10 minutes, its fixtures stopping their servers, instead of holding the run
# until CI kills it with nothing to show; the longest test takes under a minute
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --timeout 600 --timeout-method signal $(PYTEST_ARGS)

soak: bootstrap ## Run the reliability suite's long versions and print its report (SOAK_ARGS=... for pytest)
	SPREADEDGE_SOAK=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m reliability $(SOAK_ARGS)

migrate: bootstrap ## Apply pending migrations and re-apply functions/
	$(SPREADEDGE) migrate

bench: bootstrap ## Run the benchmarks against PostgreSQL baselines (options: BENCH_ARGS=--quick)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-instructions: bootstrap ## Count instructions per fill, placement, PnL summary and orders page with callgrind (audit and risk limits on and off)
	command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
	$(BIN)/python -m bench.instructions $(BENCH_INSTRUCTIONS_ARGS)

bench-backup: bootstrap ## Time pgBackRest backup and restore of a generated 2 GB database per compression type (BENCH_BACKUP_ARGS=--size-gb 0.5)
	$(BIN)/python -m bench.backup $(BENCH_BACKUP_ARGS)

lint: bootstrap ## Check Python with ruff (lint and format)
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench

format: bootstrap ## Format Python with ruff
	$(BIN)/ruff format python tests bench

psql: bootstrap ## Open psql on the database
	$(SPREADEDGE) psql

pgcli: bootstrap ## Open pgcli on the database
	$(SPREADEDGE) pgcli

db-stop: ## Stop the embedded cluster
	@if [ -x $(SPREADEDGE) ]; then $(SPREADEDGE) db stop; fi

clean: ## Stop and delete the embedded cluster, delete .venv
	@if [ -x $(SPREADEDGE) ]; then $(SPREADEDGE) db destroy --yes; fi
	rm -rf .spreadedge .venv
