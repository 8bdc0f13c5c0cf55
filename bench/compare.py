#!/usr/bin/env python3
"""Side-by-side benchmark: lastgood vs prometheus-blackbox-exporter vs monit vs wrk, and the least any client spends on lastgood's probing pattern (bench/pattern_floor).

One loopback nginx (its own config, foreground, worker_processes 1) serves every target. Each
tool runs alone against it; CPU comes from /proc/PID/stat over the measured window (after a
warm-up), peak RSS from /proc/PID/status (VmHWM). Every measurement is repeated --runs times and
the tables give the median (and the min-max range).

    python3 bench/compare.py                       # everything, 3 runs, 30 s windows
    python3 bench/compare.py --quick               # 1 run, 8 s windows: a smoke test
    python3 bench/compare.py --only lastgood,wrk   # a subset

Writes bench/results/<UTC time>.json (raw runs) and .md (the tables for docs/benchmarks.md).
Nothing here is a test: no threshold makes it fail; it reports figures and the targets beside them.
"""
import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import LASTGOOD, INFRA_CPU, ROOT, Nginx, HungServer  # noqa: F401
from runners import *  # noqa: F401,F403


# ---- report -------------------------------------------------------------------------------------

def fmt(x, digits=1):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def agg(runs, key, digits=1):
    xs = [r[key] for r in runs if r.get(key) is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(m, digits)
    return f"{fmt(m, digits)} ({fmt(min(xs), digits)}–{fmt(max(xs), digits)})"


def report(res, args):
    out = []
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out.append(f"Machine: {os.cpu_count()} cores, {cpu}; {args.runs} run(s) each, {args.seconds} s windows after {args.warmup} s warm-up; "
               f"median (min–max).\n")
    if res.get("lastgood"):
        out.append("| lastgood, N targets at 1 s | probes/s run / scheduled | share run | CPU s per 1000 probes | CPU µs/probe | peak RSS MiB | lateness p50 ms | p99 ms | ≤ 20 ms |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for n, runs in sorted(res["lastgood"].items(), key=lambda kv: int(kv[0])):
            out.append(f"| {n} | {agg(runs, 'probes_per_s', 0)} / {n} | {agg(runs, 'achieved_share', 4)} | {agg(runs, 'cpu_s_per_1000', 3)} | "
                       f"{agg(runs, 'cpu_us_per_probe')} | {agg(runs, 'rss_mib')} | {agg(runs, 'lateness_p50_ms', 2)} | "
                       f"{agg(runs, 'lateness_p99_ms', 2)} | {agg(runs, 'lateness_within_20ms', 4)} |")
        out.append("")
    if res.get("blackbox"):
        out.append("| blackbox_exporter, N targets at 1 s | probes/s | CPU µs/probe | peak RSS MiB |")
        out.append("| --- | --- | --- | --- |")
        for n, runs in sorted(res["blackbox"].items(), key=lambda kv: int(kv[0])):
            out.append(f"| {n} | {agg(runs, 'probes_per_s', 0)} | {agg(runs, 'cpu_us_per_probe')} | {agg(runs, 'rss_mib')} |")
        out.append("")
    if res.get("monit"):
        out.append("| monit, N checks, `set daemon 1` | cycle s | checks/s | CPU µs/check | peak RSS MiB |")
        out.append("| --- | --- | --- | --- | --- |")
        for n, runs in sorted(res["monit"].items(), key=lambda kv: int(kv[0])):
            out.append(f"| {n} | {agg(runs, 'cycle_s', 2)} | {agg(runs, 'checks_per_s', 0)} | {agg(runs, 'cpu_us_per_check')} | {agg(runs, 'rss_mib')} |")
        out.append("")
    if res.get("wrk"):
        out.append("| wrk (1 thread, 32 connections) | requests/s | client CPU µs/request |")
        out.append("| --- | --- | --- |")
        for k, runs in res["wrk"].items():
            out.append(f"| {k} | {agg(runs, 'requests_per_s', 0)} | {agg(runs, 'cpu_us_per_request', 2)} |")
        out.append("")
    if res.get("floor"):
        out.append("| the pattern's floor (bench/pattern_floor), N targets at 1 s | requests/s | CPU µs/request |")
        out.append("| --- | --- | --- |")
        for n, runs in sorted(res["floor"].items(), key=lambda kv: int(kv[0])):
            out.append(f"| {n} | {agg(runs, 'requests_per_s', 0)} | {agg(runs, 'cpu_us_per_request', 2)} |")
        out.append("")
    if res.get("hung"):
        out.append("| 10% hung targets (timeout 2 s) | healthy ok/s / scheduled | share | lateness p99 ms | ≤ 20 ms | monit cycle s (same targets) |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for n, runs in sorted(res["hung"].items(), key=lambda kv: int(kv[0])):
            m = res.get("monit_hung", {}).get(n, [])
            out.append(f"| {n} | {agg(runs, 'healthy_ok_per_s', 0)} / {int(n) - int(n) // 10} | {agg(runs, 'achieved_share', 4)} | "
                       f"{agg(runs, 'lateness_p99_ms', 2)} | {agg(runs, 'lateness_within_20ms', 4)} | {agg(m, 'cycle_s', 2) if m else 'n/a'} |")
        out.append("")
    if res.get("latency"):
        runs = res["latency"]
        out.append("| local_symlink, consecutive_failures 3 at 200 ms | median (min–max) |")
        out.append("| --- | --- |")
        out.append(f"| release switched → decision, ms | {agg(runs, 'detect_ms', 0)} |")
        out.append(f"| decision → symlink switched (action_finished in the ledger), ms | {agg(runs, 'decision_to_switched_ms', 1)} |")
        out.append(f"| the switch itself (execute), ms | {agg(runs, 'execute_ms', 2)} |")
        out.append("")
    # Ratios against the targets.
    lg = res.get("lastgood", {})
    rows = []
    def med(group, n, key):
        runs = res.get(group, {}).get(n)
        return median([r[key] for r in runs]) if runs else None
    for n in sorted(lg, key=int):
        a = med("lastgood", n, "cpu_us_per_probe")
        b = med("blackbox", n, "cpu_us_per_probe")
        m = med("monit", n, "cpu_us_per_check")
        f = med("floor", n, "cpu_us_per_request")
        rows.append((n, a, b, m, f))
    wrk_ka = median([r["cpu_us_per_request"] for r in res.get("wrk", {}).get("keep-alive", [])]) if res.get("wrk") else None
    if rows:
        # Round 5's targets (issue 21, target 2): ≤ 1/5 of monit's at 100 and 1 000; ≤ 1.5× wrk's
        # keep-alive client at 1 000 and 10 000, ≤ 2.5× at 100. The pattern's floor splits the
        # ratio to wrk in two: lastgood's own work (lastgood / floor) and the pattern's (floor / wrk).
        out.append("| N | lastgood / blackbox_exporter CPU per probe (target ≤ 0.10) | lastgood / monit (target ≤ 0.20) | lastgood / wrk keep-alive (target ≤ 1.5; ≤ 2.5 at 100) | lastgood / the pattern's floor | the pattern's floor / wrk |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for n, a, b, m, f in rows:
            out.append(f"| {n} | {fmt(a / b, 3) if a and b else 'n/a'} | {fmt(a / m, 3) if a and m else 'n/a'} | {fmt(a / wrk_ka, 2) if a and wrk_ka else 'n/a'} | "
                       f"{fmt(a / f, 2) if a and f else 'n/a'} | {fmt(f / wrk_ka, 2) if f and wrk_ka else 'n/a'} |")
        out.append("")
    return "\n".join(out)


def save_partial(res):
    with open(os.path.join(ROOT, "bench", "results", "partial.json"), "w") as f:
        json.dump(res, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--bb-sizes", default="100,1000")
    ap.add_argument("--monit-sizes", default="100,1000")
    ap.add_argument("--hung-sizes", default="1000,10000")
    ap.add_argument("--only", default="lastgood,floor,blackbox,monit,wrk,hung,latency")
    ap.add_argument("--quick", action="store_true", help="1 run, 8 s windows, 2 s warm-up")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds, args.warmup = 1, 8, 2
    only = set(args.only.split(","))
    for tool in ["nginx", "wrk", "monit", "prometheus-blackbox-exporter"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-deps --bench (or make bench)")
    if not os.access(LASTGOOD, os.X_OK):
        sys.exit(f"{LASTGOOD} is missing: make bench builds it")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if INFRA_CPU is not None:
        os.sched_setaffinity(0, {int(INFRA_CPU)})  # this driver (and the blackbox load client) beside nginx
    work = tempfile.mkdtemp(prefix="lastgood-bench-")
    os.chmod(work, 0o755)  # nginx's workers (another user) read the latency test's site below it
    nginx = Nginx(work)
    hung = HungServer() if "hung" in only else None
    res = {}
    try:
        for r in range(args.runs):
            print(f"--- run {r + 1}/{args.runs}", flush=True)
            def record(group, key, x):
                res.setdefault(group, {}).setdefault(key, []).append(x)
                print(group, x, flush=True)
                save_partial(res)

            if "wrk" in only:
                for ka in (True, False):
                    record("wrk", "keep-alive" if ka else "Connection: close", run_wrk(nginx, ka, min(args.seconds, 10)))
            if "lastgood" in only:
                for n in args.sizes.split(","):
                    record("lastgood", n, run_lastgood(work, nginx, int(n), args.seconds, args.warmup))
            if "floor" in only:
                for n in args.sizes.split(","):
                    record("floor", n, run_floor(nginx, int(n), args.seconds, args.warmup))
            if "blackbox" in only:
                for n in args.bb_sizes.split(","):
                    record("blackbox", n, run_blackbox(work, nginx, int(n), args.seconds, args.warmup))
            if "monit" in only:
                for n in args.monit_sizes.split(","):
                    record("monit", n, run_monit(work, nginx, int(n), args.seconds, args.warmup))
            if "hung" in only:
                for n in args.hung_sizes.split(","):
                    record("hung", n, run_lastgood(work, nginx, int(n), args.seconds, args.warmup, hung=hung))
                    if int(n) <= 1000:  # monit checks hosts in turn: 10 000 with 1 000 hung is a ~2 000 s cycle
                        record("monit_hung", n, run_monit(work, nginx, int(n), args.seconds, args.warmup, hung=hung))
            if "latency" in only:
                for _ in range(2 if args.runs > 1 else 1):
                    x = run_latency(work)
                    res.setdefault("latency", []).append(x)
                    print("latency", x, flush=True)
    finally:
        nginx.close()
        if hung:
            hung.close()
    table = report(res, args)
    print("\n" + table)
    outdir = os.path.join(ROOT, "bench", "results")
    os.makedirs(outdir, exist_ok=True)
    stamp = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    with open(os.path.join(outdir, stamp + ".json"), "w") as f:
        json.dump({"args": vars(args), "results": res}, f, indent=1)
    with open(os.path.join(outdir, stamp + ".md"), "w") as f:
        f.write(table + "\n")
    print(f"results: bench/results/{stamp}.json and .md")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
