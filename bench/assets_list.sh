#!/usr/bin/env bash
# Asset list and search benchmark for BENCHMARKS.md (issue 5): 100,000 assets in the 001 demo
# contract (imported with `yunwei asset import`, not timed), then the first page of the ledger through
# the API, 8 clients, for a kind filter, a status+site filter, a common search word and a search
# that matches one asset (the whole ledger is scanned).
#
#   bench/assets_list.sh [runs]       # default 3 runs per figure, SQLite
#
# Needs: a release build (done here), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
ROWS="${ROWS:-100000}"
export YUNWEI_LOG=warn
cargo build --release -q -p yunwei -p yunwei-bench
TARGET="${CARGO_TARGET_DIR:-target}/release"
YW="$(pwd)/$TARGET/yunwei"
BENCH="$(pwd)/$TARGET/yunwei-bench"
NEWPW='Bench#Ledger2026x'
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
csrf_of() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//; s/"$//'; }

# The demo (users, contracts 004 and 001), then the 100,000 assets into 001.
"$YW" --data-dir "$WORK/d" serve --demo --listen 127.0.0.1:18493 > "$WORK/stdout" 2> "$WORK/stderr" &
pid=$!
for _ in $(seq 1 200); do grep -q "listening on" "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$pid"; wait "$pid" || true
python3 bench/gen_ledger.py "$ROWS" > "$WORK/ledger.csv"
"$YW" --data-dir "$WORK/d" asset import "$WORK/ledger.csv" --contract CG-ZWFW-2026 > "$WORK/import.txt"
"$YW" --data-dir "$WORK/d" serve --listen 127.0.0.1:18493 >> "$WORK/stdout" 2>> "$WORK/stderr" &
pid=$!
sleep 2
base=http://127.0.0.1:18493
pw=$(awk '$1=="eng.wang"{print $2}' "$WORK/stdout" | head -1)
jar="$WORK/jar"
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
total=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts/$cid/assets?limit=1&q=ZC-" | head -c 80)
echo "{\"kind\":\"meta\",\"rows\":$ROWS,\"contract\":$cid}"
enc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
for i in $(seq 1 "$RUNS"); do
  for q in "kind=network" "status=in_service&site_id=$site" "q=$(enc 交换机)" "q=ZC-077777"; do
    "$BENCH" get --url "$base/api/v1/contracts/$cid/assets?limit=50&$q" --header "Cookie: yw_session=$session" \
      --concurrency 8 --duration-secs 10 --warmup-secs 2 | tail -1 \
      | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(run=int(sys.argv[1]), query=sys.argv[2]); print(json.dumps(d))' "$i" "$q"
  done
done
