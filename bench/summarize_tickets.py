#!/usr/bin/env python3
"""Markdown summary of bench/tickets.sh: yunwei's JSON lines (tickets-*.jsonl) and RT5's from the same
run (rt5-*.jsonl, written by ../shared/peers/rt5_bench.py). Medians with the spread (min–max) over
runs; runs during which other tenants used more than 0.3 cores are counted in `noisy`.

usage: summarize_tickets.py tickets-STAMP.jsonl [rt5-STAMP.jsonl]
"""
import json
import statistics
import sys

NOISE = 0.3


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = fmt.format(statistics.median(vals))
    return m if len(vals) == 1 else f"{m} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def noisy(runs):
    return sum(1 for r in runs if (r.get("other_cpu_cores") or 0) > NOISE)


def main():
    rows = load(sys.argv[1:])
    yw = [r for r in rows if "engine" in r and r.get("test") in ("create", "list_open_time_left")]
    # RT5: timed create runs only (not the warm-up or the untuned seed fill).
    rt = [r for r in rows if r.get("test") == "create" and "auth" in r
          and r.get("tag", "")[:2] in ("c1", "c8")]
    meta = next((r for r in rows if r.get("kind") == "meta"), {})
    if meta:
        print(f"commit {meta.get('commit')}{' (uncommitted changes)' if meta.get('dirty') else ''}, "
              f"{meta.get('ts')}; yunwei runs per figure: {meta.get('runs')}, RT5 repetitions: {meta.get('rt_reps')}\n")

    print("### Ticket creation\n")
    print("| system | concurrency | runs | creates/s | p50 ms | p99 ms | server CPU ms/create | server cores | PostgreSQL CPU ms/create | other tenants' cores (noisy runs) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rt:
        groups.setdefault(("Request Tracker 5 (SQLite)", r["concurrency"]), []).append(
            {"rps": r["throughput_rps"], "p50": r["lat_median_ms"], "p99": r["lat_p99_ms"],
             "cpu": r.get("server_cpu_ms_per_req"), "cores": r.get("server_cpu_util_cores"),
             "other": r.get("other_cpu_cores"), "other_cpu_cores": r.get("other_cpu_cores"), "db": None})
    for r in yw:
        if r["test"] != "create":
            continue
        name = "yunwei (SQLite)" if r["engine"] == "sqlite" else "yunwei (PostgreSQL)"
        groups.setdefault((name, r["concurrency"]), []).append(
            {"rps": r["rps"], "p50": r["p50_ms"], "p99": r["p99_ms"], "cpu": r.get("server_cpu_ms_per_req"),
             "cores": r.get("server_cpu_util_cores"), "other": r.get("other_cpu_cores"),
             "other_cpu_cores": r.get("other_cpu_cores"), "db": r.get("db_cpu_ms_per_req")})
    for (name, c), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        print(f"| {name} | {c} | {len(runs)} | {spread([x['rps'] for x in runs], '{:.1f}')} | "
              f"{spread([x['p50'] for x in runs], '{:.2f}')} | {spread([x['p99'] for x in runs], '{:.2f}')} | "
              f"{spread([x['cpu'] for x in runs], '{:.2f}')} | {spread([x['cores'] for x in runs], '{:.2f}')} | "
              f"{spread([x['db'] for x in runs], '{:.2f}')} | {spread([x['other'] for x in runs], '{:.2f}')} ({noisy(runs)}) |")

    rt_by_c = {c: runs for (name, c), runs in groups.items() if name.startswith("Request")}
    if rt_by_c:
        print("\n### yunwei / RT5, creates per second (same run)\n")
        print("| engine | concurrency | ratio of medians | worst case (yunwei min / RT5 max) |")
        print("|---|---|---|---|")
        for (name, c), runs in sorted(groups.items()):
            if name.startswith("Request") or c not in rt_by_c:
                continue
            y = [x["rps"] for x in runs]
            t = [x["rps"] for x in rt_by_c[c]]
            print(f"| {name} | {c} | {med(y) / med(t):.0f}× | {min(y) / max(t):.0f}× |")

    lists = [r for r in yw if r["test"] == "list_open_time_left"]
    if lists:
        print("\n### First page of open tickets, breaching soonest first (50 rows)\n")
        print("| engine | tickets stored | concurrency | runs | pages/s | p50 ms | p99 ms | server CPU ms/page | PostgreSQL CPU ms/page | other tenants' cores (noisy runs) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        lg = {}
        for r in lists:
            lg.setdefault((r["engine"], r.get("tickets"), r["concurrency"]), []).append(r)
        for (engine, n, c), runs in sorted(lg.items()):
            print(f"| {engine} | {n:,} | {c} | {len(runs)} | {spread([x['rps'] for x in runs], '{:.0f}')} | "
                  f"{spread([x['p50_ms'] for x in runs], '{:.2f}')} | {spread([x['p99_ms'] for x in runs], '{:.2f}')} | "
                  f"{spread([x.get('server_cpu_ms_per_req') for x in runs], '{:.2f}')} | "
                  f"{spread([x.get('db_cpu_ms_per_req') for x in runs], '{:.2f}')} | "
                  f"{spread([x.get('other_cpu_cores') for x in runs], '{:.2f}')} ({noisy(runs)}) |")

    seeds = [r for r in rows if r.get("kind") in ("seed", "seed_timeout", "db_size_mib")]
    if seeds:
        print("\n### Seeding (bypasses the API; not a benchmark)\n")
        for s in seeds:
            if s["kind"] == "seed":
                print(f"- {s['engine']}: {s['inserted']:,} tickets inserted ({s['open']:,} open, {s['events']:,} history rows) "
                      f"in {s['secs']} s; {s['total']:,} stored")
            elif s["kind"] == "db_size_mib":
                print(f"- {s['engine']}: database file {s['value']} MiB")
            else:
                print(f"- {s['engine']}: seeding {s['tickets']:,} exceeded {s['limit_s']} s; fell back")
    errors = sum(r.get("errors", 0) for r in yw) + sum(r.get("errors", 0) for r in rt)
    print(f"\nerrors in timed runs: {errors}")


if __name__ == "__main__":
    main()
