#!/usr/bin/env bash
# Service desk benchmark for BENCHMARKS.md (issue 4), side by side with Request Tracker 5 in one run:
#   (a) RT5 (already installed by ../shared/peers/install_rt5.sh): ticket creation over REST 2 at
#       concurrency 1 and 8, with the peer scripts' own load generator and figures;
#   (b) yunwei on SQLite: ticket creation through the API at concurrency 1 and 8; then, on a second
#       fresh database seeded with 1,000,000 tickets, the first page of "open tickets, breaching
#       soonest first" through the API at concurrency 1 and 8;
#   (c) the same on PostgreSQL.
#
#   bench/tickets.sh [runs]            # default 3 runs per yunwei figure
#   RT_REPS=1 bench/tickets.sh 3       # RT5 repetitions (default 1; ~80 s each at 300 creates)
#   ENGINES=sqlite SKIP_RT=1 TICKETS=100000 bench/tickets.sh 1   # a quick subset
#
# Env: RT_REPS=1 RT_N_CREATE=300 RT_SEED=200 SKIP_RT=0 ENGINES="sqlite postgres" CREATE_SECS=10
#      LIST_SECS=10 TICKETS=1000000 PG_TICKETS=$TICKETS PG_SEED_LIMIT_SECS=600 PG_FALLBACK=200000
#      DATA=bench/peer-data PEERS=../shared/peers QUIET=1 (wait for an idle machine before each run)
# Output: JSON lines in $DATA/tickets-<stamp>.jsonl (yunwei) and $DATA/rt5-<stamp>.jsonl (RT5), a
# markdown summary on stdout (bench/summarize_tickets.py). Run as root (RT5 runs as www-data).
# Needs: a release build (done here), curl, python3, sqlite3; psql + PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
RT_REPS="${RT_REPS:-1}"; RT_N_CREATE="${RT_N_CREATE:-300}"; RT_SEED="${RT_SEED:-200}"; SKIP_RT="${SKIP_RT:-0}"
ENGINES="${ENGINES:-sqlite postgres}"
CREATE_SECS="${CREATE_SECS:-10}"; LIST_SECS="${LIST_SECS:-10}"
TICKETS="${TICKETS:-1000000}"; PG_TICKETS="${PG_TICKETS:-$TICKETS}"
PG_SEED_LIMIT_SECS="${PG_SEED_LIMIT_SECS:-600}"; PG_FALLBACK="${PG_FALLBACK:-200000}"
PEERS="$(cd "${PEERS:-../shared/peers}" && pwd)"
DATA="${DATA:-bench/peer-data}"; mkdir -p "$DATA"; DATA="$(cd "$DATA" && pwd)"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$DATA/tickets-$STAMP.jsonl"
RT_OUT="$DATA/rt5-$STAMP.jsonl"
export YUNWEI_LOG="${YUNWEI_LOG:-warn}"

cargo build --release -q -p yunwei -p yunwei-bench
TARGET="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"  # absolute, whichever way it was given
YW="$TARGET/yunwei"
BENCH="$TARGET/yunwei-bench"
SEED="$TARGET/seed_tickets"
MEASURE="python3 $(pwd)/bench/measure.py --peers $PEERS"
NEWPW='Bench#Desk2026x'
WORK="$(mktemp -d /tmp/yw-tickets.XXXXXX)"
SERVER_PID=""
DB_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
record() { tee -a "$OUT"; }
csrf_of() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//; s/"$//; s/&#x2f;/\//g'; }

"$PEERS/machine_facts.sh" > "${OUT%.jsonl}.facts.txt" || true  # its last probe fails without nginx
# COMMIT/DIRTY may be given when running from an exported tree (git archive) rather than a checkout.
COMMIT="${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
DIRTY="${DIRTY:-$(git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)}"
echo "{\"kind\":\"meta\",\"commit\":\"$COMMIT\",\"dirty\":$DIRTY,\"runs\":$RUNS,\"create_secs\":$CREATE_SECS,\"list_secs\":$LIST_SECS,\"rt_reps\":$RT_REPS,\"rt_n_create\":$RT_N_CREATE,\"ts\":\"$(date +%FT%T)\"}" | record

