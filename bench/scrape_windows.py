#!/usr/bin/env python3
"""Where schedule lateness comes from at scale (issue 21, target 3): N plain-HTTP targets at 5 s on
64 nginx origins, lastgood under a 20 000 open-files limit on one core, scraped (after a 30 s start-up phase) at about 0, 20, 22,
42 and 44 s. Each line is one window between two scrapes: how long the scrape opening it took, the
p99 of lastgood_schedule_lateness_seconds and of lastgood_event_loop_lag_seconds over it, and
the admission cap at its end. The windows S1->S2 and S3->S4 hold a scrape and nothing else.

  python3 bench/scrape_windows.py BINARY [N]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import os, sys, time, subprocess, tempfile, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runners import lastgood_config, quantile
from benchlib import Nginx, bench_setup, pinned, TOOL_CPU, wait_port, http_get, stop
def hist(text, name):
    b = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            b[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return b
def gauge(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "): return float(line.split()[1])
binary, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50000
work = bench_setup("lastgood-lat-")
nginx = Nginx(work, origins=64)
try:
    targets = [(nginx.url(f"/lg/{i}", i), "5s", "1s") for i in range(n)]
    state = tempfile.mkdtemp(prefix="state-", dir=work)
    cfg, port = lastgood_config(work, targets, state)
    cmd = ["prlimit", "--nofile=20000:20000", "--"] + pinned([binary, "run", "-c", cfg, "--log-level", "warn"], TOOL_CPU)
    proc = subprocess.Popen(cmd, stdout=open(os.path.join(work, "lg.log"), "w"), stderr=subprocess.STDOUT)
    wait_port(port, 120); time.sleep(30)  # past the start-up phase (many_targets.py)
    snaps = []
    def snap(label):
        t0 = time.monotonic(); text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=60); d = time.monotonic() - t0
        snaps.append((label, d, hist(text, "lastgood_schedule_lateness_seconds"), hist(text, "lastgood_event_loop_lag_seconds"), gauge(text, "lastgood_probe_runs_in_flight_limit"), len(text)))
    snap("S0"); time.sleep(20); snap("S1"); snap("S2"); time.sleep(20); snap("S3"); snap("S4")
    for (la, da, la_b, ll_a, lim_a, sz), (lb, db, lb_b, ll_b, lim_b, _) in zip(snaps, snaps[1:]):
        p99 = quantile(0.99, la_b, lb_b); lag99 = quantile(0.99, ll_a, ll_b)
        print(f"{la}->{lb}: scrape {la} took {da:.2f}s ({sz/1e6:.0f} MB); lateness p99 {p99*1000 if p99 is not None else None:.1f} ms; loop lag p99 {lag99*1000 if lag99 else 0:.1f} ms; limit at end {lim_b}")
    stop(proc)
finally:
    nginx.close()
