#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft: combined broker+controller) for
# spendwatch development and CI, without Docker and without a tarball download: the
# jars come from Maven (scripts/kafka/pom.xml), the JVM is the machine's `java` (17+).
#
# Usage: scripts/kafka/kafka.sh <command> [args]
#   install          resolve the broker jars into $SPENDWATCH_KAFKA_HOME/libs (once per pom)
#   up               install if needed, format storage if needed, start, wait until ready
#   down             stop the broker whose pid is in the pid file (TERM, then KILL)
#   status           print state; exit 0 if running, 3 if not
#   reset            down + delete the data dir (topics, offsets, logs)
#   tool CLASS ARGS  run a Kafka CLI class with the same classpath, e.g.
#                    tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   log [N]          print the last N (default 50) lines of the broker log
#
# Environment:
#   SPENDWATCH_KAFKA_HOME   jar cache / install dir   (default: $HOME/.cache/spendwatch/kafka)
#   KAFKA_DATA_DIR          instance dir: config, pid, logs, partitions (default: $SPENDWATCH_KAFKA_HOME/data)
#   KAFKA_PORT              client listener port       (default: 9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port      (default: 9093)
#   KAFKA_HEAP_OPTS         JVM heap flags             (default: -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT     seconds to wait for "up"   (default: 90)
#   KAFKA_STOP_TIMEOUT      seconds to wait on SIGTERM before SIGKILL (default: 30)
#   MVN                     maven executable           (default: mvn)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_HOME="${SPENDWATCH_KAFKA_HOME:-$HOME/.cache/spendwatch/kafka}"
LIBS="$KAFKA_HOME/libs"
STAMP="$LIBS/.installed-pom.sha256"
DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_HOME/data}"
DATA_DIR="${DATA_DIR%/}"
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST=127.0.0.1
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
MVN="${MVN:-mvn}"

LOG_DIRS="$DATA_DIR/kraft-logs"    # partitions + KRaft metadata log (log.dirs)
APP_LOG_DIR="$DATA_DIR/logs"       # broker's own log4j output
CONFIG="$DATA_DIR/server.properties"
LOG4J_CONFIG="$DATA_DIR/log4j2.properties"
TOOLS_LOG4J_CONFIG="$DATA_DIR/tools-log4j2.properties"
PID_FILE="$DATA_DIR/kafka.pid"
SERVER_LOG="$APP_LOG_DIR/server.log"
STDOUT_LOG="$APP_LOG_DIR/kafka.out"

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- install

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

is_installed() {
    [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(pom_hash)" ]] \
        && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null
}

check_java() {
    command -v java >/dev/null || die "java not found on PATH (JDK 17+ required)"
    local v
    v="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
    [[ -n "$v" && "${v%%.*}" -ge 17 ]] || die "Kafka 4.x needs Java 17+, found java.specification.version=$v"
}

cmd_install() {
    if is_installed; then
        say "already installed in $LIBS ($(ls "$LIBS"/*.jar | wc -l) jars)"
        return 0
    fi
    command -v "$MVN" >/dev/null || die "maven ($MVN) not found on PATH"
    # Serialize concurrent installs (fd 9; closed for the broker, see cmd_up).
    mkdir -p "$KAFKA_HOME"
    exec 9>"$KAFKA_HOME/.install.lock"
    flock -w 600 9 || die "timed out waiting for another install ($KAFKA_HOME/.install.lock)"
    if is_installed; then
        flock -u 9
        say "installed by a concurrent run in $LIBS"
        return 0
    fi
    local t0 tmp
    t0="$(now)"
    say "resolving Kafka jars with maven into $LIBS ..."
    mkdir -p "$KAFKA_HOME"
    tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
    if ! "$MVN" -B -q --no-transfer-progress -Dstyle.color=never -f "$POM" \
            dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
        cat "$tmp.mvn.log" >&2
        rm -rf "$tmp" "$tmp.mvn.log"
        die "maven could not resolve the Kafka jars"
    fi
    rm -f "$tmp.mvn.log"
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "kafka_2.13 jar missing after maven run"; }
    pom_hash >"$tmp/.installed-pom.sha256"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    flock -u 9
    say "installed $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(elapsed "$t0")s"
}

