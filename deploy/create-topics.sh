#!/usr/bin/env bash
# Create spendwatch's topics on the broker (idempotent: existing topics are kept).
# Run by the `create-topics` service of docker-compose.yml in the apache/kafka image, after
# the broker is healthy; the worker starts once this has exited 0.
#
# Names and sizes are the TopicSettings defaults (stream/settings/__init__.py); the same
# SPENDWATCH_KAFKA__TOPICS__* variables the worker reads override them here.
# Knobs: BOOTSTRAP_SERVERS (kafka:9092), TOOLS_DIR (/opt/kafka/bin).
set -euo pipefail

bootstrap="${BOOTSTRAP_SERVERS:-kafka:9092}"
tools="${TOOLS_DIR:-/opt/kafka/bin}"
partitions="${SPENDWATCH_KAFKA__TOPICS__PARTITIONS:-4}"
replication="${SPENDWATCH_KAFKA__TOPICS__REPLICATION_FACTOR:-1}"

usage_topic="${SPENDWATCH_KAFKA__TOPICS__USAGE:-spendwatch.usage}"
errors_topic="${SPENDWATCH_KAFKA__TOPICS__ERRORS:-spendwatch.errors}"
customers_topic="${SPENDWATCH_KAFKA__TOPICS__CUSTOMERS:-spendwatch.customers}"
alerts_topic="${SPENDWATCH_KAFKA__TOPICS__ALERTS:-spendwatch.alerts}"
deadletter_topic="${SPENDWATCH_KAFKA__TOPICS__DEADLETTER:-spendwatch.deadletter}"
silences_topic="${SPENDWATCH_KAFKA__TOPICS__SILENCES:-spendwatch.silences}"

create() {  # create TOPIC [--config key=value ...]
    local topic="$1"
    shift
    "$tools/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor "$replication" "$@"
}

create "$usage_topic"
create "$errors_topic"
# Customer records: the latest record per key (customer_id) is kept for ever.
create "$customers_topic" --config cleanup.policy=compact
create "$alerts_topic"
create "$deadletter_topic"
# Silences: the latest record per silence id (an expired silence stays, ended).
create "$silences_topic" --config cleanup.policy=compact

# --if-not-exists leaves an existing topic as it is: make sure the compacted topics are
# compacted even if they were auto-created (delete policy) before this ran.
for topic in "$customers_topic" "$silences_topic"; do
    "$tools/kafka-configs.sh" --bootstrap-server "$bootstrap" --alter --entity-type topics \
        --entity-name "$topic" --add-config cleanup.policy=compact
done

echo "spendwatch topics ready on $bootstrap: $usage_topic $errors_topic $customers_topic" \
    "$alerts_topic $deadletter_topic $silences_topic"
