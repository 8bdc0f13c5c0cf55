#!/usr/bin/env python3
"""Failover of lastgood replicas on a real 3-member etcd (loopback), as issue 17 asks:

  - take-over time (signal -> the other replica's /readyz says "owner") for SIGTERM and kill -9,
    median and max over N runs, at the test timings (lease 5 s, renew_deadline 3 s, retry 0.5 s);
  - etcd requests per second of one replica at steady state, with 1 and with S services (keepalives
    and campaign reads are per replica and shard, never per service);
  - the added latency of the fenced intent: decision -> action_started in the ledger, with and
    without an ha block (the ledger's own timestamps, in ms).

usage: bench/ha_failover.py [--binary build-bench/watchdog/lastgood] [--runs 10] [--services 10000]
Needs etcd (Debian: etcd-server). Prints a Markdown table for docs/benchmarks.md.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import free_port, median, stop  # noqa: E402


def get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception:
        return 0, ""


def start_etcd(root):
    members, procs = [], []
    for i in range(3):
        members.append((f"n{i}", free_port(), free_port()))
    cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in members)
    for n, c, p in members:
        d = os.path.join(root, n)
        os.makedirs(d)
        procs.append(subprocess.Popen(
            ["etcd", "--name", n, "--data-dir", d + "/data", "--listen-client-urls", f"http://127.0.0.1:{c}",
             "--advertise-client-urls", f"http://127.0.0.1:{c}", "--listen-peer-urls", f"http://127.0.0.1:{p}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}", "--initial-cluster", cluster,
             "--initial-cluster-token", "bench", "--initial-cluster-state", "new",
             "--heartbeat-interval", "100", "--election-timeout", "1000"],
            stdout=open(d + "/log", "w"), stderr=subprocess.STDOUT))
    for _, c, _ in members:
        for _ in range(300):
            if '"health":"true"' in get(f"http://127.0.0.1:{c}/health")[1]:
                break
            time.sleep(0.1)
    return procs, [f"http://127.0.0.1:{c}" for _, c, _ in members]


class Target:
    """The site and its deployment API: GET / (no <title> on a bad release), GET /release, POST /rollback."""

    def __init__(self):
        self.live = "v1"
        self.switched_at = 0.0  # when the last rollback request arrived (wall clock)
        target = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                body = (json.dumps({"version": target.live}) if self.path == "/release"
                        else ("<p>x</p>" if target.live.startswith("bad") else f"<title>{target.live}</title>"))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                target.live = json.loads(self.rfile.read(n))["version"]
                target.switched_at = time.time()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a probe that timed out closed its end: not the bench's business

        self.server = Quiet(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, p):
        return f"http://127.0.0.1:{self.port}{p}"


def app(t, n_extra=0):
    svc = [{"name": "app",
            "probes": [{"name": "home", "kind": "http", "url": t.url("/"), "interval": "200ms", "timeout": "150ms",
                        "expect": {"status": 200, "body_contains": "<title>"}}],
            "deployment": {"kind": "http_api", "observe_interval": "300ms",
                           "rollback": {"url": t.url("/rollback"), "body": {"version": "${to}", "fence": "${fence}"}},
                           "observe": {"url": t.url("/release"), "json_pointer": "/version"}},
            "triggers": [{"name": "down", "severity": "P0", "rule": {"kind": "consecutive_failures", "count": 2}}],
            "rollback": {"mode": "auto", "good_after": "500ms", "cooldown": "1s"}}]
    for i in range(n_extra):
        svc.append({"name": f"s{i}", "probes": [{"name": "p", "kind": "tcp", "address": f"127.0.0.1:{t.port}", "interval": "60s",
                                                  "timeout": "1s"}]})
    return svc


class Replica:
    def __init__(self, binary, root, name, services, endpoints):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        cfg = {"listen": "127.0.0.1:0", "state_dir": self.dir + "/state",
               "authority": {"P0": {"roles": ["oncall"], "quorum": 1, "auto": True}}, "services": services}
        if endpoints:
            cfg["ha"] = {"etcd": endpoints, "cluster": "bench", "replica": name, "lease": "5s", "renew_deadline": "3s", "retry": "500ms"}
        self.cfg = self.dir + "/lastgood.json"
        json.dump(cfg, open(self.cfg, "w"))
        self.binary, self.runs, self.proc, self.port = binary, 0, None, 0

    def start(self):
        self.runs += 1
        self.log = f"{self.dir}/log-{self.runs}"
        self.proc = subprocess.Popen([self.binary, "run", "-c", self.cfg], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        for _ in range(400):
            text = open(self.log).read()
            at = text.find("listening on http://127.0.0.1:")
            if at >= 0:
                self.port = int(text[at + 30:].split(" ")[0])
                return
            time.sleep(0.05)
        raise RuntimeError("lastgood did not start: " + open(self.log).read())

    def role(self):
        return get(f"http://127.0.0.1:{self.port}/readyz")[1]

    def metric_sum(self, name):
        text = get(f"http://127.0.0.1:{self.port}/metrics", 10)[1]
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{"))

    def ledger(self):
        out = []
        try:
            for line in open(self.dir + "/state/ledger.jsonl"):
                out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out


def wait(cond, timeout, step=0.01):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def failover(binary, endpoints, t, root, sig, runs):
    rs = [Replica(binary, root, n, app(t), endpoints) for n in ("a", "b")]
    for r in rs:
        r.start()
    times = []
    for _ in range(runs):
        assert wait(lambda: any("owner" in r.role() for r in rs), 20), "no owner"
        owner = next(r for r in rs if "owner" in r.role())
        other = rs[1] if owner is rs[0] else rs[0]
        assert wait(lambda: "standby" in other.role(), 10)
        t0 = time.time()
        owner.proc.send_signal(sig)
        ok = wait(lambda: "owner" in other.role(), 20)
        times.append(time.time() - t0 if ok else float("nan"))
        owner.proc.wait(timeout=40)
        owner.start()  # back as the standby
    for r in rs:
        stop(r.proc)
    return times


def intent_latency(binary, endpoints, t, root, runs):
    """decision -> action_started (ledger timestamps) and decision -> the request at the target."""
    r = Replica(binary, root, "solo" if not endpoints else "fenced", app(t), endpoints)
    r.start()
    lat, switch = [], []
    for _ in range(runs):
        t.live = "v1"
        wait(lambda: any(e.get("type") == "release_verified_good" for e in r.ledger()), 20, 0.05)
        seen = len([e for e in r.ledger() if e.get("type") == "action_started"])
        time.sleep(1.2)  # past the cooldown
        t.live = "bad2"
        wait(lambda: len([e for e in r.ledger() if e.get("type") == "action_started"]) > seen, 20, 0.05)
        wait(lambda: t.live == "v1", 10, 0.05)
        es = r.ledger()
        started = [e for e in es if e.get("type") == "action_started"][-1]
        decision = [e for e in es if e.get("type") == "decision" and e.get("seq", 0) < started.get("seq", 0)
                    and e.get("data", {}).get("kind") == "execute"][-1]
        lat.append((started["ts"] - decision["ts"]) / 1000.0)
        switch.append(t.switched_at - decision["ts"] / 1000.0)
    stop(r.proc)
    return lat, switch


def etcd_rate(binary, endpoints, t, root, services):
    r = Replica(binary, root, f"rate{services}", app(t, services), endpoints)
    r.start()
    wait(lambda: "owner" in r.role(), 30)
    time.sleep(2)
    a, t0 = r.metric_sum("lastgood_ha_etcd_requests_total"), time.time()
    time.sleep(10)
    b, t1 = r.metric_sum("lastgood_ha_etcd_requests_total"), time.time()
    stop(r.proc)
    return (b - a) / (t1 - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build-bench/watchdog/lastgood")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--only-intent", action="store_true", help="measure only the fenced intent's latency")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="lg-ha-bench-")
    etcd, endpoints = start_etcd(root)
    t = Target()
    term = kill = []
    one = many = float("nan")
    try:
        if not a.only_intent:
            term = failover(a.binary, endpoints, t, root + "/term", signal.SIGTERM, a.runs)
            kill = failover(a.binary, endpoints, t, root + "/kill", signal.SIGKILL, a.runs)
            one, many = etcd_rate(a.binary, endpoints, t, root, 0), etcd_rate(a.binary, endpoints, t, root, a.services)
        solo, solo_switch = intent_latency(a.binary, None, t, root, 5)
        fenced, fenced_switch = intent_latency(a.binary, endpoints, t, root, 5)
    finally:
        for p in etcd:
            p.terminate()
    f = lambda xs: f"{median(xs) * 1000:.0f} ms (max {max(xs) * 1000:.0f})"
    print("| measure | value |\n| --- | --- |")
    if not a.only_intent:
        print(f"| take-over after SIGTERM, {a.runs} runs | median {f(term)} |")
        print(f"| take-over after kill -9, {a.runs} runs (lease 5 s, retry 0.5 s) | median {f(kill)} |")
        print(f"| etcd requests/s of one owner, 1 service | {one:.1f} |")
        print(f"| etcd requests/s of one owner, {a.services + 1} services | {many:.1f} |")
    print(f"| decision -> action_started, one replica (5 runs) | median {f(solo)} |")
    print(f"| decision -> action_started, fenced intent on etcd (5 runs) | median {f(fenced)} |")
    print(f"| decision -> request at the target, one replica (5 runs) | median {f(solo_switch)} |")
    print(f"| decision -> request at the target, fenced intent + running mark (5 runs) | median {f(fenced_switch)} |")

if __name__ == "__main__":
    main()
