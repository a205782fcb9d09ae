# taskservice — `make run` to try it, `make test` to check it. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
DATA_DIR ?= var

.PHONY: run test lint install services system-packages bench bench-stop bench-ingest bench-chaos etl-demo clean help

help:
	@echo "make run    API, console, worker, relay, flow engine, scheduler and queue consumer on the embedded default (SQLite, filesystem broker) on port $(PORT)"
	@echo "make test   install what is missing, make sure Postgres and RabbitMQ are up, run the whole suite"
	@echo "make lint   ruff and mypy (part of make test)"
	@echo "make etl-demo  the Kafka ETL scenario end to end (starts its own Tansu Kafka broker unless TASKSERVICE_KAFKA_BOOTSTRAP is set)"
	@echo "make media-demo  drop a video into a bucket: storage trigger → multi-format transcode → outputs (embedded default)"
	@echo "make bench-events  trigger → Running latency (timer, storage) and queue-trigger messages/s vs bare kombu"
	@echo "make bench-chaos  worker kills, Postgres and RabbitMQ restarts under load; re-rings of a queued backlog (restarts the machine's Postgres and RabbitMQ)"
	@echo "make bench-flows  flow orchestration overhead: a 1,000-item foreach and a 50-step chain vs plain invocations"
	@echo "make bench-stop  stop latency (taskservice stop vs Celery revoke) on Postgres + RabbitMQ"
	@echo "make bench-console  the console's invocations page on a 1,000,000-invocation Postgres ledger (p50/p95 per page)"
	@echo "make bench  benchmarks on Postgres + RabbitMQ (see bench/README.md); BENCH_ARGS=--quick for a short run"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg setup.py pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/taskservice dev --port $(PORT) --data-dir $(DATA_DIR)

services:
	@scripts/ensure-services.sh

system-packages:
	@scripts/ensure-system-packages.sh

lint: $(STAMP)
	$(BIN)/ruff check taskservice workers tests migrations
	$(BIN)/mypy taskservice workers

test: $(STAMP) services system-packages lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) services
	@command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python bench/bench_core.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_relay.py $(BENCH_ARGS)

etl-demo: $(STAMP)
	$(BIN)/python scripts/etl_demo.py

.PHONY: media-demo bench-events bench-flows
media-demo: $(STAMP) system-packages
	$(BIN)/python scripts/media_demo.py

bench-events: $(STAMP) services
	$(BIN)/python bench/bench_events.py $(BENCH_ARGS)

bench-flows: $(STAMP) services
	$(BIN)/python bench/bench_flows.py $(BENCH_ARGS)

bench-stop: $(STAMP) services
	$(BIN)/python bench/bench_stop.py $(BENCH_ARGS)

bench-chaos: $(STAMP) services
	$(BIN)/python bench/bench_chaos.py $(BENCH_ARGS)

.PHONY: bench-console
bench-console: $(STAMP) services
	$(BIN)/python bench/bench_console.py $(BENCH_ARGS)

bench-ingest: $(STAMP) services
	$(BIN)/python bench/bench_ingest.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache *.egg-info

.PHONY: bench-media
bench-media: $(STAMP) services system-packages
	$(BIN)/python bench/bench_media.py $(BENCH_ARGS)
