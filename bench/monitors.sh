#!/usr/bin/env bash
# Continuous monitors in the server (issue 6) for BENCHMARKS.md "Probes (issue 6)": a release
# server with 20,000 HTTP monitors at a 60 s interval against the peers' private nginx
# (127.0.0.1:18081, ../shared/peers/start_probe_peers.sh), held for HOLD seconds while 8 clients
# read the API, on SQLite and on PostgreSQL. Reported: the engine's lateness (start − slot; the
# target is every run within 1 s), skipped slots, the result writer's batches, the API's p50/p99
# (target < 20 ms), and CPU of the server (and of PostgreSQL).
#
#   flock /tmp/yw-bench.lock bench/monitors.sh          # both engines, about 25 minutes
#   ENGINES=sqlite HOLD=60 MONITORS=2000 flock /tmp/yw-bench.lock bench/monitors.sh   # a quick look
#   BIN_DIR=target/release ...                         # binaries built beforehand (no cargo here)
#
# Per engine: a fresh database with the demo (`serve --demo`), pm.chen logs in (first-login
# password change). Baseline without monitors: BASE seconds of the authenticated read of issue 2
# (GET /api/v1/contracts/{id}/sites: session, contract scope, a list, JSON) at 8 clients, and
# WRITE seconds of ticket creation at 1 client.
# Then MONITORS monitors are created through POST …/monitors/bulk (1,000 a request), the engine
# picks them up (changes are read every second); after INTERVAL + 15 s every monitor has run
# once. Then four windows, each measured from /metrics before and after:
#   quiet: IDLE seconds with no API load (the engine alone: its CPU, lateness, writes);
#   load:  HOLD seconds of the same read at 8 clients beside the engine, through bench/measure.py
#          (server CPU from /proc, the machine's other load): the figure against the target;
#   list:  LIST seconds reading the first page of the contract's monitors with their state (the
#          rows the result writer updates every second) at 8 clients;
#   write: WRITE seconds of ticket creation at 1 client beside the engine (SQLite has one writer:
#          do the result batches hold the API's writes up?).
# Lateness p99 in a window comes from the histogram monitor_run_lateness_seconds (bucket bounds:
# 1, 2, 5, 10, 20, 50 ms …); "late" counts runs over 1 s; the maximum is the engine's since start.
#
# Env: ENGINES="sqlite postgres" MONITORS=20000 INTERVAL=60 HOLD=180 IDLE=60 BASE=60 LIST=60 WRITE=30
#      CLIENTS=8 QUIET_MAX_WAIT=60
#      PEERS=../shared/peers DATA=bench/peer-data BIN_DIR= QUIET=1 (wait for an idle machine)
# Needs: nginx (../shared/peers/install_probe_peers.sh), curl, python3; psql + PostgreSQL on
# 127.0.0.1:5432 (trust auth; the database yw_bench_monitors is dropped and created).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINES="${ENGINES:-sqlite postgres}"; MONITORS="${MONITORS:-20000}"; INTERVAL="${INTERVAL:-60}"
HOLD="${HOLD:-180}"; IDLE="${IDLE:-60}"; BASE="${BASE:-60}"; LIST="${LIST:-60}"; WRITE="${WRITE:-30}"; CLIENTS="${CLIENTS:-8}"
PEERS="$(cd "${PEERS:-../shared/peers}" && pwd)"
DATA="${DATA:-bench/peer-data}"; mkdir -p "$DATA"; DATA="$(cd "$DATA" && pwd)"
OUT="$DATA/monitors-$(date +%Y%m%d-%H%M%S).jsonl"
export YUNWEI_LOG="${YUNWEI_LOG:-warn}" PGOPTIONS="${PGOPTIONS:---client-min-messages=warning}"
export QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-60}"
unset YUNWEI_DATABASE_URL
if [ -n "${BIN_DIR:-}" ]; then
  YW="$(cd "$BIN_DIR" && pwd)/yunwei"; BENCH="$(cd "$BIN_DIR" && pwd)/yunwei-bench"