# ---------------------------------------------------------------------------------------------
# (a) Request Tracker 5: the create phases of ../shared/peers/run_rt5_bench.sh with the same
# arguments (fresh DB from the pristine copy, a few untuned creates, ANALYZE, warm-up, then creates
# at c=1 and c=8 with cookie auth), without its 20k fill and search phases.
run_rt5() {
  local B="python3 $PEERS/rt5_bench.py --port 18080 --out $RT_OUT"
  local D=/var/lib/dbconfig-common/sqlite3/request-tracker5
  log "RT5: fresh database, start"
  "$PEERS/stop_rt5.sh" >&2
  [ -f $D/rtdb.pristine ] && cp -p $D/rtdb.pristine $D/rtdb
  "$PEERS/start_rt5.sh" 18080 >&2
  $B setup >&2
  if [ "$RT_SEED" -gt 0 ]; then
    log "RT5: $RT_SEED untuned creates (not analysed), then ANALYZE"
    $B create --n "$RT_SEED" --c 1 --deadline 900 --seed 55 --tag seedfill-untuned > /dev/null
  fi
  "$PEERS/stop_rt5.sh" >&2
  sqlite3 $D/rtdb "ANALYZE;"
  "$PEERS/start_rt5.sh" 18080 >&2
  $B create --n 50 --c 2 --deadline 120 --tag warmup --seed 99 > /dev/null
  for r in $(seq 1 "$RT_REPS"); do
    log "RT5: creates c=1 and c=8, repetition $r/$RT_REPS ($RT_N_CREATE each)"
    $B create --n "$RT_N_CREATE" --c 1 --deadline 900 --seed "$r" --tag "c1r$r" >&2
    $B create --n "$RT_N_CREATE" --c 8 --deadline 900 --seed "$((r+10))" --tag "c8r$r" >&2
  done
  "$PEERS/stop_rt5.sh" >&2
}

# ---------------------------------------------------------------------------------------------
# yunwei

start_server() { # engine data_dir port url
  local engine="$1" data="$2" port="$3" url="$4"
  # stdout keeps the first start's one-time passwords: count this start's announcement only.
  local before; before=$(grep -c "listening on" "$data/stdout" 2>/dev/null || true)
  "$YW" --data-dir "$data" ${url:+--database-url "$url"} serve --demo --listen "127.0.0.1:$port" \
    >> "$data/stdout" 2>> "$data/stderr" &
  SERVER_PID=$!
  started() { [ "$(grep -c "listening on" "$data/stdout" 2>/dev/null || true)" -gt "${before:-0}" ]; }
  for _ in $(seq 1 600); do started && break; sleep 0.1; done
  started || { log "server did not start:"; cat "$data/stderr" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
}

# Logs desk.li in with PASSWORD; on first login (one-time password) changes it to $NEWPW as a person
# would. Sets SESSION, CSRF and CID.
login_desk() { # data_dir base password first
  local data="$1" base="$2" pw="$3" first="$4" jar="$1/jar"
  rm -f "$jar"
  curl -s -c "$jar" -b "$jar" "$base/login" > "$data/login.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "login=desk.li" --data-urlencode "password=$pw" \
    --data-urlencode "_csrf=$(csrf_of "$data/login.html")" "$base/login"
  if [ "$first" = 1 ]; then
    curl -s -c "$jar" -b "$jar" "$base/password" > "$data/pw.html"
    curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "current_password=$pw" --data-urlencode "new_password=$NEWPW" \
      --data-urlencode "confirm_password=$NEWPW" --data-urlencode "_csrf=$(csrf_of "$data/pw.html")" "$base/password"
  fi
  SESSION=$(awk '$6=="yw_session"{print $7}' "$jar")
  local me; me=$(curl -s -H "Cookie: yw_session=$SESSION" "$base/api/v1/me")
  CSRF=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"] or "")' "$me")
  CID=$(python3 -c 'import json,sys; print([c["id"] for c in json.loads(sys.argv[1])["contracts"] if c["code"]=="CD-DCM-2022"][0])' "$me")
  [ -n "$SESSION" ] && [ -n "$CSRF" ] && [ -n "$CID" ] || { log "login of desk.li failed: $me"; exit 1; }
}

yw_creates() { # engine data_dir port url
  local engine="$1" data="$2" port="$3" url="$4" base="http://127.0.0.1:$3"
  mkdir -p "$data"
  start_server "$engine" "$data" "$port" "$url"
  login_desk "$data" "$base" "$(awk '$1=="desk.li"{print $2}' "$data/stdout")" 1
  local headers=(--header "Cookie: yw_session=$SESSION" --header "X-CSRF-Token: $CSRF")
  local tickets="$base/api/v1/contracts/$CID/tickets"
  # One request by hand first: a misconfigured run stops here with the server's answer.
  local code; code=$(curl -s -o "$data/first.json" -w '%{http_code}' "${headers[@]/#--header/-H}" -H 'Content-Type: application/json' \
    --data '{"kind":"fault","level":"L3","title":"首单 / first ticket","channel":"phone","reporter_name":"值班员"}' "$tickets")
  [ "$code" = 201 ] || { log "create answered $code: $(cat "$data/first.json")"; exit 1; }
  for i in $(seq 1 "$RUNS"); do
    for c in 1 8; do
      log "yunwei $engine: creates c=$c, run $i/$RUNS"
      $MEASURE --server-pid "$SERVER_PID" ${DB_PID:+--db-pid "$DB_PID"} --warmup-secs 2 --set engine="\"$engine\"" --set run="$i" --set test='"create"' -- \
        "$BENCH" create --url "$tickets" "${headers[@]}" --tag "$engine-c${c}r$i" \
        --concurrency "$c" --duration-secs "$CREATE_SECS" --warmup-secs 2 | record
    done
  done
  stop_server
}

yw_list() { # engine data_dir port url tickets
  local engine="$1" data="$2" port="$3" url="$4" total="$5" base="http://127.0.0.1:$3"
  mkdir -p "$data"
  # First start: the demo contract and its users; desk.li changes the one-time password.
  start_server "$engine" "$data" "$port" "$url"
  login_desk "$data" "$base" "$(awk '$1=="desk.li"{print $2}' "$data/stdout")" 1
  stop_server
  log "yunwei $engine: seeding to $total tickets (not timed as a benchmark)"
  local seed_line limit=0
  [ "$engine" = postgres ] && limit="$PG_SEED_LIMIT_SECS"
  if [ "$limit" -gt 0 ]; then
    if ! seed_line=$(timeout "$limit" "$SEED" --data-dir "$data" ${url:+--database-url "$url"} --total "$total"); then
      log "seeding $total on $engine took over $limit s: falling back to $PG_FALLBACK tickets"
      echo "{\"kind\":\"seed_timeout\",\"engine\":\"$engine\",\"tickets\":$total,\"limit_s\":$limit}" | record
      psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" -c "CREATE DATABASE yw_bench" postgres
      rm -rf "$data"; mkdir -p "$data"
      start_server "$engine" "$data" "$port" "$url"
      login_desk "$data" "$base" "$(awk '$1=="desk.li"{print $2}' "$data/stdout")" 1
      stop_server
      seed_line=$("$SEED" --data-dir "$data" ${url:+--database-url "$url"} --total "$PG_FALLBACK")
    fi
  else
    seed_line=$("$SEED" --data-dir "$data" ${url:+--database-url "$url"} --total "$total")
  fi
  echo "$seed_line" | record
  local stored; stored=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["total"])' "$seed_line")
  if [ "$engine" = sqlite ]; then
    echo "{\"kind\":\"db_size_mib\",\"engine\":\"sqlite\",\"value\":$(( $(stat -c %s "$data/yunwei.db") / 1048576 ))}" | record
  fi
  start_server "$engine" "$data" "$port" "$url"
  login_desk "$data" "$base" "$NEWPW" 0
  local list="$base/api/v1/contracts/$CID/tickets?view=open&sort=time_left&limit=50"
  # The page must be full and in due order: checked once before timing it.
  curl -s -H "Cookie: yw_session=$SESSION" "$list" > "$data/page.json"
  python3 - "$data/page.json" <<'EOF' >&2
import json, sys
p = json.load(open(sys.argv[1]))
rows = p["rows"]
assert len(rows) == 50, f"{len(rows)} rows"
dues = [r["due_sort"] for r in rows]
assert dues == sorted(dues), "not in due order"
assert all(r["is_open"] for r in rows)
print(f"first page: 50 open rows, first {rows[0]['number']} left_ms={rows[0]['left_ms']} breached={rows[0]['breached']}, "
      f"last {rows[-1]['number']} left_ms={rows[-1]['left_ms']}, next_cursor={bool(p['next_cursor'])}")
EOF
  for i in $(seq 1 "$RUNS"); do
    for c in 1 8; do
      log "yunwei $engine: list first page at $stored tickets, c=$c, run $i/$RUNS"
      $MEASURE --server-pid "$SERVER_PID" ${DB_PID:+--db-pid "$DB_PID"} --warmup-secs 2 --set engine="\"$engine\"" --set run="$i" \
        --set test='"list_open_time_left"' --set tickets="$stored" -- \
        "$BENCH" get --url "$list" --header "Cookie: yw_session=$SESSION" \
        --concurrency "$c" --duration-secs "$LIST_SECS" --warmup-secs 2 | record
    done
  done
  stop_server
}