# ---------------------------------------------------------------- process helpers

read_pid() { [[ -f "$PID_FILE" ]] && tr -dc '0-9' <"$PID_FILE" || true; }

# True only if PID is alive AND is our broker (kafka.Kafka with our config): guards
# against a stale pid file whose number was reused by an unrelated process.
is_our_broker() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"kafka.Kafka"* && "$cmdline" == *"$CONFIG"* ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

started_in_log() { grep -qs "Kafka Server started" "$SERVER_LOG" "$STDOUT_LOG"; }

show_log_tail() {
    local n="${1:-50}" f
    for f in "$SERVER_LOG" "$STDOUT_LOG"; do
        [[ -s "$f" ]] || continue
        echo "----- last $n lines of $f -----" >&2
        tail -n "$n" "$f" >&2
    done
}

classpath() { printf '%s/*' "$LIBS"; }

# ---------------------------------------------------------------- config

write_configs() {
    mkdir -p "$DATA_DIR" "$LOG_DIRS" "$APP_LOG_DIR"
    cat >"$CONFIG" <<EOF
# Written by scripts/kafka/kafka.sh on every 'up' -- edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$LOG_DIRS

num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
# By size, not age: simulated and recorded traffic carries past event times as record
# timestamps, which age-based retention would delete at once.
log.retention.ms=-1
log.retention.bytes=1073741824
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
EOF
    cat >"$LOG4J_CONFIG" <<'EOF'
# Broker logging (log4j2 via log4j-slf4j-impl). kafka.logs.dir is set by kafka.sh.
status = warn
name = spendwatch-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
    write_tools_log4j
}

write_tools_log4j() {
    mkdir -p "$DATA_DIR"
    cat >"$TOOLS_LOG4J_CONFIG" <<'EOF'
# CLI tools: warnings only, to stderr.
status = warn
name = spendwatch-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

is_formatted() { [[ -f "$LOG_DIRS/meta.properties" ]]; }

format_storage() {
    local cluster_id
    cluster_id="$(java -cp "$(classpath)" -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
        kafka.tools.StorageTool random-uuid)"
    say "formatting $LOG_DIRS (cluster id $cluster_id)"
    java -cp "$(classpath)" -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" --ignore-formatted >/dev/null
    is_formatted || die "storage format did not create $LOG_DIRS/meta.properties"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local t_total pid
    t_total="$(now)"
    pid="$(read_pid)"
    if is_our_broker "$pid"; then
        if port_open "$PORT"; then
            say "already running (pid $pid) on $HOST:$PORT"
            return 0
        fi
        say "broker pid $pid is alive but $HOST:$PORT does not answer yet; waiting"
    else
        [[ -f "$PID_FILE" ]] && { say "removing stale pid file ($pid)"; rm -f "$PID_FILE"; }
        if port_open "$PORT"; then
            die "$HOST:$PORT is already in use by a process not started by this script (pid file: $PID_FILE)"
        fi
        if port_open "$CPORT"; then
            die "controller port $HOST:$CPORT is already in use (set KAFKA_CONTROLLER_PORT)"
        fi
        check_java
        cmd_install
        write_configs
        is_formatted || format_storage

        local t_start
        t_start="$(now)"
        # Keep one previous run's logs; start fresh so failure tails show only this run.
        local f
        for f in "$SERVER_LOG" "$STDOUT_LOG"; do
            [[ -f "$f" ]] && mv -f "$f" "$f.prev"
        done
        rm -f "$SERVER_LOG".[0-9]*
        : >"$STDOUT_LOG"
        # nohup + background: the java process outlives this script; $! is the java pid
        # because nohup execs it. stdin from /dev/null so callers' pipes are not held open.
        KAFKA_LOG_DIR="$APP_LOG_DIR" nohup java \
            -server $HEAP_OPTS \
            -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
            -XX:MaxDirectMemorySize=256m \
            -Djava.awt.headless=true \
            -Dkafka.logs.dir="$APP_LOG_DIR" \
            -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
            -cp "$(classpath)" \
            kafka.Kafka "$CONFIG" \
            </dev/null >>"$STDOUT_LOG" 2>&1 8>&- 9>&- &
        pid=$!
        echo "$pid" >"$PID_FILE"
        say "started broker pid $pid, waiting for $HOST:$PORT (timeout ${START_TIMEOUT}s)"
        t_total="$t_start"
    fi

    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail 50
            rm -f "$PID_FILE"
            die "broker process $pid exited during startup"
        fi
        if port_open "$PORT" && started_in_log; then
            break
        fi
        if (( $(date +%s) >= deadline )); then
            show_log_tail 50
            say "broker not ready after ${START_TIMEOUT}s; stopping it (raise KAFKA_START_TIMEOUT on slow machines)" >&2
            cmd_down >&2
            die "broker not ready on $HOST:$PORT after ${START_TIMEOUT}s"
        fi
        sleep 0.25
    done
    say "ready: bootstrap.servers=$HOST:$PORT (pid $pid, started in $(elapsed "$t_total")s, log $SERVER_LOG)"
}

