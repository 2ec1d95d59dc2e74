#!/usr/bin/env python3
"""Runs one yunwei-bench measurement the way the peer drivers (../shared/peers) measure RT5: waits
(bounded) for an idle machine, samples the server's CPU and memory from /proc during the run, and
adds to the load generator's JSON line the server's CPU per request, the load generator's own CPU
and the CPU other tenants used meanwhile (other_cpu_cores).

usage: measure.py --peers DIR --server-pid PID [--set key=value ...] -- yunwei-bench ARGS...
Prints the merged JSON line (stdout); the load generator's human line goes to stderr.
Env: QUIET=0 skips the wait for an idle machine; QUIET_MAX_WAIT=120 bounds it (seconds).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", required=True, help="directory holding procmon.py")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--db-pid", type=int, help="the database server's root process (PostgreSQL's postmaster)")
    ap.add_argument("--set", action="append", default=[], help="key=value added to the JSON line")
    ap.add_argument("--warmup-secs", type=float, default=0,
                    help="the load generator's warm-up: server sampling starts after it")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    sys.path.insert(0, args.peers)
    import procmon  # noqa: E402

    max_wait = float(os.environ.get("QUIET_MAX_WAIT", "120"))
    quiet = procmon.wait_quiet(max_wait=max_wait) if os.environ.get("QUIET", "1") == "1" else (0, None)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    # Server CPU is counted over the measured phase only, so that it divides by measured requests.
    time.sleep(args.warmup_secs)
    mon = procmon.Monitor(args.server_pid).start()
    db_mon = procmon.Monitor(args.db_pid, pss=False).start() if args.db_pid else None
    out, _ = proc.communicate()
    res = mon.stop()
    db_res = db_mon.stop() if db_mon else None
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    for l in out.splitlines():
        if not l.startswith("{"):
            print(l, file=sys.stderr)
    if proc.returncode != 0 or not lines:
        print(json.dumps({"error": f"load generator exited {proc.returncode}", "cmd": cmd}))
        sys.exit(1)
    r = json.loads(lines[-1])
    for kv in args.set:
        k, _, v = kv.partition("=")
        try:
            r[k] = json.loads(v)
        except ValueError:
            r[k] = v
    ok = r.get("requests", 0) - r.get("errors", 0)
    # This process runs one child only: RUSAGE_CHILDREN is the load generator's CPU.
    client_cpu = ru.ru_utime + ru.ru_stime
    r.update(res)
    r["client_cpu_s"] = round(client_cpu, 3)
    r["client_wall_s"] = round(wall, 3)
    if ok:
        r["server_cpu_ms_per_req"] = round(res["server_cpu_s"] * 1000 / ok, 3)
    # The load generator's average cores over its whole life (warm-up included).
    r["client_cpu_util_cores"] = round(client_cpu / max(1e-9, wall), 3)
    db_cores = 0.0
    if db_res:
        db_cores = db_res["server_cpu_util_cores"]
        r["db_cpu_s"] = db_res["server_cpu_s"]
        r["db_cpu_util_cores"] = db_cores
        r["db_peak_rss_mib"] = db_res["peak_tree_rss_mib"]
        if ok:
            r["db_cpu_ms_per_req"] = round(db_res["server_cpu_s"] * 1000 / ok, 3)
    r["other_cpu_cores"] = round(res["system_busy_cores"] - res["server_cpu_util_cores"] - db_cores
                                 - r["client_cpu_util_cores"], 3)
    r["waited_for_quiet_s"], r["busy_cores_before"] = quiet
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
