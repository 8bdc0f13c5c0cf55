#!/usr/bin/env python3
"""Reload at scale (issue 21, target 5): N plain-HTTP services at 1 s on nginx, lastgood pinned to
one core. For each run: a quiet window, then a window in which the config is rewritten with one
service's probe changed and lastgood gets SIGHUP. Reports how long the reload took (SIGHUP until
its "applied" line is in the log) and the p99 schedule lateness of each window (histogram deltas;
each window has one scrape at its end).

  python3 bench/reload_scale.py [--n 10000] [--runs 3] [--seconds 20]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import LASTGOOD, TOOL_CPU, Nginx, bench_setup, median_range, pinned, stop, wait_port  # noqa: E402
from runners import lastgood_config, quantile, scrape  # noqa: E402


def one_run(work, nginx, n, seconds, binary):
    targets = [(nginx.url(f"/lg/{i}", i), "1s", "1s") for i in range(n)]
    state = tempfile.mkdtemp(prefix="state-", dir=work)
    cfg, port = lastgood_config(work, targets, state)
    log = open(os.path.join(work, f"lastgood-reload-{n}.log"), "w")
    proc = subprocess.Popen(pinned([binary, "run", "-c", cfg, "--log-level", "warn"], TOOL_CPU), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 120)
        time.sleep(10)  # warm-up: every connection made
        _, b0, _ = scrape(port)
        time.sleep(seconds)
        _, b1, _ = scrape(port)  # the quiet window ends
        with open(cfg) as f:
            c = json.load(f)
        c["services"][n // 2]["probes"][0]["url"] += "?changed"
        with open(cfg + ".new", "w") as f:
            json.dump(c, f)
        os.replace(cfg + ".new", cfg)
        time.sleep(seconds / 4)
        logfile = os.path.join(work, f"lastgood-reload-{n}.log")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        took = None
        # Watched in the log (its "applied" line), not with scrapes: a scrape of 10 000 probes is
        # half a second of lastgood's CPU and would be the lateness measured.
        while time.monotonic() - t0 < 60:
            if "reload (SIGHUP): config" in open(logfile).read():
                took = time.monotonic() - t0
                break
            time.sleep(0.01)
        time.sleep(max(0.0, seconds * 3 / 4 - (time.monotonic() - t0)))
        _, b2, _ = scrape(port)
    finally:
        stop(proc)
        log.close()
    return {"reload_s": took, "quiet_p99_ms": 1000 * (quantile(0.99, b0, b1) or 0), "reload_p99_ms": 1000 * (quantile(0.99, b1, b2) or 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--binary", default=LASTGOOD)
    args = ap.parse_args()
    work = bench_setup("lastgood-reload-bench-")
    nginx = Nginx(work)
    xs = []
    try:
        for _ in range(args.runs):
            x = one_run(work, nginx, args.n, args.seconds, args.binary)
            print(x, flush=True)
            xs.append(x)
    finally:
        nginx.close()
    print(f"\n{args.n} services at 1 s, one changed by a SIGHUP reload; {args.runs} run(s), windows of {args.seconds} s; median (min–max)\n")
    print("| reload took, s (SIGHUP → applied) | lateness p99 ms, quiet window | lateness p99 ms, window with the reload |")
    print("| --- | --- | --- |")
    print(f"| {median_range([x['reload_s'] for x in xs], 2)} | {median_range([x['quiet_p99_ms'] for x in xs], 2)} | "
          f"{median_range([x['reload_p99_ms'] for x in xs], 2)} |")


if __name__ == "__main__":
    main()
