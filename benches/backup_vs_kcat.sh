#!/usr/bin/env bash
# Issue #6: backup and restore throughput on loopback, side by side with kcat, same broker, one run.
#
#   benches/backup_vs_kcat.sh            # 1,000,000 records x 1 KiB values, 6 partitions, 3 rounds
#   RECORDS=200000 REPEATS=1 benches/backup_vs_kcat.sh   # a quick look
#
# What it does:
#   1. Installs what is missing: kcat (Debian package, ~10 s) and, in <repo>/.stack/noida-venv,
#      noida-db 0.2.3 (the broker; Debian's kcat 1.7.1 / librdkafka 2.0.2 works against it, not
#      against tansu) and confluent-kafka (its bundled librdkafka creates and deletes topics and
#      produces to tansu; ~10 s). Builds target/release/autopilot (nice 19; minutes when cold).
#   2. Starts noida-db on a free 127.0.0.1 port with a data dir under $WORK; stops it on exit.
#   3. Writes RECORDS keyed records (key "key-%09d", a JSON-ish value of VALUE_BYTES bytes) to a
#      file and produces them with `kcat -P` into a topic of PARTITIONS partitions.
#   4. REPEATS rounds, each: (a) `kcat -C` of the whole topic to a file ('%k\t%s\n'),
#      (b) `autopilot backup create` with --compression none, then lz4, each followed by
#      `backup verify` (its own row), (c) `autopilot backup restore` of the lz4 backup into a new
#      topic, (d) `kcat -P` of the same data into a new topic (restore's counterpart).
#      Between phases it waits until noida-db is idle: after every change it rewrites its whole
#      state as one JSON file (about 3.7 bytes per stored byte, one core busy for ~10 s per
#      300 MB), and that must not land in the next phase's timing. A write phase (kcat -P,
#      restore) can still overlap such a rewrite, which makes those two rows the noisiest.
#      With the defaults the run takes about 25 minutes, mostly those waits.
#   5. The same volume on tansu (the test stack's broker, from .stack/env; TANSU= to skip):
#      produced once with confluent-kafka, then backup create (none, lz4), verify and restore.
#   6. Checks: every backup holds RECORDS records and passes `backup verify`; every restored and
#      kcat-produced topic holds RECORDS records; in round 1 the restored topic is compared with
#      the source partition by partition (offset, timestamp, headers, key, value; md5 of kcat
#      dumps).
#   7. Prints a markdown table of medians: MB/s = payload bytes (keys + values, 10^6 B/MB) per
#      wall-clock second (process start to exit); records/s; the client's CPU seconds and the
#      broker's CPU seconds; then the issue's two targets (at least kcat's speed, 100 MB/s).
#      kcat -C writes to the page cache; autopilot fsyncs every segment and manifest.
#
# Environment: RECORDS (1000000), VALUE_BYTES (1024), PARTITIONS (6), REPEATS (3),
# WORK (scratch dir, default a new /tmp/backup-vs-kcat.XXXXXX, removed at the end unless KEEP=1),
# AUTOPILOT (binary; default: build and use target/release/autopilot), TANSU (host:port; default
# AUTOPILOT_TEST_KAFKA_BOOTSTRAP from .stack/env; empty skips), CHECK_CONTENT (1), RESULTS (also
# write the table to this file).
#
# noida-db ignores the fetch size limits (fetch.max.bytes, max.partition.fetch.bytes): a Fetch
# answers with everything from the requested offset to the end of every requested partition, so
# every client needs `receive.message.max.bytes` above the largest such answer (kcat: up to the
# whole topic; autopilot, which reads one partition at a time: one partition). Both are given
# 2147483647, librdkafka's maximum, which caps the topic at about 2 GB on noida-db. autopilot
# takes librdkafka properties from its config file (clusters[].kafka_client.properties), which is
# why it runs with --config here rather than --bootstrap.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1 LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECORDS=${RECORDS:-1000000}
VALUE_BYTES=${VALUE_BYTES:-1024}
PARTITIONS=${PARTITIONS:-6}
REPEATS=${REPEATS:-3}
CHECK_CONTENT=${CHECK_CONTENT:-1}
KEEP=${KEEP:-0}
NOIDA_VENV=${NOIDA_VENV:-$REPO/.stack/noida-venv}
NOIDA_VERSION=0.2.3
CONFLUENT_VERSION=2.16.1
if [[ -z "${TANSU+set}" ]]; then
  TANSU=$(sed -n 's/^AUTOPILOT_TEST_KAFKA_BOOTSTRAP=//p' "$REPO/.stack/env" 2>/dev/null || true)
