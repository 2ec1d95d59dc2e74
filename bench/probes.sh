#!/usr/bin/env bash
# Probe benchmark (issue 6) for BENCHMARKS.md "Probes (issue 6)": yunwei's monitor engine beside
# Prometheus blackbox_exporter in ONE run, both probing the same private nginx (the peers'
# start_probe_peers.sh: 127.0.0.1:18081) at the same fixed rates, alternating run by run.
#
#   bench/probes.sh                      # defaults below, about 15 minutes
#   RATES=500 REPS=1 DURATION=10 SCHED=0 bench/probes.sh   # a quick look
#
# Per rate and kind (HTTP GET of a ~1 KiB page / TCP connect), one after the other:
#   blackbox_exporter: bb_bench.py (hey drives /probe at the rate; exporter CPU from /proc)
#   yunwei:            probe_load rate (RATE monitors at 1 s through the engine; own CPU from /proc)
# then the scheduler alone (one timer task + heap vs one task per monitor, 20,000 monitors) and a
# 20,000-monitor HTTP schedule at a 60 s interval (lateness of every run, CPU).
# Every timed run first waits (at most QUIET_MAX s) for an idle machine, like the peer scripts (which
# wait up to 180 s), and records how busy the rest of the machine was (other_cpu_cores).
#
# Env: RATES=200,500,1000 KINDS="http tcp" DURATION=20 REPS=3 CLIENTS="engine reqwest"
#      OVERHEAD=1 SCHED=1 SCHED_MONITORS=20000 SCHED_INTERVAL=60 SCHED_DURATION=180
#      QUIET_MAX=60 PEERS=../shared/peers DATA=bench/peer-data KEEP=0 (leave nginx/exporter running)
set -uo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-200,500,1000}; KINDS=${KINDS:-http tcp}; DURATION=${DURATION:-20}; REPS=${REPS:-3}
CLIENTS=${CLIENTS:-engine reqwest}; OVERHEAD=${OVERHEAD:-1}; SCHED=${SCHED:-1}
SCHED_MONITORS=${SCHED_MONITORS:-20000}; SCHED_INTERVAL=${SCHED_INTERVAL:-60}; SCHED_DURATION=${SCHED_DURATION:-180}
PEERS=$(cd "${PEERS:-../shared/peers}" && pwd); DATA=${DATA:-bench/peer-data}; KEEP=${KEEP:-0}
QUIET_MAX=${QUIET_MAX:-60}
mkdir -p "$DATA"
OUT=${OUT:-$DATA/probes-$(date +%Y%m%d-%H%M%S).jsonl}

for bin in /usr/bin/prometheus-blackbox-exporter /usr/sbin/nginx /usr/bin/hey; do
  [ -x "$bin" ] || { echo "$bin missing: run $PEERS/install_probe_peers.sh" >&2; exit 1; }
done
cargo build --release -q -p yunwei-bench --bin probe_load || exit 1
PL="${CARGO_TARGET_DIR:-target}/release/probe_load"

"$PEERS/machine_facts.sh" > "${OUT%.jsonl}.facts.txt"
echo "rustc: $(rustc --version)" >> "${OUT%.jsonl}.facts.txt"
"$PEERS/start_probe_peers.sh" | tee "${OUT%.jsonl}.smoke.txt"
[ "$KEEP" = 1 ] || trap '"$PEERS/stop_probe_peers.sh"' EXIT

quiet() {
  python3 -c "import sys; sys.path.insert(0, '$PEERS'); import procmon; w = procmon.wait_quiet(max_wait=$QUIET_MAX); print(f'waited {w[0]} s for an idle machine (busy cores before: {w[1]})')" >&2
}

# Warm-ups (not recorded): the exporter, nginx and our first connections.
python3 "$PEERS/bb_bench.py" --rates 200 --duration 5 --reps 1 --quiet 0 > /dev/null
"$PL" rate --kind http --rate 200 --duration 3 --warmup 1 > /dev/null

