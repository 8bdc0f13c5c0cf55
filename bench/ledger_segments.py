#!/usr/bin/env python3
"""A year of history at start, with segments and snapshots (issue 21, target 4).

Writes a ledger of N entries in lastgood's own format as one file (what an older lastgood, or
`segment_entries: 0`, leaves; the mix of bench/ledger_start.py), then:
  1. `before` (optional, an older binary): `run` on that single file: seconds until /healthz
     answers and peak RSS (it replays every entry);
  2. `after`, first start: it replays every entry once more and, the file being over its segment
     size, seals it and begins a segment with a snapshot before anything else: the one-off cost
     of moving to segments;
  3. the active segment is then filled up to one entry short of a full segment (the worst case a
     start meets: the snapshot and segment_entries - 1 entries after it, appended here with the
     chain continued from the snapshot);
  4. `after`, `--runs` starts on that: /healthz and peak RSS; a fresh start (an empty state_dir)
     for comparison; and `ledger verify` across the sealed segment and the active one.

  python3 bench/ledger_segments.py [--entries 10000000] [--segment 200000] [--runs 3] [--before OLD_BINARY] [--after NEW_BINARY]

Nothing here is a test: it prints figures (docs/benchmarks.md, round 5)."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import LASTGOOD, bench_setup, median_range  # noqa: E402
from ledger_start import append_entries, start_once, verify_once, write_ledger  # noqa: E402


def last_line(path):
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        back = min(size, 1 << 20)
        f.seek(size - back)
        tail = f.read().rstrip(b"\n")
    return json.loads(tail[tail.rfind(b"\n") + 1:])


def fill_active(path, upto):
    """Appends entries (the same mix) until the active segment holds `upto` entries."""
    have = sum(1 for _ in open(path, "rb"))
    last = last_line(path)
    with open(path, "a") as f:
        append_entries(f, last["hash"], last["seq"] + 1, upto - have)
    return last["seq"] + upto - have


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=10_000_000)
    ap.add_argument("--segment", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default=None)
    ap.add_argument("--after", default=LASTGOOD)
    args = ap.parse_args()
    work = bench_setup("lastgood-ledger-segments-")
    state = os.path.join(work, "state")
    os.makedirs(state, mode=0o700)
    ledger = os.path.join(state, "ledger.jsonl")
    t = time.monotonic()
    write_ledger(ledger, args.entries)
    size_mb = os.path.getsize(ledger) / 1e6
    print(f"wrote {args.entries} entries ({size_mb:.0f} MB) in {time.monotonic() - t:.1f} s", flush=True)
    extra = {"ledger": {"segment_entries": args.segment}}
    rows = {}
    if args.before:
        up, rss = start_once(args.before, work, state)
        rows["before: one file, every entry replayed"] = [{"start_s": up, "start_rss": rss}]
        print("before", up, rss, flush=True)
    up, rss = start_once(args.after, work, state, extra)
    rows["after, first start on that file (replays it, then seals it)"] = [{"start_s": up, "start_rss": rss}]
    print("after, first start", up, rss, flush=True)
    sealed = sorted(n for n in os.listdir(state) if n.startswith("ledger.jsonl.") and n[-1].isdigit())
    print("segments:", sealed, flush=True)
    last = fill_active(ledger, args.segment - 1)
    print(f"active segment filled to {args.segment - 1} entries (last seq {last})", flush=True)
    fresh = os.path.join(work, "fresh")
    os.makedirs(fresh, mode=0o700)
    for r in range(args.runs):
        up, rss = start_once(args.after, work, state, extra)
        rows.setdefault("after: a full active segment", []).append({"start_s": up, "start_rss": rss})
        up, rss = start_once(args.after, work, fresh, extra)
        rows.setdefault("after: a fresh start (empty state_dir)", []).append({"start_s": up, "start_rss": rss})
        vs, vrss = verify_once(args.after, ledger)
        rows.setdefault("verify", []).append({"verify_s": vs, "verify_rss": vrss})
        print(r, {k: v[-1] for k, v in rows.items()}, flush=True)
    total = last
    print(f"\n{args.entries} entries written as one file ({size_mb:.0f} MB), segments of {args.segment}; "
          f"{len(rows['verify'])} run(s); median (min–max)\n")
    print("| start | `run`: /healthz after, s | `run`: peak RSS, MiB |")
    print("| --- | --- | --- |")
    for name, xs in rows.items():
        if name == "verify":
            continue
        print(f"| {name} | {median_range([x['start_s'] for x in xs], 2)} | {median_range([x['start_rss'] for x in xs])} |")
    xs = rows["verify"]
    print(f"\n`ledger verify` over {len(sealed)} sealed segment(s) and the active one ({total} entries): "
          f"{median_range([x['verify_s'] for x in xs], 2)} s, {median_range([total / x['verify_s'] for x in xs], 0)} entries/s, "
          f"peak RSS {median_range([x['verify_rss'] for x in xs])} MiB")


if __name__ == "__main__":
    main()