fi
BIG=2147483647   # receive.message.max.bytes for noida-db (see above)

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -z "${WORK:-}" ]]; then WORK=$(mktemp -d /tmp/backup-vs-kcat.XXXXXX); fi
mkdir -p "$WORK"
LOG="$WORK/log.txt"
: > "$LOG"
NOIDA_PID=

cleanup() {
  local rc=$?
  if [[ -n "$NOIDA_PID" ]] && kill -0 "$NOIDA_PID" 2>/dev/null; then
    kill "$NOIDA_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$NOIDA_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$NOIDA_PID" 2>/dev/null || true
  fi
  if [[ -n "${TANSU_TOPICS:-}" && -n "$TANSU" ]]; then
    # shellcheck disable=SC2086
    "$PY" "$HELPER" delete "$TANSU" $TANSU_TOPICS >>"$LOG" 2>&1 || true
  fi
  if [[ "$KEEP" == 1 || $rc != 0 ]]; then
    rm -rf "$WORK/noida-data" "$WORK/records.txt" "$WORK/last.out" "$WORK"/*backups-* 2>/dev/null || true
    say "scratch dir kept (data removed): $WORK (log: $LOG)"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. what the run needs ----------------------------------------------------------------------
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v kcat >/dev/null; then
  t0=$EPOCHREALTIME
  as_root apt-get update -qq >>"$LOG" 2>&1
  as_root apt-get install -y --no-install-recommends kcat >>"$LOG" 2>&1
  say "installed kcat in $(awk "BEGIN{printf \"%.0f\", $EPOCHREALTIME-$t0}") s"
fi
PY="$NOIDA_VENV/bin/python"
if ! "$PY" -c 'import confluent_kafka, noida_db' 2>/dev/null; then
  t0=$EPOCHREALTIME
  python3 -m venv "$NOIDA_VENV"
  "$NOIDA_VENV/bin/pip" install -q "noida-db==$NOIDA_VERSION" "confluent-kafka==$CONFLUENT_VERSION" >>"$LOG" 2>&1
  say "installed noida-db $NOIDA_VERSION and confluent-kafka $CONFLUENT_VERSION into $NOIDA_VENV in $(awk "BEGIN{printf \"%.0f\", $EPOCHREALTIME-$t0}") s"
fi
NOIDA_BIN=$("$PY" -c 'from importlib.resources import files; print(files("noida_db").joinpath("noida-db"))')
chmod +x "$NOIDA_BIN"
if [[ -z "${AUTOPILOT:-}" ]]; then
  say "building target/release/autopilot (nice 19)"
  (cd "$REPO" && nice -n 19 cargo build --release --bin autopilot >>"$LOG" 2>&1) || die "release build failed (see $LOG)"
  AUTOPILOT="$REPO/target/release/autopilot"
fi
[[ -x "$AUTOPILOT" ]] || die "no autopilot binary at $AUTOPILOT"

# --- helper: data generation, topic admin and producing to tansu, through confluent-kafka ------
HELPER="$WORK/bvk.py"
cat > "$HELPER" <<'PYEOF'
import sys, time, random

def admin(boot):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": boot})

def gen(n, size, out):
    """Lines 'key\tvalue\n'; values are JSON-ish text: unique fields, then words drawn from a pool
    (compresses about like real JSON events, not like one repeated string). Prints payload bytes."""
    rnd = random.Random(6)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(2000)]
    chunks = [b" ".join(rnd.choice(words) for _ in range(300)) for _ in range(4096)]
    events = [b"order_created", b"order_paid", b"order_shipped", b"cart_updated", b"page_view"]
    total, buf = 0, []
    with open(out, "wb") as f:
        for i in range(n):
            key = b"key-%09d" % i
            head = (b'{"id":%d,"user":"user-%06d","event":"%s","amount":%d.%02d,"trace":"%032x","text":"'
                    % (i, rnd.randrange(10**6), events[i % 5], rnd.randrange(10000), rnd.randrange(100), rnd.getrandbits(128)))
            fill = size - len(head) - 2
            c = chunks[rnd.randrange(4096)]
            while len(c) < fill:
                c += b" " + chunks[rnd.randrange(4096)]
            v = head + c[:fill] + b'"}'
            total += len(key) + len(v)
            buf.append(key + b"\t" + v + b"\n")
            if len(buf) >= 10000:
                f.write(b"".join(buf)); buf.clear()
        f.write(b"".join(buf))
    print(total)

def create(boot, topic, parts):
    from confluent_kafka.admin import NewTopic
    a = admin(boot)   # kept alive until its futures are done
    for t, fut in a.create_topics([NewTopic(topic, int(parts), 1)], request_timeout=30).items():
        fut.result()
    deadline = time.time() + 30
    while time.time() < deadline:   # metadata shows every partition
        t = a.list_topics(topic, timeout=10).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == int(parts):
            return
        time.sleep(0.2)
    sys.exit(f"topic {topic} did not appear with {parts} partitions")

def delete(boot, *topics):
    a = admin(boot)
    for t, fut in a.delete_topics(list(topics), request_timeout=30).items():
        try:
            fut.result()
        except Exception as e:
            print(f"delete {t}: {e}", file=sys.stderr)

def produce(boot, topic, path, parts):
    """Produce the file's records in batches, except the last record of each partition, which goes
    alone in its own batch: tansu answers ListOffsets(latest) with the base offset of the last
    batch + 1, which is right only when that batch holds one record."""
    from confluent_kafka import Producer
    parts = int(parts)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "batch.size": 1000000,
                  "queue.buffering.max.kbytes": 1048576, "acks": "all"})
    errors = []
    def report(err, msg):
        if err is not None:
            errors.append(err)
    bulk, tail = lines[:-parts], lines[-parts:]
    for i, line in enumerate(bulk):
        k, v = line.split(b"\t", 1)
        while True:
            try:
                p.produce(topic, key=k, value=v, partition=i % parts, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    for part, line in enumerate(tail):
        k, v = line.split(b"\t", 1)
        p.produce(topic, key=k, value=v, partition=part, on_delivery=report)
        p.flush(30)
    if errors:
        sys.exit(f"{len(errors)} delivery errors, first: {errors[0]}")

def count(boot, topic, idle=5.0):
    """Records in the topic, read from the beginning until nothing arrives for `idle` seconds
    (tansu's watermarks are not trusted)."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": boot, "group.id": "bvk-count", "enable.auto.commit": False,
                  "enable.partition.eof": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
    n, last = 0, time.time()
    while time.time() - last < idle:
        got = c.consume(10000, 0.5)
        for m in got:
            if m.error() is None:
                n += 1
        if got:
            last = time.time()
    c.close()
    print(n)

if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"gen": lambda: gen(int(args[0]), int(args[1]), args[2]), "create": lambda: create(*args),
     "delete": lambda: delete(*args), "produce": lambda: produce(*args), "count": lambda: count(*args)}[cmd]()
PYEOF

# --- 2. noida-db ---------------------------------------------------------------------------------
NOIDA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NOIDA="127.0.0.1:$NOIDA_PORT"
"$NOIDA_BIN" start --only kafka --kafka-port "$NOIDA_PORT" --data-dir "$WORK/noida-data" >"$WORK/noida.log" 2>&1 &
NOIDA_PID=$!
for _ in $(seq 1 100); do
  kcat -b "$NOIDA" -L -m 2 >/dev/null 2>&1 && break
  kill -0 "$NOIDA_PID" 2>/dev/null || die "noida-db exited: $(cat "$WORK/noida.log")"
  sleep 0.2
done
kcat -b "$NOIDA" -L -m 2 >/dev/null 2>&1 || die "noida-db did not answer on $NOIDA"
say "noida-db $NOIDA_VERSION on $NOIDA (pid $NOIDA_PID, data in $WORK/noida-data)"

TANSU_PID=$(cat "$REPO/.stack/pids/kafka.pid" 2>/dev/null || true)
cpu_ticks() { # CPU time of a process in 1/100 s (0 when unknown)
  [[ -n "${1:-}" && -r /proc/$1/stat ]] || { echo 0; return; }
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
broker_pid() { case "$1" in noida) echo "$NOIDA_PID" ;; tansu) echo "$TANSU_PID" ;; esac; }

# noida-db rewrites its whole JSON state after changes: wait until it has used < 5% of a core for 3 s.
settle() {
  local quiet=0 a b deadline=$((SECONDS + 900))
  while ((quiet < 3 && SECONDS < deadline)); do
    a=$(cpu_ticks "$NOIDA_PID"); sleep 1; b=$(cpu_ticks "$NOIDA_PID")
    if ((b - a < 5)); then quiet=$((quiet + 1)); else quiet=0; fi
  done
}

# Autopilot config files: one cluster each, with the librdkafka properties the broker needs.
cluster_config() { # FILE BOOTSTRAP [PROPERTY=VALUE...]
  local file=$1 boot=$2; shift 2
  {
    echo "region: bench"
    echo "clusters:"
    echo "  - name: bench"
    echo "    namespace: bench"
    echo "    node_pool: brokers"
    echo "    backend: real"
    echo "    bootstrap_servers: [\"$boot\"]"
    echo "    prometheus: {url: \"http://127.0.0.1:9\"}   # required by the schema, never contacted by backups"
    echo "    kafka_client:"
    echo "      timeout: 30s"
    echo "      properties:"
    local kv
    for kv in "$@"; do echo "        ${kv%%=*}: \"${kv#*=}\""; done
    [[ $# -gt 0 ]] || echo "        {}"
  } > "$file"
}
cluster_config "$WORK/noida.yaml" "$NOIDA" "receive.message.max.bytes=$BIG"
[[ -z "$TANSU" ]] || cluster_config "$WORK/tansu.yaml" "$TANSU"

RESULTS_TSV="$WORK/results.tsv"
: > "$RESULTS_TSV"
# timed BROKER OPERATION CMD...: run CMD, record wall, client CPU and broker CPU seconds.
# CMD's stdout goes to $WORK/last.out, its stderr to the log.
timed() {
  local broker=$1 op=$2; shift 2
  local pid b0 b1 t wall user sys
  pid=$(broker_pid "$broker")
  b0=$(cpu_ticks "$pid")
  TIMEFORMAT='%R %U %S'
  { time "$@" >"$WORK/last.out" 2>>"$LOG"; } 2>"$WORK/last.time" || {
    cat "$WORK/last.out" >&2; die "$op on $broker failed (see $LOG)"; }
  b1=$(cpu_ticks "$pid")
  read -r wall user sys < "$WORK/last.time"
  t=$(awk -v w="$wall" -v u="$user" -v s="$sys" -v b=$((b1 - b0)) 'BEGIN{printf "%s\t%.2f\t%.2f", w, u + s, b / 100}')
  printf '%s\t%s\t%s\n' "$broker" "$op" "$t" >> "$RESULTS_TSV"
  say "  $broker: $op: $wall s"
}

check_eq() { [[ "$2" == "$3" ]] || die "$1: expected $3, got $2"; }
backup_records() { sed -n 's/^backup .* complete: \([0-9]*\) records.*/\1/p' "$WORK/last.out"; }
hwm_sum() { # BOOTSTRAP TOPIC: sum of high watermarks (right on noida-db)
  local p sum=0 o
  for ((p = 0; p < PARTITIONS; p++)); do
    o=$(kcat -b "$1" -Q -t "$2:$p:-1" -X "receive.message.max.bytes=$BIG" | awk '{print $NF}')
    sum=$((sum + o))
  done
  echo "$sum"
}
dump_md5() { # BOOTSTRAP TOPIC PARTITION: md5 of every record's offset, timestamp, headers, key, value
  kcat -C -b "$1" -t "$2" -p "$3" -o beginning -e -q -f '%o\t%T\t%h\t%k\t%s\n' -X "receive.message.max.bytes=$BIG" | md5sum | cut -d' ' -f1
}

# --- 3. the data ----------------------------------------------------------------------------------
DATA="$WORK/records.txt"
say "generating $RECORDS records with ${VALUE_BYTES}-byte values"
PAYLOAD=$("$PY" "$HELPER" gen "$RECORDS" "$VALUE_BYTES" "$DATA")
say "payload: $PAYLOAD bytes (keys + values)"
RUN=$(date +%s)
SRC="bvk-$RUN-src"
KCAT_P=(kcat -P -b "$NOIDA" -K $'\t' -l -X linger.ms=20)
"$PY" "$HELPER" create "$NOIDA" "$SRC" "$PARTITIONS"
settle
timed noida "kcat -P (source topic)" "${KCAT_P[@]}" -t "$SRC" "$DATA"
check_eq "source topic records" "$(hwm_sum "$NOIDA" "$SRC")" "$RECORDS"
settle

# --- 4. rounds on noida-db ----------------------------------------------------------------------
AP=("$AUTOPILOT" --log warn)
for ((r = 1; r <= REPEATS; r++)); do
  say "round $r of $REPEATS (noida-db)"
  # (a) kcat consuming the topic to a file
  timed noida "kcat -C to file" kcat -C -b "$NOIDA" -t "$SRC" -o beginning -e -q -f '%k\t%s\n' \
    -X "receive.message.max.bytes=$BIG"
  # kcat -C writes to stdout (last.out): count its lines
  check_eq "kcat -C lines" "$(wc -l < "$WORK/last.out")" "$RECORDS"
  rm -f "$WORK/last.out"
  # (b) backups
  for codec in none lz4; do
    dir="$WORK/backups-$codec"
    rm -rf "$dir"
    timed noida "backup create ($codec)" "${AP[@]}" backup create --config "$WORK/noida.yaml" --cluster bench \
      --topic "$SRC" --compression "$codec" --id "r$r-$codec" --dir "$dir"
    check_eq "backup r$r-$codec records" "$(backup_records)" "$RECORDS"
    timed noida "backup verify ($codec)" "${AP[@]}" backup verify "r$r-$codec" --dir "$dir"
    grep -q "every checksum verified, $RECORDS records" "$WORK/last.out" || die "verify r$r-$codec: $(cat "$WORK/last.out")"
    [[ $r != 1 ]] || du -sb "$dir" | awk -v c="$codec" '{print c "\t" $1}' >> "$WORK/sizes.tsv"
  done
  rm -rf "$WORK/backups-none"
  # (c) restore the lz4 backup into a new topic
  dst="bvk-$RUN-restored-$r"
  "$PY" "$HELPER" create "$NOIDA" "$dst" "$PARTITIONS"
  settle
  timed noida "backup restore (lz4)" "${AP[@]}" backup restore "r$r-lz4" --config "$WORK/noida.yaml" --cluster bench \
    --to-topic "$dst" --dir "$WORK/backups-lz4"
  settle
  check_eq "restored topic records" "$(hwm_sum "$NOIDA" "$dst")" "$RECORDS"
  if [[ $r == 1 && $CHECK_CONTENT == 1 ]]; then
    for ((p = 0; p < PARTITIONS; p++)); do
      check_eq "restored partition $p (md5 of offset, key, value)" "$(dump_md5 "$NOIDA" "$dst" "$p")" "$(dump_md5 "$NOIDA" "$SRC" "$p")"
    done
    say "  restored topic identical to the source, partition by partition (offsets, timestamps, headers, keys, values)"
  fi
  "$PY" "$HELPER" delete "$NOIDA" "$dst"
  rm -rf "$WORK/backups-lz4"
  settle
  # (d) kcat producing the same data into a new topic (restore's counterpart)
  dst="bvk-$RUN-kcat-$r"
  "$PY" "$HELPER" create "$NOIDA" "$dst" "$PARTITIONS"
  settle
  timed noida "kcat -P from file" "${KCAT_P[@]}" -t "$dst" "$DATA"
  settle
  check_eq "kcat-produced topic records" "$(hwm_sum "$NOIDA" "$dst")" "$RECORDS"
  "$PY" "$HELPER" delete "$NOIDA" "$dst"
  settle
done
"$PY" "$HELPER" delete "$NOIDA" "$SRC"

# --- 5. tansu: our side alone -------------------------------------------------------------------
if [[ -n "$TANSU" ]]; then
  if ! "$PY" -c "
from confluent_kafka.admin import AdminClient
AdminClient({'bootstrap.servers': '$TANSU'}).list_topics(timeout=5)" >/dev/null 2>&1; then
    say "tansu at $TANSU does not answer: skipped"
    TANSU=
  fi
fi
if [[ -n "$TANSU" ]]; then
  TSRC="bvk-$RUN-src"
  TANSU_TOPICS="$TSRC"
  "$PY" "$HELPER" create "$TANSU" "$TSRC" "$PARTITIONS"
  timed tansu "confluent-kafka produce (source topic)" "$PY" "$HELPER" produce "$TANSU" "$TSRC" "$DATA" "$PARTITIONS"
  for ((r = 1; r <= REPEATS; r++)); do
    say "round $r of $REPEATS (tansu $TANSU)"
    for codec in none lz4; do
      dir="$WORK/tansu-backups-$codec"
      rm -rf "$dir"
      timed tansu "backup create ($codec)" "${AP[@]}" backup create --bootstrap "$TANSU" \
        --topic "$TSRC" --compression "$codec" --id "t$r-$codec" --dir "$dir"
      check_eq "tansu backup t$r-$codec records" "$(backup_records)" "$RECORDS"
      timed tansu "backup verify ($codec)" "${AP[@]}" backup verify "t$r-$codec" --dir "$dir"
    done
    rm -rf "$WORK/tansu-backups-none"
    dst="bvk-$RUN-restored-$r"
    TANSU_TOPICS="$TSRC $dst"
    "$PY" "$HELPER" create "$TANSU" "$dst" "$PARTITIONS"
    timed tansu "backup restore (lz4)" "${AP[@]}" backup restore "t$r-lz4" --bootstrap "$TANSU" \
      --to-topic "$dst" --dir "$WORK/tansu-backups-lz4"
    check_eq "tansu restored topic records" "$("$PY" "$HELPER" count "$TANSU" "$dst")" "$RECORDS"
    "$PY" "$HELPER" delete "$TANSU" "$dst"
    TANSU_TOPICS="$TSRC"
    rm -rf "$WORK/tansu-backups-lz4"
  done
  "$PY" "$HELPER" delete "$TANSU" "$TSRC"
  TANSU_TOPICS=
fi

# --- 6. the table ---------------------------------------------------------------------------------
table() {
  echo "Backup and restore vs kcat: $RECORDS records, $PAYLOAD payload bytes (keys + ${VALUE_BYTES}-byte values), $PARTITIONS partitions, $REPEATS rounds"
  echo "$(nproc) cores ($(uptime | sed 's/.*load average/load average/')), loopback, $AUTOPILOT, kcat $(kcat -V | sed -n 's/^Version \([^ ]*\).*\(librdkafka [0-9.]*\).*/\1 (\2)/p'), noida-db $NOIDA_VERSION"
  [[ ! -s "$WORK/sizes.tsv" ]] || echo "Backup size on disk: $(awk '{printf "%s%s %.0f MB", s, $1, $2 / 1e6; s = ", "}' "$WORK/sizes.tsv")"
  echo
  echo "| broker | operation | runs | median s | MB/s | records/s | client CPU s | broker CPU s | all runs (s) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' -v bytes="$PAYLOAD" -v n="$RECORDS" '
    { k = $1 "\t" $2; if (!(k in seen)) { seen[k] = 1; order[++m] = k }
      c = ++cnt[k]; w[k, c] = $3; u[k, c] = $4; b[k, c] = $5 }
    function med(arr, k, c,   i, j, t, v) {
      for (i = 1; i <= c; i++) v[i] = arr[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
    }
    END {
      for (i = 1; i <= m; i++) {
        k = order[i]; c = cnt[k]; split(k, kb, "\t")
        mw = med(w, k, c); all = ""
        for (j = 1; j <= c; j++) all = all (j > 1 ? ", " : "") w[k, j]
        printf "| %s | %s | %d | %.2f | %.0f | %.0f | %.2f | %.2f | %s |\n", kb[1], kb[2], c, mw, bytes / 1e6 / mw, n / mw, med(u, k, c), med(b, k, c), all
      }
    }' "$RESULTS_TSV"
}
verdict() { # the issue's two targets, from the medians
  awk -F'\t' -v bytes="$PAYLOAD" '
    { k = $1 "\t" $2; n[k]++; v[k, n[k]] = $3 }
    function med(k,   c, i, j, t, a) {
      c = n[k]; if (!c) return 0
      for (i = 1; i <= c; i++) a[i] = v[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    function mbs(k) { return med(k) ? bytes / 1e6 / med(k) : 0 }
    function line(ours, theirs,   a, b) {
      a = mbs(ours); b = mbs(theirs); split(ours, o, "\t"); split(theirs, t, "\t")
      printf "- %s, %s: %.0f MB/s vs %s %.0f MB/s (%.2fx): %s kcat; %s 100 MB/s\n", o[1], o[2], a, t[2], b, a / b, (a >= b ? "at least as fast as" : "SLOWER than"), (a >= 100 ? ">=" : "BELOW")
    }
    END {
      line("noida\tbackup create (none)", "noida\tkcat -C to file")
      line("noida\tbackup create (lz4)", "noida\tkcat -C to file")
      line("noida\tbackup restore (lz4)", "noida\tkcat -P from file")
      for (k in n) if (k ~ /^tansu\tbackup (create|restore)/) { split(k, o, "\t"); printf "- tansu, %s: %.0f MB/s: %s 100 MB/s\n", o[2], mbs(k), (mbs(k) >= 100 ? ">=" : "BELOW") }
    }' "$RESULTS_TSV" | sort -s -t, -k1,1
}
{ table; echo; verdict; } | tee "${RESULTS:-/dev/null}"
