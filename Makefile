# spendwatch: the two commands are `make demo` and `make test`; both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_DIR ?= out/demo

.PHONY: install demo test dev lint bench bench-kafka bench-notify clean fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## demo: simulate two days with incidents, replay them, print the alerts (no broker needed)
demo: install
	$(VENV)/bin/spendwatch simulate $(DEMO_DIR) --days 2 --customers 20 --seed 7 --incidents
	$(VENV)/bin/spendwatch replay $(DEMO_DIR)/usage.jsonl.gz --errors $(DEMO_DIR)/errors.jsonl.gz \
		--customers $(DEMO_DIR)/customers.jsonl

## test: the whole suite (unit, doctests, end-to-end replay), in two processes: the tests
## on the broker in one of them, one after the other (tests/integration/conftest.py)
test: install chromium promtool
	$(PY) -m pytest -q -n 2 --dist loadgroup

## dev: the local broker (make kafka-up) and a worker on it, in the foreground
dev: install kafka-up
	$(VENV)/bin/spendwatch worker

lint: install
	$(VENV)/bin/ruff check stream detectors tests bench
	$(VENV)/bin/mypy

## bench: replay throughput and state memory per key (writes bench/results/*.json)
bench: install
	$(PY) bench/replay.py

## bench-kafka: the worker on the local broker vs a plain consumer, and spike alert latency
bench-kafka: install kafka-up
	$(PY) bench/kafka_e2e.py --bootstrap 127.0.0.1:$(or $(KAFKA_PORT),9092)

## bench-notify: notifications/s and alerts-topic -> receiver latency through a worker
bench-notify: install kafka-up
	$(PY) bench/notify.py --bootstrap 127.0.0.1:$(or $(KAFKA_PORT),9092)

.PHONY: bench-recovery

## bench-recovery: worker state recovery of 100k and 1M customer records from the changelog
## (starts its own broker on 127.0.0.1:39792 unless one answers there; ARGS='--keys 100000')
bench-recovery: install
	nice $(PY) bench/recovery.py $(ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache

include mk/kafka.mk
include mk/chromium.mk
include mk/prometheus.mk
include mk/fuzz.mk
include mk/bench-detection.mk
include mk/bench-columnar.mk
include mk/mutation.mk
