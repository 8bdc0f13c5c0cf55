#!/usr/bin/env python3
"""A long ledger at start (issue 21, target 4): writes a ledger of N entries in lastgood's own
format (the hash chain as ledger.cpp writes it: two thirds trigger transitions that are not
firing, one third decisions, a release every 1 000), then, for each binary, measures
  - `lastgood run`: seconds until /healthz answers and peak RSS by then (VmHWM);
  - `lastgood ledger verify`: seconds and peak RSS, and entries per second.

  python3 bench/ledger_start.py [--entries 1000000] [--runs 3] [--before OLD_BINARY] [--after NEW_BINARY]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import LASTGOOD, bench_setup, free_port, median_range, wait_port  # noqa: E402


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append_entries(f, prev, first_seq, n, t0=1_765_000_000_000, services=1000):
    """Writes entries first_seq .. first_seq + n - 1 chained from `prev`; returns the last hash."""
    for seq in range(first_seq, first_seq + n):
        svc = f"s{seq % services}"
        if seq % 1000 == 0:
            typ, data = "release_observed", {"release": f"r{seq}", "migration": False}
        elif seq % 3 == 0:
            typ, data = "decision", {"kind": "hold", "trigger": "down", "reason": "cooldown", "shadow": False}
        else:
            typ, data = "transition", {"trigger": "down", "severity": "P2", "from": "ok", "to": "pending",
                                       "evidence": {"measure": "consecutive_failures", "value": 1, "threshold": 3, "probe": "p"}}
        entry = {"data": data, "prev": prev, "seq": seq, "service": svc, "ts": t0 + seq, "type": typ}
        h = hashlib.sha256((prev + canonical(entry)).encode()).hexdigest()
        entry["hash"] = h
        f.write(canonical(entry) + "\n")
        prev = h
    return prev


def write_ledger(path, n):
    with open(path, "w") as f:
        append_entries(f, "", 1, n)


def peak_rss_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_once(binary, work, state_dir, extra=None):
    port = free_port()
    cfg = os.path.join(work, "cfg.json")
    with open(cfg, "w") as f:
        json.dump({"listen": f"127.0.0.1:{port}", "state_dir": state_dir,
                   "services": [{"name": f"s{i}", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:9", "interval": "60s"}]}
                                for i in range(1000)], **(extra or {})}, f)
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "run", "-c", cfg, "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        up = None
        while time.monotonic() - t0 < 300 and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                up = time.monotonic() - t0
                break
            except Exception:
                time.sleep(0.02)
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    return up, rss


# A fresh interpreter whose only child is the command: its children's peak RSS is the command's.
PEAK = ("import resource, subprocess, sys, time; t = time.monotonic(); "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def verify_once(binary, ledger):
    out = subprocess.run([sys.executable, "-c", PEAK, binary, "ledger", "verify", ledger], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default=None)
    ap.add_argument("--after", default=LASTGOOD)
    args = ap.parse_args()
    work = bench_setup("lastgood-ledger-start-")
    state = os.path.join(work, "state")
    os.makedirs(state, mode=0o700)
    ledger = os.path.join(state, "ledger.jsonl")
    t = time.monotonic()
    write_ledger(ledger, args.entries)
    size_mb = os.path.getsize(ledger) / 1e6
    print(f"wrote {args.entries} entries ({size_mb:.0f} MB) in {time.monotonic() - t:.1f} s", flush=True)
    binaries = [("before", args.before)] if args.before else []
    binaries.append(("after", args.after))
    rows = {}
    for r in range(args.runs):
        for name, binary in (binaries if r % 2 == 0 else list(reversed(binaries))):
            vs, vrss = verify_once(binary, ledger)
            # run appends nothing to a ledger it only replays, unless it repairs or keys it: the next run reads the same file.
            # Segments (ledger.segment_entries) would seal it at the first start: this bench measures one file's replay
            # (bench/ledger_segments.py measures segments), so they are off for the binary that has them.
            up, rss = start_once(binary, work, state, {"ledger": {"segment_entries": 0}} if name == "after" else None)
            rows.setdefault(name, []).append({"verify_s": vs, "verify_rss": vrss, "start_s": up, "start_rss": rss})
            print(name, rows[name][-1], flush=True)
    print(f"\n{args.entries} entries ({size_mb:.0f} MB), {args.runs} run(s); median (min–max)\n")
    print("| binary | `run`: /healthz after, s | `run`: peak RSS, MiB | `ledger verify`, s | verify, entries/s | verify peak RSS, MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, xs in rows.items():
        print(f"| {name} | {median_range([x['start_s'] for x in xs], 2)} | {median_range([x['start_rss'] for x in xs])} | "
              f"{median_range([x['verify_s'] for x in xs], 2)} | {median_range([args.entries / x['verify_s'] for x in xs], 0)} | "
              f"{median_range([x['verify_rss'] for x in xs])} |")


if __name__ == "__main__":
    main()
