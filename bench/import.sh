#!/usr/bin/env bash
# Asset import benchmark for BENCHMARKS.md (issue 5): a 10,000-row .xlsx imported end to end with
# `yunwei asset import FILE --contract CODE` (release build): process start, reading the workbook,
# the dry-run check, the check again and the write in one transaction, exit. Each run starts from a
# fresh database holding only the 001 seed contract (its sites are what the sheet's 站点 names).
#
#   bench/import.sh [runs]                      # default 5 runs per figure, SQLite and PostgreSQL
#   ROWS=100000 ENGINES=sqlite bench/import.sh 3
#   BIN_DIR=/path/to/release bench/import.sh    # a binary built elsewhere (e.g. another commit)
#
# The sheet: python3 writes a CSV of ROWS assets (name, model, brand, unit, quantity, asset number,
# site, install date, status, IP), which `yunwei asset import` loads into a scratch database and
# `yunwei asset export` writes out as .xlsx, so the file is the product's own import layout.
# Output: one line per run on stderr, a markdown table row per engine and figure on stdout.
# Needs: python3; for PostgreSQL psql and a server on 127.0.0.1:5432 (trust auth).
set -euo pipefail
# BIN_DIR as the caller wrote it, relative to where it was called from.
if [ -n "${BIN_DIR:-}" ]; then BIN_DIR="$(cd "$BIN_DIR" && pwd)"; fi
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
ROWS="${ROWS:-10000}"
ENGINES="${ENGINES:-sqlite postgres}"
CODE="CG-ZWFW-2026"
export YUNWEI_LOG="${YUNWEI_LOG:-warn}" PGOPTIONS="${PGOPTIONS:---client-min-messages=warning}"
unset YUNWEI_DATABASE_URL

if [ -n "${BIN_DIR:-}" ]; then
  YW="$BIN_DIR/yunwei"
else
  cargo build --release -q -p yunwei
  YW="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/yunwei"
fi
CONTRACT="$(pwd)/contracts/001-chenggong-service-center.toml"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 bench/gen_ledger.py "$ROWS" >"$WORK/ledger.csv"

# The .xlsx: the CSV through a scratch database and the product's export.
"$YW" --data-dir "$WORK/seed" contract import "$CONTRACT" >/dev/null
"$YW" --data-dir "$WORK/seed" asset import "$WORK/ledger.csv" --contract "$CODE" >/dev/null
"$YW" --data-dir "$WORK/seed" asset export --contract "$CODE" --out "$WORK/ledger.xlsx" >/dev/null
echo "sheet: $ROWS rows, $(( $(stat -c %s "$WORK/ledger.xlsx") / 1024 )) KiB .xlsx" >&2

# Milliseconds of one command.
timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >"$WORK/out.txt"
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

# median (min–max) of the numbers on stdin, in seconds.
summary() {
  python3 -c '
import statistics, sys
v = sorted(int(x) / 1000 for x in sys.stdin.read().split())
print(f"{statistics.median(v):.2f} s ({v[0]:.2f}–{v[-1]:.2f})")'
}

fresh() { # engine → the --database-url / --data-dir arguments of a new, empty database
  local engine="$1" run="$2"
  case "$engine" in
    sqlite) echo "--data-dir $WORK/run-$run" ;;
    postgres)
      psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench_import WITH (FORCE)" \
        -c "CREATE DATABASE yw_bench_import" postgres
      echo "--data-dir $WORK/run-$run --database-url postgres://postgres@127.0.0.1:5432/yw_bench_import" ;;
  esac
}

echo "| engine | rows | dry run (read + check) | import (read + check + write) |"
echo "| --- | --- | --- | --- |"
for engine in $ENGINES; do
  : >"$WORK/dry.ms"; : >"$WORK/import.ms"
  for run in $(seq 1 "$RUNS"); do
    # shellcheck disable=SC2046
    args=$(fresh "$engine" "$run")
    # shellcheck disable=SC2086
    "$YW" $args contract import "$CONTRACT" >/dev/null
    # shellcheck disable=SC2086
    dry=$(timed "$YW" $args asset import "$WORK/ledger.xlsx" --contract "$CODE" --dry-run)
    grep -q "all $ROWS row(s) are good" "$WORK/out.txt" || { cat "$WORK/out.txt" >&2; exit 1; }
    # shellcheck disable=SC2086
    imp=$(timed "$YW" $args asset import "$WORK/ledger.xlsx" --contract "$CODE")
    grep -q "imported $ROWS asset(s)" "$WORK/out.txt" || { cat "$WORK/out.txt" >&2; exit 1; }
    echo "$dry" >>"$WORK/dry.ms"; echo "$imp" >>"$WORK/import.ms"
    echo "$engine run $run: dry run ${dry} ms, import ${imp} ms" >&2
  done
  echo "| $engine | $ROWS | $(summary <"$WORK/dry.ms") | $(summary <"$WORK/import.ms") |"
done
if [[ " $ENGINES " == *" postgres "* ]]; then
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS yw_bench_import WITH (FORCE)" postgres
fi
