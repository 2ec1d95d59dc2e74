#!/usr/bin/env bash
# Benchmarks for BENCHMARKS.md (not a test): password login and an authenticated API read under
# concurrency, on SQLite and PostgreSQL, plus the idle server's resident memory.
#
#   bench/run.sh [runs]        # default 5 runs per figure; prints JSON lines and a summary
#   ENGINES=sqlite KINDS=get bench/run.sh 1   # a quick subset
#
# Needs: a release build (done here), curl, and for PostgreSQL psql + a server on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
ENGINES="${ENGINES:-sqlite postgres}"
KINDS="${KINDS:-get login}"
export YUNWEI_LOG=warn
cargo build --release -q -p yunwei -p yunwei-bench
TARGET="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"  # absolute, whichever way it was given
YW="$TARGET/yunwei"
BENCH="$TARGET/yunwei-bench"
NEWPW='Bench#Load2026x'
OUT="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

csrf_of() { grep -o 'name="_csrf" value="[^"]*"' "$1" | head -1 | sed 's/.*value="//; s/"$//'; }

run_engine() {
  local engine="$1" port="$2" url="$3"
  local data="$OUT/$engine"
  mkdir -p "$data"
  "$YW" --data-dir "$data" ${url:+--database-url "$url"} serve --demo --listen "127.0.0.1:$port" > "$data/stdout" 2> "$data/stderr" &
  local pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$data/stdout" 2>/dev/null && break; sleep 0.1; done
  local base="http://127.0.0.1:$port"
  local pw; pw=$(awk '$1=="eng.wang"{print $2}' "$data/stdout")
  # First login with the one-time password, then the forced change, as a person would.
  local jar="$data/jar"
  curl -s -c "$jar" -b "$jar" "$base/login" > "$data/login.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "login=eng.wang" --data-urlencode "password=$pw" \
    --data-urlencode "_csrf=$(csrf_of "$data/login.html")" "$base/login"
  curl -s -c "$jar" -b "$jar" "$base/password" > "$data/pw.html"
  curl -s -c "$jar" -b "$jar" -o /dev/null --data-urlencode "current_password=$pw" --data-urlencode "new_password=$NEWPW" \
    --data-urlencode "confirm_password=$NEWPW" --data-urlencode "_csrf=$(csrf_of "$data/pw.html")" "$base/password"
  local session; session=$(awk '$6=="yw_session"{print $7}' "$jar")
  local cid; cid=$(curl -s -H "Cookie: yw_session=$session" "$base/api/v1/contracts" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
  # The allocator returns freed memory to the system after a few seconds: measure a settled server.
  sleep 15
  local rss_idle; rss_idle=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  echo "{\"kind\":\"idle_rss_kb\",\"engine\":\"$engine\",\"value\":$rss_idle}"
  case " $KINDS " in *" get "*) ;; *) RUNS_GET=0 ;; esac
  for i in $(seq 1 "${RUNS_GET:-$RUNS}"); do
    "$BENCH" get --url "$base/api/v1/contracts/$cid/sites" --header "Cookie: yw_session=$session" \
      --concurrency 16 --duration-secs 10 --warmup-secs 2 | tail -1 | sed "s/^{/{\"engine\":\"$engine\",\"run\":$i,/"
  done
  case " $KINDS " in *" login "*) ;; *) RUNS_LOGIN=0 ;; esac
  for i in $(seq 1 "${RUNS_LOGIN:-$RUNS}"); do
    "$BENCH" login --url "$base" --login eng.wang --password "$NEWPW" --concurrency 4 --duration-secs 10 --warmup-secs 1 \
      | tail -1 | sed "s/^{/{\"engine\":\"$engine\",\"run\":$i,/"
  done
  sleep 15
  local rss_after; rss_after=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  echo "{\"kind\":\"rss_after_load_kb\",\"engine\":\"$engine\",\"value\":$rss_after}"
  kill -TERM "$pid"; wait "$pid" || true
}

{
  case " $ENGINES " in *" sqlite "*) run_engine sqlite 18480 "" ;; esac
  case " $ENGINES " in *" postgres "*) ;; *) exit 0 ;; esac
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" -c "CREATE DATABASE yw_bench" postgres
    run_engine postgres 18481 "postgres://postgres@127.0.0.1:5432/yw_bench"
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench WITH (FORCE)" postgres
  else
    echo "PostgreSQL not reachable: skipped" >&2
  fi
} | tee "$OUT/results.jsonl"
python3 "$(dirname "$0")/summarize.py" < "$OUT/results.jsonl"
