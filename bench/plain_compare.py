#!/usr/bin/env python3
"""Plain-HTTP probes, two lastgood binaries side by side (issue 21, target 2), with the peers'
figures of the same runs: N keep-alive targets at 1 s on one nginx, each binary in turn in every
run (alternating which goes first), then the pattern's floor (bench/pattern_floor), wrk's
keep-alive client and monit, so that a ratio's change can be split into lastgood's own and the
peer's (the peers' figures move between runs and days as much as lastgood's).

  python3 bench/plain_compare.py --before OLD/lastgood --after build/watchdog/lastgood [--runs 3]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runners import run_floor, run_lastgood, run_monit, run_wrk  # noqa: E402
from benchlib import Nginx, bench_setup, median_range  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--monit-sizes", default="100,1000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    work = bench_setup("lastgood-plain-bench-")
    os.chmod(work, 0o755)
    nginx = Nginx(work)
    res = {}

    def record(key, x, what):
        res.setdefault(key, []).append(x)
        print(*key, {k: x.get(k) for k in what}, flush=True)

    try:
        for r in range(args.runs):
            order = [("before", args.before), ("after", args.after)]
            if r % 2:
                order.reverse()
            for n in sizes:
                for name, binary in order:
                    record((name, n), run_lastgood(work, nginx, n, args.seconds, args.warmup, binary=binary),
                           ("cpu_us_per_probe", "rss_mib", "achieved_share", "lateness_p99_ms"))
                record(("floor", n), run_floor(nginx, n, args.seconds, args.warmup, binary=os.environ.get("PATTERN_FLOOR")),
                       ("cpu_us_per_request", "requests", "ok"))
            record(("wrk", 0), run_wrk(nginx, True, min(args.seconds, 10)), ("cpu_us_per_request", "requests_per_s"))
            for n in (int(x) for x in args.monit_sizes.split(",") if x):
                record(("monit", n), run_monit(work, nginx, n, args.seconds, args.warmup), ("cpu_us_per_check", "cycle_s"))
    finally:
        nginx.close()

    def med(key, field):
        xs = [x[field] for x in res.get(key, []) if x.get(field) is not None]
        return statistics.median(xs) if xs else None

    wrk = med(("wrk", 0), "cpu_us_per_request")
    print(f"\n{args.runs} runs of {args.seconds} s; median (min–max). wrk keep-alive: "
          f"{median_range([x['cpu_us_per_request'] for x in res.get(('wrk', 0), [])], 2)} µs/request\n")
    print("| N | binary | CPU µs/probe | peak RSS MiB | share run | lateness p99 ms | ÷ wrk (target ≤ 1.5; 2.5 at 100) | ÷ monit (target ≤ 0.20) | ÷ the pattern's floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        floor = med(("floor", n), "cpu_us_per_request")
        monit = med(("monit", n), "cpu_us_per_check")
        for name in ("before", "after"):
            xs = res.get((name, n), [])
            a = med((name, n), "cpu_us_per_probe")
            print(f"| {n} | {name} | {median_range([x['cpu_us_per_probe'] for x in xs])} | {median_range([x['rss_mib'] for x in xs])} | "
                  f"{median_range([100 * x['achieved_share'] for x in xs], 1, '%')} | {median_range([x['lateness_p99_ms'] for x in xs], 2)} | "
                  f"{a / wrk:.2f} | {f'{a / monit:.3f}' if monit else 'n/a'} | {f'{a / floor:.2f}' if floor else 'n/a'} |" if a and wrk else f"| {n} | {name} | n/a |")
    print("\n| N | the pattern's floor µs/request | floor ÷ wrk | monit µs/check |")
    print("| --- | --- | --- | --- |")
    for n in sizes:
        fl = [x["cpu_us_per_request"] for x in res.get(("floor", n), [])]
        f = med(("floor", n), "cpu_us_per_request")
        mo = [x["cpu_us_per_check"] for x in res.get(("monit", n), [])]
        print(f"| {n} | {median_range(fl, 2)} | {f'{f / wrk:.2f}' if f and wrk else 'n/a'} | {median_range(mo) if mo else 'n/a'} |")


if __name__ == "__main__":
    main()
