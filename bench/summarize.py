#!/usr/bin/env python3
"""Median and spread (min–max) per engine and kind from bench/run.sh JSON lines."""
import json
import statistics
import sys
from collections import defaultdict

groups = defaultdict(list)
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    groups[(r.get("engine", "?"), r["kind"])].append(r)

for (engine, kind), rows in sorted(groups.items()):
    if "value" in rows[0]:
        print(f"{engine:9} {kind:18} {rows[0]['value'] / 1024:.1f} MiB")
        continue
    def spread(key):
        vals = [r[key] for r in rows]
        return f"{statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})"
    print(f"{engine:9} {kind:18} runs={len(rows)} c={rows[0]['concurrency']} rps={spread('rps')} "
          f"p50={spread('p50_ms')} p99={spread('p99_ms')} ms errors={sum(r['errors'] for r in rows)}")