if [ "$SKIP_RT" != 1 ]; then run_rt5; fi
for engine in $ENGINES; do
  case "$engine" in
    sqlite)
      yw_creates sqlite "$WORK/sqlite-create" 18490 ""
      rm -rf "$WORK/sqlite-create"
      yw_list sqlite "$WORK/sqlite-list" 18490 "" "$TICKETS"
      rm -rf "$WORK/sqlite-list"
      ;;
    postgres)
      if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then log "PostgreSQL not reachable: skipped"; continue; fi
      PGURL="postgres://postgres@127.0.0.1:5432/yw_bench"
      # The PostgreSQL server's CPU is sampled too (its postmaster's process tree).
      DB_PID=$(head -1 "$(psql -Atq -h 127.0.0.1 -U postgres -c "SHOW data_directory" postgres)/postmaster.pid" 2>/dev/null || true)
      psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" -c "CREATE DATABASE yw_bench" postgres
      yw_creates postgres "$WORK/pg-create" 18491 "$PGURL"
      psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" -c "CREATE DATABASE yw_bench" postgres
      yw_list postgres "$WORK/pg-list" 18491 "$PGURL" "$PG_TICKETS"
      psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" postgres
      ;;
  esac
done

RT_FILES=()
[ "$SKIP_RT" != 1 ] && RT_FILES=("$RT_OUT")
log "results: $OUT ${RT_FILES[*]}"
python3 bench/summarize_tickets.py "$OUT" "${RT_FILES[@]}"