else
  cargo build --release -q -p yunwei -p yunwei-bench
  TARGET="${CARGO_TARGET_DIR:-target}/release"
  YW="$(pwd)/$TARGET/yunwei"; BENCH="$(pwd)/$TARGET/yunwei-bench"
fi
[ -x /usr/sbin/nginx ] || { echo "nginx missing: run $PEERS/install_probe_peers.sh" >&2; exit 1; }
NEWPW='Bench#Monitor2026x'
PORT=18494
WORK="$(mktemp -d /tmp/yw-monitors.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
  "$PEERS/stop_probe_peers.sh" > /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
csrf_of() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//; s/"$//; s/&#x2f;/\//g'; }

"$PEERS/machine_facts.sh" > "${OUT%.jsonl}.facts.txt" 2>/dev/null || true
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)"
echo "{\"kind\":\"meta\",\"commit\":\"$COMMIT\",\"dirty\":$DIRTY,\"monitors\":$MONITORS,\"interval_s\":$INTERVAL,\"hold_s\":$HOLD,\"idle_s\":$IDLE,\"clients\":$CLIENTS,\"uptime\":\"$(uptime)\",\"ts\":\"$(date +%FT%T)\"}" >> "$OUT"
# Only its nginx is used here (the script also starts blackbox_exporter and fails its own smoke
# test when that is not installed).
"$PEERS/start_probe_peers.sh" > "$WORK/peers.txt" 2>&1 || true
TARGET_URL="http://127.0.0.1:18081/"
curl -sf -o /dev/null "$TARGET_URL" || { echo "the peers' nginx does not answer on $TARGET_URL" >&2; exit 1; }

# Prometheus text → JSON of the figures this benchmark needs.
SNAP="$WORK/snap.py"
cat > "$SNAP" <<'PY'
import json, re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
out = {"buckets": {}, "batch_buckets": {}, "read_buckets": {}, "write_buckets": {}}
for line in text.splitlines():
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r'^([a-zA-Z0-9_:]+)(\{[^}]*\})?\s+(\S+)$', line)
    if not m:
        continue
    name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
    le = re.search(r'le="([^"]+)"', labels)
    if name == "monitor_run_lateness_seconds_bucket" and le:
        out["buckets"][le.group(1)] = value
    elif name == "monitor_result_batch_seconds_bucket" and le:
        out["batch_buckets"][le.group(1)] = value
    elif name == "monitor_result_read_seconds_bucket" and le:
        out["read_buckets"][le.group(1)] = value
    elif name == "monitor_result_write_seconds_bucket" and le:
        out["write_buckets"][le.group(1)] = value
    elif name.startswith("monitor_") and not labels:
        out[name] = value
print(json.dumps(out))
PY

# Figures of a window between two snapshots.
WINDOW="$WORK/window.py"
cat > "$WINDOW" <<'PY'
import json, sys
a, b, secs = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
def d(k):
    return b.get(k, 0) - a.get(k, 0)
def quantile(key, q):
    if key not in b or key not in a:
        return None
    bounds = sorted(((float("inf") if k == "+Inf" else float(k)), b[key][k] - a[key].get(k, 0)) for k in b[key])
    total = bounds[-1][1] if bounds else 0
    if total <= 0:
        return None
    for le, n in bounds:
        if n >= q * total:
            return le
runs = d("monitor_runs_total")
print(json.dumps({
    "window_s": secs, "runs": runs, "runs_per_s": round(runs / secs, 1),
    "late_runs_over_1s": d("monitor_runs_late_total"),
    "skipped": d("monitor_runs_skipped_total"), "failed": d("monitor_runs_failed_total"),
    "lateness_p50_le_s": quantile("buckets", 0.5), "lateness_p99_le_s": quantile("buckets", 0.99),
    "engine_lateness_max_ms_since_start": round(b.get("monitor_engine_lateness_max_seconds", 0) * 1000, 1),
    "engine_lateness_p99_ms_since_start": round(b.get("monitor_engine_lateness_p99_seconds", 0) * 1000, 1),
    "results_written": d("monitor_results_written_total"), "batches": d("monitor_result_batches_total"),
    "write_errors": d("monitor_result_write_errors_total"),
    "batch_p50_le_s": quantile("batch_buckets", 0.5), "batch_p99_le_s": quantile("batch_buckets", 0.99),
    "batch_read_p50_le_s": quantile("read_buckets", 0.5), "batch_read_p99_le_s": quantile("read_buckets", 0.99),
    "batch_write_p50_le_s": quantile("write_buckets", 0.5), "batch_write_p99_le_s": quantile("write_buckets", 0.99),
    "monitors": b.get("monitor_engine_monitors"),
}))
PY

cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

for engine in $ENGINES; do
  dir="$WORK/$engine"
  args=(--data-dir "$dir")
  DB_PID_ARGS=()
  if [ "$engine" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench_monitors WITH (FORCE)" \
      -c "CREATE DATABASE yw_bench_monitors" postgres
    args+=(--database-url postgres://postgres@127.0.0.1:5432/yw_bench_monitors)
    # The PostgreSQL server's CPU is sampled too (its postmaster's process tree).
    PGPID=$(head -1 "$(psql -Atq -h 127.0.0.1 -U postgres -c "SHOW data_directory" postgres)/postmaster.pid" 2>/dev/null || true)
    [ -n "$PGPID" ] && DB_PID_ARGS=(--db-pid "$PGPID")
  fi
  log "$engine: demo server"
  "$YW" "${args[@]}" serve --demo --listen 127.0.0.1:$PORT > "$WORK/stdout" 2> "$WORK/stderr" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
  base=http://127.0.0.1:$PORT
  pw=$(awk '$1=="pm.chen"{print $2}' "$WORK/stdout" | head -1)
  jar="$WORK/jar-$engine"
  curl -s -c "$jar" -b "$jar" "$base/login" > "$WORK/login.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "login=pm.chen" --data-urlencode "password=$pw" \
    --data-urlencode "_csrf=$(csrf_of "$WORK/login.html")" "$base/login"
  curl -s -c "$jar" -b "$jar" "$base/password" > "$WORK/pw.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "current_password=$pw" --data-urlencode "new_password=$NEWPW" \
    --data-urlencode "confirm_password=$NEWPW" --data-urlencode "_csrf=$(csrf_of "$WORK/pw.html")" "$base/password"
  session=$(awk '$6=="yw_session"{print $7}' "$jar")
  cid=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')

  csrf=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/me" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
  reads=(get --url "$base/api/v1/contracts/$cid/sites" --header "Cookie: yw_session=$session" --concurrency "$CLIENTS")
  lists=(get --url "$base/api/v1/contracts/$cid/monitors?limit=50" --header "Cookie: yw_session=$session" --concurrency "$CLIENTS")
  writes=(create --url "$base/api/v1/contracts/$cid/tickets" --header "Cookie: yw_session=$session" --header "X-CSRF-Token: $csrf" --concurrency 1)
  log "$engine: baseline without monitors: $BASE s of reads, $WRITE s of ticket creation"
  r=$(python3 bench/measure.py --peers "$PEERS" --server-pid "$SERVER_PID" "${DB_PID_ARGS[@]}" --warmup-secs 2 -- \
    "$BENCH" "${reads[@]}" --duration-secs "$BASE" --warmup-secs 2 | tail -1)
  echo "{\"kind\":\"baseline_reads\",\"engine\":\"$engine\",\"uptime\":\"$(uptime)\",\"api\":$r}" | tee -a "$OUT" >&2
  r=$(python3 bench/measure.py --peers "$PEERS" --server-pid "$SERVER_PID" "${DB_PID_ARGS[@]}" --warmup-secs 2 -- \
    "$BENCH" "${writes[@]}" --tag "base-$engine" --duration-secs "$WRITE" --warmup-secs 2 | tail -1)
  echo "{\"kind\":\"baseline_writes\",\"engine\":\"$engine\",\"uptime\":\"$(uptime)\",\"api\":$r}" | tee -a "$OUT" >&2

  log "$engine: creating $MONITORS monitors (contract $cid)"
  t0=$(date +%s.%N)
  python3 - "$base" "$cid" "$session" "$MONITORS" "$INTERVAL" "$TARGET_URL" <<'PY'
import json, sys, urllib.request
base, cid, session, n, interval, url = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
def call(method, path, body=None, csrf=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Cookie", f"yw_session={session}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if csrf:
        req.add_header("X-CSRF-Token", csrf)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")
csrf = call("GET", "/api/v1/me")["csrf_token"]
for start in range(0, n, 1000):
    monitors = [{"name": f"nginx-{i:05d}", "probe": {"kind": "http", "url": url}, "interval_s": interval, "timeout_s": 10}
                for i in range(start, min(n, start + 1000))]
    call("POST", f"/api/v1/contracts/{cid}/monitors/bulk", {"monitors": monitors}, csrf)
PY
  t1=$(date +%s.%N)
  for _ in $(seq 1 600); do
    m=$(python3 "$SNAP" "$base" | python3 -c 'import json,sys; print(int(json.load(sys.stdin).get("monitor_engine_monitors", 0)))')
    [ "$m" -ge "$MONITORS" ] && break
    sleep 0.5
  done
  t2=$(date +%s.%N)
  create_s=$(python3 -c "print(round($t1 - $t0, 1))"); pickup_s=$(python3 -c "print(round($t2 - $t1, 1))")
  log "$engine: created in $create_s s, all in the engine $pickup_s s later; every monitor's first run within $((INTERVAL + 15)) s"
  sleep $((INTERVAL + 15))

  [ "${QUIET:-1}" = 1 ] && python3 -c "import sys; sys.path.insert(0, '$PEERS'); import procmon; print('waited %s s for an idle machine (busy cores %s)' % procmon.wait_quiet(max_wait=60))" >&2
  la0="$(uptime)"
  a=$(python3 "$SNAP" "$base"); c0=$(cpu_s "$SERVER_PID")
  sleep "$IDLE"
  b=$(python3 "$SNAP" "$base"); c1=$(cpu_s "$SERVER_PID")
  quiet=$(python3 "$WINDOW" "$a" "$b" "$IDLE")
  echo "{\"kind\":\"monitors_quiet\",\"engine\":\"$engine\",\"create_s\":$create_s,\"pickup_s\":$pickup_s,\"server_cpu_s\":$(python3 -c "print(round($c1 - $c0, 2))"),\"server_cores\":$(python3 -c "print(round(($c1 - $c0) / $IDLE, 3))"),\"uptime\":\"$la0\",\"window\":$quiet}" | tee -a "$OUT" >&2

  log "$engine: $HOLD s with $CLIENTS clients reading the API"
  a=$(python3 "$SNAP" "$base"); ts=$(date +%s.%N)
  load=$(QUIET=0 python3 bench/measure.py --peers "$PEERS" --server-pid "$SERVER_PID" "${DB_PID_ARGS[@]}" --warmup-secs 2 -- \
    "$BENCH" "${reads[@]}" --duration-secs "$HOLD" --warmup-secs 2 | tail -1)
  b=$(python3 "$SNAP" "$base"); te=$(date +%s.%N)
  la1="$(uptime)"
  win=$(python3 "$WINDOW" "$a" "$b" "$(python3 -c "print(round($te - $ts, 1))")")
  size=$(du -sb "$dir" 2>/dev/null | cut -f1)
  [ "$engine" = postgres ] && size=$(psql -Atq -h 127.0.0.1 -U postgres -c "SELECT pg_database_size('yw_bench_monitors')" postgres)
  echo "{\"kind\":\"monitors_load\",\"engine\":\"$engine\",\"uptime\":\"$la1\",\"data_dir_bytes\":${size:-0},\"api\":$load,\"window\":$win}" | tee -a "$OUT" >&2
  log "$engine: $LIST s with $CLIENTS clients reading the monitor list"
  r=$(QUIET=0 python3 bench/measure.py --peers "$PEERS" --server-pid "$SERVER_PID" "${DB_PID_ARGS[@]}" --warmup-secs 2 -- \
    "$BENCH" "${lists[@]}" --duration-secs "$LIST" --warmup-secs 2 | tail -1)
  echo "{\"kind\":\"monitors_list\",\"engine\":\"$engine\",\"uptime\":\"$(uptime)\",\"api\":$r}" | tee -a "$OUT" >&2
  log "$engine: $WRITE s of ticket creation beside the engine"
  a=$(python3 "$SNAP" "$base"); ts=$(date +%s.%N)
  w=$(python3 bench/measure.py --peers "$PEERS" --server-pid "$SERVER_PID" "${DB_PID_ARGS[@]}" --warmup-secs 2 -- \
    "$BENCH" "${writes[@]}" --tag "mon-$engine" --duration-secs "$WRITE" --warmup-secs 2 | tail -1)
  b=$(python3 "$SNAP" "$base"); te=$(date +%s.%N)
  # (measure.py may first wait for an idle machine: the window is the measured wall time.)
  win=$(python3 "$WINDOW" "$a" "$b" "$(python3 -c "print(round($te - $ts, 1))")")
  echo "{\"kind\":\"monitors_writes\",\"engine\":\"$engine\",\"uptime\":\"$(uptime)\",\"api\":$w,\"window\":$win}" | tee -a "$OUT" >&2
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
le = lambda s: "-" if s is None else ("> 10 s" if s == float("inf") else f"≤ {s * 1000:g} ms")
la = lambda r: r["uptime"].split("load average:")[-1].strip()
print("\nEngine (from /metrics; lateness = start − slot, bucket upper bounds; max since the engine started):\n")
print("| engine | window | runs/s | late > 1 s | skipped | lateness p50 / p99 | max | server CPU cores | batch read p99 | batch write p99 | load average after |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r["kind"] not in ("monitors_quiet", "monitors_load", "monitors_writes"):
        continue
    w = r["window"]
    what = {"monitors_quiet": "engine alone", "monitors_load": f"+ {r.get('api', {}).get('concurrency', 8)} readers", "monitors_writes": "+ 1 writer"}[r["kind"]]
    cores = r["server_cores"] if r["kind"] == "monitors_quiet" else r["api"].get("server_cpu_util_cores")
    print(f"| {r['engine']} | {what}, {w['window_s']:.0f} s | {w['runs_per_s']} | {w['late_runs_over_1s']:.0f} | {w['skipped']:.0f} | "
          f"{le(w['lateness_p50_le_s'])} / {le(w['lateness_p99_le_s'])} | {w['engine_lateness_max_ms_since_start']} ms | {cores} | "
          f"{le(w.get('batch_read_p99_le_s'))} | {le(w.get('batch_write_p99_le_s'))} | {la(r)} |")
print("\nAPI (yunwei-bench through bench/measure.py):\n")
print("| engine | request | monitors | p50 ms | p99 ms | max ms | req/s | server CPU cores | DB CPU cores | other cores busy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
meta = next((r for r in rows if r["kind"] == "meta"), {})
for r in rows:
    kinds = {"baseline_reads": ("sites, 8 clients", 0), "monitors_load": ("sites, 8 clients", meta.get("monitors")),
             "monitors_list": ("monitor list (50 with state), 8 clients", meta.get("monitors")),
             "baseline_writes": ("ticket create, 1 client", 0), "monitors_writes": ("ticket create, 1 client", meta.get("monitors"))}
    if r["kind"] not in kinds:
        continue
    a = r["api"]
    what, n = kinds[r["kind"]]
    print(f"| {r['engine']} | {what} | {n} | {a.get('p50_ms')} | **{a.get('p99_ms')}** | {a.get('max_ms')} | {a.get('rps')} | "
          f"{a.get('server_cpu_util_cores')} | {a.get('db_cpu_util_cores', '-')} | {a.get('other_cpu_cores')} |")
for r in rows:
    if r["kind"] == "monitors_quiet":
        print(f"\n{r['engine']}: {r['window']['monitors']:.0f} monitors created in {r['create_s']} s, all in the engine {r['pickup_s']} s later")
    if r["kind"] == "monitors_load":
        print(f"{r['engine']}: stored data after the load window {r['data_dir_bytes'] / 1048576:.0f} MiB")
PY
echo "results: $OUT" >&2
