#!/usr/bin/env python3
"""HTTPS probes, two lastgood binaries side by side (issue 21, target 1): N HTTPS targets at 1 s
on nginx over TLS, each binary in turn in every run (alternating which goes first), on a quiet
core and with a busy loop sharing lastgood's core (CPU-starved). Reports CPU per probe, peak RSS,
the share of scheduled runs that reached nginx, TLS handshakes per second and the share resumed.

  python3 bench/tls_compare.py --before OLD/lastgood --after build/watchdog/lastgood [--runs 3]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runners import run_blackbox, run_lastgood, run_wrk  # noqa: E402
from benchlib import Nginx, bench_setup, median_range  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--close", action="store_true", help="nginx closes every TLS connection after its response: every run reconnects")
    ap.add_argument("--no-resume", action="store_true",
                    help="nginx keeps no session cache and issues no tickets: every reconnect is a full handshake (the worst case for a starved core)")
    ap.add_argument("--peers", action="store_true", help="also blackbox_exporter probing the same targets over HTTPS, and wrk over HTTPS (the ratios of target 1)")
    args = ap.parse_args()
    work = bench_setup("lastgood-tls-bench-")
    nginx = Nginx(work, tls=True, tls_keepalive=not args.close, tls_resume=not args.no_resume)
    res = {}
    try:
        for r in range(args.runs):
            order = [("before", args.before), ("after", args.after)]
            if r % 2:
                order.reverse()
            for starve in (False, True):
                for name, binary in order:
                    x = run_lastgood(work, nginx, args.n, args.seconds, args.warmup, tls=True, binary=binary, starve=starve)
                    key = (name, starve)
                    res.setdefault(key, []).append(x)
                    print(name, "starved" if starve else "quiet", {k: x.get(k) for k in ("cpu_us_per_probe", "rss_mib", "achieved_share", "ok_share", "lateness_p99_ms", "handshakes_per_s", "resumed_share")}, flush=True)
            if args.peers:
                x = run_blackbox(work, nginx, args.n, args.seconds, args.warmup, tls=True)
                res.setdefault("blackbox", []).append(x)
                print("blackbox_exporter", {k: x.get(k) for k in ("cpu_us_per_probe", "rss_mib", "probes_per_s")}, flush=True)
                x = run_wrk(nginx, not args.close, args.seconds, tls=True)
                res.setdefault("wrk", []).append(x)
                print("wrk", {k: x.get(k) for k in ("cpu_us_per_request", "requests_per_s")}, flush=True)
    finally:
        nginx.close()
    how = "nginx closing each connection (every run reconnects)" if args.close else "kept alive"
    if args.no_resume:
        how += ", no resumption (every handshake full)"
    print(f"\n{args.n} HTTPS targets at 1 s, {how}, {args.runs} runs of {args.seconds} s; median (min–max)\n")
    print("| binary | core | CPU µs/probe | peak RSS MiB | share of scheduled runs reaching nginx | judged ok | lateness p99 ms | TLS handshakes/s | resumed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for starve in (False, True):
        for name in ("before", "after"):
            xs = res.get((name, starve), [])
            print(f"| {name} | {'busy (starved)' if starve else 'quiet'} | {median_range([x['cpu_us_per_probe'] for x in xs])} | {median_range([x['rss_mib'] for x in xs])} | "
                  f"{median_range([100 * x['achieved_share'] for x in xs], unit='%')} | {median_range([100 * x['ok_share'] if x.get('ok_share') is not None else None for x in xs], 2, unit='%')} | "
                  f"{median_range([x['lateness_p99_ms'] for x in xs], 2)} | "
                  f"{median_range([x.get('handshakes_per_s') for x in xs])} | "
                  f"{median_range([100 * x['resumed_share'] if x.get('resumed_share') is not None else None for x in xs], unit='%')} |")
    if args.peers:
        bb = [x["cpu_us_per_probe"] for x in res.get("blackbox", [])]
        wrk = [x["cpu_us_per_request"] for x in res.get("wrk", [])]
        print(f"\nPeers over HTTPS, same nginx: blackbox_exporter {median_range(bb)} µs/probe (peak RSS {median_range([x['rss_mib'] for x in res['blackbox']])} MiB); "
              f"wrk ({'Connection: close' if args.close else 'keep-alive'}, 32 connections) {median_range(wrk)} µs/request\n")
        print("| binary | core | lastgood µs/probe | ÷ blackbox_exporter's | ÷ wrk's |")
        print("| --- | --- | --- | --- | --- |")
        import statistics
        for starve in (False, True):
            for name in ("before", "after"):
                xs = res.get((name, starve), [])
                if not xs or not bb or not wrk:
                    continue
                lg = statistics.median([x["cpu_us_per_probe"] for x in xs])
                print(f"| {name} | {'busy (starved)' if starve else 'quiet'} | {lg:.1f} | {lg / statistics.median(bb):.3f} | {lg / statistics.median(wrk):.2f} |")


if __name__ == "__main__":
    main()