cmd_down() {
    local pid
    pid="$(read_pid)"
    if [[ -z "$pid" ]]; then
        say "not running (no pid file at $PID_FILE)"
        return 0
    fi
    if ! is_our_broker "$pid"; then
        say "pid $pid from $PID_FILE is not a running broker of ours; removing stale pid file"
        rm -f "$PID_FILE"
        return 0
    fi
    local t0 deadline
    t0="$(now)"
    say "stopping broker pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + STOP_TIMEOUT ))
    while kill -0 "$pid" 2>/dev/null; do
        if (( $(date +%s) >= deadline )); then
            say "still alive after ${STOP_TIMEOUT}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            # brief bounded wait for the kernel to reap it
            local i
            for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
    say "stopped in $(elapsed "$t0")s"
}

cmd_status() {
    local pid rss
    pid="$(read_pid)"
    if is_our_broker "$pid"; then
        rss="$(awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo '?')"
        if port_open "$PORT"; then
            say "running: pid $pid, $HOST:$PORT answers, RSS $rss, data $DATA_DIR"
        else
            say "starting or unhealthy: pid $pid alive but $HOST:$PORT does not answer"
        fi
        return 0
    fi
    if is_installed; then local inst="installed"; else local inst="not installed"; fi
    say "not running ($inst; libs $LIBS; data $DATA_DIR)"
    return 3
}

cmd_reset() {
    cmd_down
    case "$DATA_DIR" in
        ""|"/"|"$HOME"|"$KAFKA_HOME") die "refusing to delete data dir '$DATA_DIR'";;
    esac
    if [[ -d "$DATA_DIR" ]]; then
        rm -rf -- "$DATA_DIR"
        say "deleted $DATA_DIR"
    else
        say "nothing to delete ($DATA_DIR absent)"
    fi
}

cmd_tool() {
    [[ $# -ge 1 ]] || die "usage: $0 tool CLASS [ARGS...]"
    is_installed || cmd_install >&2
    [[ -f "$TOOLS_LOG4J_CONFIG" ]] || write_tools_log4j
    exec java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG" \
        -cp "$(classpath)" "$@"
}

cmd_log() { show_log_tail "${1:-50}" 2>&1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# up/down/reset of one instance are serialized on a lock beside its data dir (fd 8),
# so parallel test runners calling `up` start one broker, not two.
lock_instance() {
    mkdir -p "$(dirname "$DATA_DIR")"
    exec 8>"$DATA_DIR.lock"
    flock -w $(( START_TIMEOUT + STOP_TIMEOUT + 60 )) 8 || die "timed out waiting for $DATA_DIR.lock"
}

case "${1:-}" in
    install) shift; cmd_install "$@";;
    up)      shift; lock_instance; cmd_up "$@";;
    down)    shift; lock_instance; cmd_down "$@";;
    status)  shift; cmd_status "$@";;
    reset)   shift; lock_instance; cmd_reset "$@";;
    tool)    shift; cmd_tool "$@";;
    log)     shift; cmd_log "$@";;
    -h|--help|help) usage;;
    *) usage >&2; exit 2;;
esac