for rep in $(seq 1 "$REPS"); do
  for kind in $KINDS; do
    module=$([ "$kind" = http ] && echo http_2xx || echo tcp_connect)
    for rate in ${RATES//,/ }; do
      echo "== rep $rep: $kind at $rate/s" >&2
      quiet
      python3 "$PEERS/bb_bench.py" --modules "$module" --rates "$rate" --duration "$DURATION" --reps 1 --pause 1 --quiet 0 --out "$OUT"
      clients=$([ "$kind" = http ] && echo "$CLIENTS" || echo engine)
      for client in $clients; do
        quiet
        "$PL" --out "$OUT" rate --kind "$kind" --rate "$rate" --duration "$DURATION" --client "$client"
      done
    done
  done
done

if [ "$OVERHEAD" = 1 ]; then
  for rep in $(seq 1 "$REPS"); do
    for design in heap tasks; do
      quiet
      "$PL" --out "$OUT" sched --design "$design" --monitors 20000 --interval-ms 1000 --duration 15
    done
  done
fi

if [ "$SCHED" = 1 ]; then
  quiet
  "$PL" --out "$OUT" schedule --monitors "$SCHED_MONITORS" --interval-s "$SCHED_INTERVAL" --duration-s "$SCHED_DURATION"
fi

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]

def ms(vals, f="{:.3f}"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    return (f.format(m) + (f" ({f.format(min(vals))}–{f.format(max(vals))})" if len(vals) > 1 else ""))

print("\n| kind | rate/s | yunwei CPU s / 1,000 | blackbox CPU s / 1,000 | ratio | yunwei p99 ms | blackbox p99 ms | yunwei (reqwest) CPU s / 1,000 | other cores busy (y / bb) | n |")
print("|---|---|---|---|---|---|---|---|---|---|")
for kind, module in (("http", "http_2xx"), ("tcp", "tcp_connect")):
    rates = sorted({r["target_rate_per_s"] for r in rows if r.get("test") == "yunwei_probe" and r["kind"] == kind})
    for rate in rates:
        y = [r for r in rows if r.get("test") == "yunwei_probe" and r["kind"] == kind and r["client"] == "engine" and r["target_rate_per_s"] == rate]
        q = [r for r in rows if r.get("test") == "yunwei_probe" and r["kind"] == kind and r["client"] == "reqwest" and r["target_rate_per_s"] == rate]
        b = [r for r in rows if r.get("test") == "blackbox_probe" and r["module"] == module and r["target_rate_per_s"] == rate]
        yc = [r["cpu_s_per_1000_probes"] for r in y]
        bc = [r["exporter_cpu_s_per_1000_probes"] for r in b]
        ratios = [a / c for a, c in zip(yc, bc) if a and c]
        print(f"| {kind} | {rate} | {ms(yc)} | {ms(bc)} | {ms(ratios, '{:.2f}')} | {ms([r['lat_p99_ms'] for r in y])} | "
              f"{ms([r['lat_p99_ms'] for r in b])} | {ms([r['cpu_s_per_1000_probes'] for r in q])} | "
              f"{ms([r['window']['other_cpu_cores'] for r in y], '{:.2f}')} / {ms([r['other_cpu_cores'] for r in b], '{:.2f}')} | {len(y)}/{len(b)} |")
s = [r for r in rows if r.get("test") == "scheduler_overhead"]
if s:
    print("\n| scheduler (no-op probe) | monitors | runs/s | CPU s / 1,000 runs | lateness p99 ms | max ms | peak RSS MiB | n |")
    print("|---|---|---|---|---|---|---|---|")
    for d in ("heap", "tasks"):
        g = [r for r in s if r["design"] == d]
        if g:
            print(f"| {d} | {g[0]['monitors']} | {ms([r['runs'] / r['duration_s'] for r in g], '{:.0f}')} | {ms([r['cpu_s_per_1000_runs'] for r in g], '{:.4f}')} | "
                  f"{ms([r['lateness_p99_ms'] for r in g])} | {ms([r['lateness_max_ms'] for r in g])} | {ms([r['peak_rss_mib'] for r in g], '{:.1f}')} | {len(g)} |")
for r in rows:
    if r.get("test") == "yunwei_schedule":
        print(f"\nschedule: {r['monitors']} monitors every {r['interval_s']} s for {r['duration_s']} s: {r['runs']} runs "
              f"(expected ~{r['expected_runs']}), ok {r['runs_ok']}, late > 1 s: {r['late_runs_over_1s']}, "
              f"lateness median/p99/max {r['lateness_median_ms']}/{r['lateness_p99_ms']}/{r['lateness_max_ms']} ms, "
              f"CPU {r['cpu_s']} s = {r['cpu_s_per_1000_probes']} s per 1,000 probes ({r['cpu_util_cores']} cores), "
              f"peak RSS {r['peak_rss_mib']} MiB, other cores busy {r['window']['other_cpu_cores']}")
PY
echo "results: $OUT"
