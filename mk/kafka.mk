# Makefile fragment: a real single-node Kafka broker (KRaft) for dev and CI, no Docker.
# Include from the top-level Makefile with:   include mk/kafka.mk
# Knobs (environment or make variables): SPENDWATCH_KAFKA_HOME, KAFKA_DATA_DIR,
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093). See scripts/kafka/kafka.sh.

KAFKA_MK_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
KAFKA_SH ?= bash $(abspath $(KAFKA_MK_DIR)../scripts/kafka/kafka.sh)

.PHONY: kafka-install kafka-up kafka-down kafka-status kafka-reset kafka-log

kafka-install: ## Resolve the Kafka broker jars via Maven (once; cached)
	$(KAFKA_SH) install

kafka-up: ## Start the local Kafka broker on 127.0.0.1:$${KAFKA_PORT:-9092} and wait until ready
	$(KAFKA_SH) up

kafka-down: ## Stop the local Kafka broker started by kafka-up
	$(KAFKA_SH) down

kafka-status: ## Show whether the local Kafka broker is running
	@$(KAFKA_SH) status || true

kafka-reset: ## Stop the broker and delete its data dir (topics, offsets, logs)
	$(KAFKA_SH) reset

kafka-log: ## Show the last 50 lines of the broker log
	@$(KAFKA_SH) log 50
