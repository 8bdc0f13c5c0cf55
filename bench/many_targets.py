#!/usr/bin/env python3
"""More targets than descriptors (issue 21, target 3): N plain-HTTP targets at one interval on
nginx, lastgood under an open-files limit smaller than N, on one core. Reports the time to
/readyz, the share of scheduled runs that reached nginx and the share judged ok, how long a
/metrics scrape took while probing, schedule lateness, peak RSS and CPU per probe; and whether
any "Too many open files" reached the log.

  python3 bench/many_targets.py [--n 50000] [--interval 5] [--nofile 20000] [--runs 3] [--origins 64]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runners import run_lastgood  # noqa: E402
from benchlib import Nginx, bench_setup, median_range  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--nofile", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--origins", type=int, default=64, help="nginx ports the targets are spread over (1: every target on one origin)")
    ap.add_argument("--seconds", type=int, default=30)
    # The start-up phase (first runs spread at 4 000 a second, each one connecting and recording
    # its first transition, on top of the runs of the probes already started) lasts about 25 s at
    # 50 000 targets; the window measures the steady state after it (docs/benchmarks.md).
    ap.add_argument("--warmup", type=int, default=30)
    args = ap.parse_args()
    work = bench_setup("lastgood-many-bench-")
    nginx = Nginx(work, origins=args.origins)
    xs = []
    try:
        for r in range(args.runs):
            x = run_lastgood(work, nginx, args.n, args.seconds, args.warmup, interval_s=args.interval, nofile=args.nofile)
            log = open(os.path.join(work, f"lastgood-{args.n}.log")).read()
            x["emfile_lines"] = log.count("Too many open files")
            xs.append(x)
            print({k: x[k] for k in ("ready_s", "achieved_share", "ok_share", "scrape_s", "lateness_p99_ms", "rss_mib", "cpu_us_per_probe", "emfile_lines")}, flush=True)
    finally:
        nginx.close()
    print(f"\n{args.n} targets on {args.origins} origin(s) at {args.interval} s under an open-files limit of {args.nofile}, {args.runs} run(s) of {args.seconds} s; median (min–max)\n")
    print("| /readyz after start s | scheduled runs reaching nginx | judged ok | /metrics scrape s | lateness p99 ms | peak RSS MiB | CPU µs/probe | EMFILE lines |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {median_range([x['ready_s'] for x in xs], 2)} | {median_range([100 * x['achieved_share'] for x in xs], unit='%')} | "
          f"{median_range([100 * x['ok_share'] if x['ok_share'] is not None else None for x in xs], 2, '%')} | {median_range([x['scrape_s'] for x in xs], 2)} | "
          f"{median_range([x['lateness_p99_ms'] for x in xs], 2)} | {median_range([x['rss_mib'] for x in xs])} | {median_range([x['cpu_us_per_probe'] for x in xs])} | "
          f"{sum(x['emfile_lines'] for x in xs)} |")


if __name__ == "__main__":
    main()
