#!/usr/bin/env bash
# Asset list and search benchmark for BENCHMARKS.md (issue 5): 100,000 assets in the 001 demo
# contract (imported with `yunwei asset import`, not timed), then the first page of the ledger through
# the API, 8 clients, for filters, searches for common and rare terms of three characters or more
# and of two, and a common term under a filter that leaves nothing.
#
#   bench/assets_list.sh [runs]                   # default 3 runs per figure, SQLite and PostgreSQL
#   ENGINES=sqlite bench/assets_list.sh 5
#   BIN_DIR=/path/to/release bench/assets_list.sh # binaries built elsewhere (e.g. another commit)
#
# Output: one JSON line per run and query on stderr, then a markdown table per engine on stdout:
# median (min–max) over the runs of p50, p99 and pages per second.
# Needs: a release build (done here unless BIN_DIR is set), curl, python3; for PostgreSQL psql and a
# server on 127.0.0.1:5432 (trust auth; the database yw_bench_assets is dropped and created).
set -euo pipefail
# BIN_DIR as the caller wrote it, relative to where it was called from.
if [ -n "${BIN_DIR:-}" ]; then BIN_DIR="$(cd "$BIN_DIR" && pwd)"; fi
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
ROWS="${ROWS:-100000}"
SECS="${SECS:-10}"   # measured seconds per figure (after 2 s of warm-up)
ENGINES="${ENGINES:-sqlite postgres}"
export YUNWEI_LOG=warn PGOPTIONS="${PGOPTIONS:---client-min-messages=warning}"
unset YUNWEI_DATABASE_URL
if [ -n "${BIN_DIR:-}" ]; then
  YW="$BIN_DIR/yunwei"
  BENCH="$BIN_DIR/yunwei-bench"
else
  cargo build --release -q -p yunwei -p yunwei-bench
  TARGET="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"
  YW="$TARGET/yunwei"
  BENCH="$TARGET/yunwei-bench"
fi
NEWPW='Bench#Ledger2026x'
PORT=18493
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
csrf_of() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//; s/"$//'; }
enc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }

python3 bench/gen_ledger.py "$ROWS" > "$WORK/ledger.csv"
: > "$WORK/results.jsonl"

for engine in $ENGINES; do
  dir="$WORK/$engine"
  args=(--data-dir "$dir")
  if [ "$engine" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench_assets WITH (FORCE)" \
      -c "CREATE DATABASE yw_bench_assets" postgres
    args+=(--database-url postgres://postgres@127.0.0.1:5432/yw_bench_assets)
  fi
  # The demo (users, contracts 004 and 001), then the assets into 001.
  "$YW" "${args[@]}" serve --demo --listen 127.0.0.1:$PORT > "$WORK/stdout" 2> "$WORK/stderr" &
  pid=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
  kill -TERM "$pid"; wait "$pid" || true
  "$YW" "${args[@]}" asset import "$WORK/ledger.csv" --contract CG-ZWFW-2026 > "$WORK/import.txt"
  if [ "$engine" = postgres ]; then
    # What autovacuum would do within a minute of the import: the planner's statistics.
    psql -q -h 127.0.0.1 -U postgres -c "VACUUM ANALYZE" yw_bench_assets
  fi
  "$YW" "${args[@]}" serve --listen 127.0.0.1:$PORT >> "$WORK/stdout" 2>> "$WORK/stderr" &
  pid=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
  base=http://127.0.0.1:$PORT
  pw=$(awk '$1=="eng.wang"{print $2}' "$WORK/stdout" | head -1)
  jar="$WORK/jar-$engine"
  curl -s -c "$jar" -b "$jar" "$base/login" > "$WORK/login.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "login=eng.wang" --data-urlencode "password=$pw" \
    --data-urlencode "_csrf=$(csrf_of "$WORK/login.html")" "$base/login"
  curl -s -c "$jar" -b "$jar" "$base/password" > "$WORK/pw.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "current_password=$pw" --data-urlencode "new_password=$NEWPW" \
    --data-urlencode "confirm_password=$NEWPW" --data-urlencode "_csrf=$(csrf_of "$WORK/pw.html")" "$base/password"
  session=$(awk '$6=="yw_session"{print $7}' "$jar")
  cid=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts" | python3 -c \
    'import json,sys; print([c["id"] for c in json.load(sys.stdin)["items"] if c["code"]=="CG-ZWFW-2026"][0])')
  site=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts/$cid/sites?limit=500" | python3 -c \
    'import json,sys; print([s["id"] for s in json.load(sys.stdin)["items"] if s["name"]=="UPS控制间"][0])')
  queries=(
    "kind=network"
    "status=in_service&site_id=$site"
    "q=$(enc 交换机)"
    "q=ZC-077777"
    "q=$(enc 华为)"
    "q=$(enc 机房)"
    "kind=host&q=$(enc 交换机)"
  )
  # What each query finds on its first page (a check that the ledger is what the figures say).
  for q in "${queries[@]}"; do
    n=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts/$cid/assets?limit=50&$q" \
      | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
    echo "{\"kind\":\"meta\",\"engine\":\"$engine\",\"rows\":$ROWS,\"query\":\"$q\",\"first_page_items\":$n}" >&2
  done
  for i in $(seq 1 "$RUNS"); do
    for q in "${queries[@]}"; do
      "$BENCH" get --url "$base/api/v1/contracts/$cid/assets?limit=50&$q" --header "Cookie: yw_session=$session" \
        --concurrency 8 --duration-secs "$SECS" --warmup-secs 2 | tail -1 \
        | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(engine=sys.argv[1], run=int(sys.argv[2]), query=sys.argv[3]); print(json.dumps(d, ensure_ascii=False))' \
          "$engine" "$i" "$(python3 -c 'import sys,urllib.parse; print(urllib.parse.unquote(sys.argv[1]))' "$q")" \
        | tee -a "$WORK/results.jsonl" >&2
    done
  done
  kill -TERM "$pid"; wait "$pid" || true
done

python3 - "$WORK/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def fig(v, fmt):
    v = sorted(v)
    return f"{fmt(statistics.median(v))} ({fmt(v[0])}–{fmt(v[-1])})"
ms = lambda x: f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"
for engine in dict.fromkeys(r["engine"] for r in rows):
    print(f"\n{engine}\n\n| query | p50 | p99 | pages/s |\n| --- | --- | --- | --- |")
    for q in dict.fromkeys(r["query"] for r in rows if r["engine"] == engine):
        rs = [r for r in rows if r["engine"] == engine and r["query"] == q]
        print(f"| `{q}` | {fig([r['p50_ms'] for r in rs], ms)} | **{fig([r['p99_ms'] for r in rs], ms)}** "
              f"| {fig([r['rps'] for r in rs], lambda x: f'{x:.0f}')} |")
EOF
