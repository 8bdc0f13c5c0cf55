#!/usr/bin/env python3
"""Side-by-side benchmark: lastgood vs prometheus-blackbox-exporter vs monit vs wrk's floor.

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LASTGOOD = os.environ.get("LASTGOOD", os.path.join(ROOT, "build", "watchdog", "lastgood"))
TICK = os.sysconf("SC_CLK_TCK")
# With two cores or more, the tool under test runs pinned to one core and nginx (and the load
# client for blackbox_exporter) to another, so that "CPU per probe" is the tool's alone and
# "on one core" holds.
TOOL_CPU, INFRA_CPU = ("1", "0") if (os.cpu_count() or 1) >= 2 else (None, None)


def pinned(cmd, cpu):
    return ["taskset", "-c", cpu] + cmd if cpu is not None else cmd


# ---- helpers ---------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime (fields 14, 15)


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Window:
    """CPU seconds of a process over a measured window."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = cpu_seconds(pid)

    def end(self):
        return time.monotonic() - self.t0, cpu_seconds(self.pid) - self.c0


# ---- servers -----------------------------------------------------------------------------------

class Nginx:
    def __init__(self, work, site_root=None):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.site_port = free_port()
        self.log = os.path.join(self.dir, "access.log")
        site = ""
        if site_root:
            site = f"""
  server {{ listen 127.0.0.1:{self.site_port}; root {site_root}/current; disable_symlinks off;
           location / {{ index index.html; open_file_cache off; }} }}"""
        conf = f"""
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 60000; multi_accept on; }}
http {{
  log_format t '$msec $request_uri';
  access_log {self.log} t buffer=256k flush=1s;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {self.dir}/tmp; proxy_temp_path {self.dir}/tmp; fastcgi_temp_path {self.dir}/tmp;
  uwsgi_temp_path {self.dir}/tmp; scgi_temp_path {self.dir}/tmp;
  server {{ listen 127.0.0.1:{self.port} backlog=4096; location / {{ default_type text/plain; return 200 "ok\\n"; }} }}{site}
}}
"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(pinned(["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")], INFRA_CPU),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if site_root:
            wait_port(self.site_port)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, prefix, t0, t1):
        """Requests whose path starts with prefix, logged between wall times t0 and t1."""
        n = 0
        with open(self.log) as f:
            for line in f:
                ts, _, uri = line.partition(" ")
                if uri.startswith(prefix) and t0 <= float(ts) < t1:
                    n += 1
        return n

    def close(self):
        stop(self.proc, signal.SIGQUIT)


class HungServer:
    """Accepts connections, reads and discards what arrives, never answers (a hung target).
    Connections the client gives up on are closed here too, so descriptors do not pile up."""

    def __init__(self):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel.register(self.sock, 1)
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped:
            for key, _ in self.sel.select(timeout=0.2):
                if key.fileobj is self.sock:
                    try:
                        c, _ = self.sock.accept()
                        c.setblocking(False)
                        self.sel.register(c, 1)
                    except OSError:
                        pass
                else:
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self.sel.unregister(key.fileobj)
                        key.fileobj.close()

    def close(self):
        self.stopped = True
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


# ---- lastgood -----------------------------------------------------------------------------------

def metric_lines(text, name):
    for line in text.splitlines():
        if line.startswith(name):
            yield line


def scrape(port):
    text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=60)
    runs = {"ok": 0.0, "other": 0.0}
    for line in metric_lines(text, "lastgood_probes_total{"):
        v = float(line.rsplit(" ", 1)[1])
        runs["ok" if 'outcome="ok"' in line else "other"] += v
    buckets = {}
    for line in metric_lines(text, "lastgood_schedule_lateness_seconds_bucket{"):
        le = re.search(r'le="([^"]+)"', line).group(1)
        buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    skipped = sum(float(l.rsplit(" ", 1)[1]) for l in metric_lines(text, "lastgood_schedule_skipped_total"))
    return runs, buckets, skipped


def quantile(q, b0, b1):
    """histogram_quantile over the bucket deltas b1 - b0 (linear within a bucket)."""
    les = sorted(b1)
    counts = [b1[le] - b0.get(le, 0) for le in les]
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in zip(les, counts):
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return les[-2]


def share_within(limit, b0, b1):
    total = b1[float("inf")] - b0.get(float("inf"), 0)
    return (b1[limit] - b0.get(limit, 0)) / total if total else None


def lastgood_config(work, targets, state_dir):
    services = []
    for i, (url, interval, timeout) in enumerate(targets):
        services.append({"name": f"t{i}",
                         "probes": [{"name": "p", "kind": "http", "url": url, "interval": interval, "timeout": timeout}],
                         "triggers": [{"name": "down", "severity": "P2", "rule": {"kind": "consecutive_failures", "count": 3}}]})
    port = free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "state_dir": state_dir, "services": services}
    path = os.path.join(work, "lastgood.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path, port


def run_lastgood(work, nginx, n, seconds, warmup, hung=None):
    """n targets at 1 s (timeout 1 s); with hung: 10% of them point at a server that never answers,
    with timeout 2 s (and so interval 2 s: lastgood, like Prometheus, refuses a timeout longer than
    the interval)."""
    targets = []
    n_hung = n // 10 if hung else 0
    for i in range(n):
        if hung and i % 10 == 0:
            targets.append((f"http://127.0.0.1:{hung.port}/h/{i}", "2s", "2s"))
        else:
            targets.append((nginx.url(f"/lg/{i}"), "1s", "1s"))
    state = tempfile.mkdtemp(prefix="state-", dir=work)
    cfg, port = lastgood_config(work, targets, state)
    log = open(os.path.join(work, f"lastgood-{n}.log"), "w")
    cmd = pinned([LASTGOOD, "run", "-c", cfg, "--log-level", "warn"], TOOL_CPU)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 60)
        time.sleep(warmup)
        r0, b0, s0 = scrape(port)
        w = Window(proc.pid)
        wall0 = time.time()
        time.sleep(seconds)
        elapsed, cpu_s = w.end()
        wall1 = time.time()
        r1, b1, s1 = scrape(port)
        rss = peak_rss_mib(proc.pid)
        time.sleep(1.2)  # nginx flushes its access log every second
    finally:
        stop(proc)
        log.close()
    ok = r1["ok"] - r0["ok"]
    other = r1["other"] - r0["other"]
    healthy = n - n_hung
    # Counts come from nginx's own log (this run's requests, inside the window): the scrapes of
    # 10 000 probes' metrics take about a second each, so counter deltas span more than the window.
    # Runs against hung targets never reach nginx: they are added in the proportion the counters
    # show (non-ok runs per ok run).
    served = nginx.count("/lg/", wall0, wall1)
    runs = served * (ok + other) / ok if ok else served
    res = {
        "n": n, "hung": n_hung, "seconds": elapsed,
        "scheduled_per_s": healthy + n_hung / 2.0, "probes_per_s": runs / elapsed,
        "healthy_scheduled_per_s": healthy, "healthy_ok_per_s": served / elapsed,
        "achieved_share": served / elapsed / healthy,
        "cpu_s": cpu_s, "cpu_s_per_1000": 1000 * cpu_s / max(runs, 1), "cpu_us_per_probe": 1e6 * cpu_s / max(runs, 1),
        "rss_mib": rss,
        "lateness_p50_ms": 1000 * (quantile(0.5, b0, b1) or 0), "lateness_p99_ms": 1000 * (quantile(0.99, b0, b1) or 0),
        "lateness_within_20ms": share_within(0.02, b0, b1), "skipped_runs": s1 - s0,
    }
    return res


# ---- blackbox_exporter --------------------------------------------------------------------------

async def paced_probe_client(port, urls, seconds, conns=64):
    """Like Prometheus: each target scraped once per second, over keep-alive connections."""
    n = len(urls)
    queue = asyncio.Queue()
    done = {"ok": 0, "fail": 0, "late": 0}
    start = time.monotonic() + 0.2
    end = start + seconds

    async def producer():
        k = 0
        while True:
            due = start + k / n
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.5:
                done["late"] += 1
            await queue.put(urls[k % n])
            k += 1
        for _ in range(conns):
            await queue.put(None)

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            url = await queue.get()
            if url is None:
                break
            writer.write(f"GET /probe?module=http_2xx&target={url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", head, re.I)
            if m:
                body = await reader.readexactly(int(m.group(1)))
            else:  # chunked
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                    body += await reader.readexactly(size + 2)
                    if size == 0:
                        break
            done["ok" if b"probe_success 1" in body else "fail"] += 1
        writer.close()

    await asyncio.gather(producer(), *[worker() for _ in range(conns)])
    return done


def run_blackbox(work, nginx, n, seconds, warmup):
    cfg = os.path.join(work, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      preferred_ip_protocol: ip4\n")
    port = free_port()
    proc = subprocess.Popen(pinned(["prometheus-blackbox-exporter", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                                    "--log.level=warn"], TOOL_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        urls = [nginx.url(f"/bb/{i}") for i in range(n)]
        asyncio.run(paced_probe_client(port, urls, warmup))
        w = Window(proc.pid)
        done = asyncio.run(paced_probe_client(port, urls, seconds))
        elapsed, cpu_s = w.end()
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    probes = done["ok"] + done["fail"]
    return {"n": n, "seconds": elapsed, "probes": probes, "ok": done["ok"], "probes_per_s": probes / elapsed, "cpu_s": cpu_s,
            "cpu_us_per_probe": 1e6 * cpu_s / max(probes, 1), "rss_mib": rss}


# ---- monit --------------------------------------------------------------------------------------

def run_monit(work, nginx, n, seconds, warmup, hung=None):
    d = tempfile.mkdtemp(prefix="monit-", dir=work)
    rc = os.path.join(d, "monitrc")
    n_hung = n // 10 if hung else 0
    prefix = f"/mo{n}{'h' if hung else ''}/"
    lines = ["set daemon 1", f"set logfile {d}/monit.log", f"set idfile {d}/id", f"set statefile {d}/state",
             f"set pidfile {d}/pid", ""]
    for i in range(n):
        if hung and i % 10 == 0:
            lines.append(f'check host h{i} with address 127.0.0.1\n  if failed port {hung.port} protocol http request "/h/{i}" '
                         f"with timeout 2 seconds then alert")
        else:
            lines.append(f'check host h{i} with address 127.0.0.1\n  if failed port {nginx.port} protocol http request "{prefix}{i}" '
                         f"with timeout 2 seconds then alert")
    with open(rc, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(rc, 0o600)
    proc = subprocess.Popen(pinned(["monit", "-I", "-c", rc], TOOL_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup)
        w = Window(proc.pid)
        wall0 = time.time()
        time.sleep(seconds)
        elapsed, cpu_s = w.end()
        wall1 = time.time()
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    time.sleep(1.2)  # nginx flushes its access log every second
    checks = nginx.count(prefix, wall0, wall1)
    healthy = n - n_hung
    cycles = checks / healthy if healthy else 0
    total_checks = cycles * n  # hung checks do not reach nginx; each cycle runs every check once
    if hung:  # the hung checks run in turn, 2 s each: a cycle is longer than the window, so count
        # the healthy checks done in it and add the hung ones' timeouts
        total_checks = checks + checks / 9
        cycle_s = (healthy / (checks / elapsed) if checks else float("inf"))
    else:
        cycle_s = elapsed / cycles if cycles else None
    return {"n": n, "hung": n_hung, "seconds": elapsed, "healthy_checks": checks, "cycles": cycles,
            "cycle_s": cycle_s, "checks_per_s": total_checks / elapsed,
            "healthy_checks_per_s": checks / elapsed, "cpu_s": cpu_s,
            "cpu_us_per_check": 1e6 * cpu_s / max(total_checks, 1), "rss_mib": rss}


# ---- wrk ----------------------------------------------------------------------------------------

def run_wrk(nginx, keepalive, seconds):
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", nginx.url("/wrk")]
    if not keepalive:
        cmd[1:1] = ["-H", "Connection: close"]
    cmd = pinned(cmd, TOOL_CPU)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, _, ru = os.wait4(proc.pid, 0)
    m = re.search(r"(\d+) requests in", out)
    reqs = int(m.group(1)) if m else 0
    cpu_s = ru.ru_utime + ru.ru_stime
    return {"keepalive": keepalive, "requests": reqs, "requests_per_s": reqs / seconds, "cpu_s": cpu_s,
            "cpu_us_per_request": 1e6 * cpu_s / max(reqs, 1)}


# ---- detection and rollback latency -------------------------------------------------------------

def run_latency(work):
    site = tempfile.mkdtemp(prefix="site-", dir=work)
    os.chmod(site, 0o755)
    for name, body in (("v1", "<!doctype html><title>v1</title><p>ok</p>\n"), ("v2", "<!doctype html><p>v2: broken</p>\n")):
        os.makedirs(f"{site}/releases/{name}")
        with open(f"{site}/releases/{name}/index.html", "w") as f:
            f.write(body)
    os.symlink("releases/v1", f"{site}/current")
    ng = Nginx(tempfile.mkdtemp(prefix="ng-", dir=work), site_root=site)
    state = tempfile.mkdtemp(prefix="state-", dir=work)
    port = free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "state_dir": state,
           "authority": {"P0": {"roles": ["oncall"], "quorum": 1, "auto": True}},
           "services": [{"name": "app",
                         "probes": [{"name": "home", "kind": "http", "url": f"http://127.0.0.1:{ng.site_port}/", "interval": "200ms",
                                     "timeout": "150ms", "expect": {"body_contains": "<title>"}}],
                         "deployment": {"kind": "local_symlink", "path": site, "observe_interval": "1s"},
                         "triggers": [{"name": "down", "severity": "P0", "rule": {"kind": "consecutive_failures", "count": 3}}],
                         "rollback": {"mode": "auto", "good_after": "1s", "verify": {"within": "10s", "healthy_samples": 3}}}]}
    path = os.path.join(state, "..", "latency.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.Popen(pinned([LASTGOOD, "run", "-c", path, "--log-level", "warn"], TOOL_CPU), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ledger = os.path.join(state, "ledger.jsonl")

    def entries():
        try:
            with open(ledger) as f:
                return [json.loads(l) for l in f if l.strip()]
        except (OSError, ValueError):
            return []

    def wait(pred, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            for e in entries():
                if pred(e):
                    return e
            time.sleep(0.01)
        raise RuntimeError("timed out waiting in the ledger")

    try:
        wait(lambda e: e["type"] == "release_verified_good")
        os.symlink("releases/v2", f"{site}/current.tmp")
        os.rename(f"{site}/current.tmp", f"{site}/current")
        switched_at = time.time()
        decision = wait(lambda e: e["type"] == "decision" and e["data"].get("kind") == "execute")
        finished = wait(lambda e: e["type"] == "action_finished")
        started = wait(lambda e: e["type"] == "action_started")
    finally:
        stop(proc)
        ng.close()
    return {"detect_ms": decision["ts"] - switched_at * 1000, "decision_to_switched_ms": finished["ts"] - decision["ts"],
            "decision_to_started_ms": started["ts"] - decision["ts"], "execute_ms": finished["data"]["seconds"] * 1000,
            "ok": finished["data"]["ok"], "live_after": os.readlink(f"{site}/current")}


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
        rows.append((n, a, b, m))
    floor = median([r["cpu_us_per_request"] for r in res.get("wrk", {}).get("keep-alive", [])]) if res.get("wrk") else None
    if rows:
        out.append("| N | lastgood / blackbox_exporter CPU per probe (target ≤ 0.10) | lastgood / monit (target ≤ 0.33) | lastgood / wrk keep-alive floor (target ≤ 2.5) |")
        out.append("| --- | --- | --- | --- |")
        for n, a, b, m in rows:
            out.append(f"| {n} | {fmt(a / b, 3) if a and b else 'n/a'} | {fmt(a / m, 3) if a and m else 'n/a'} | {fmt(a / floor, 2) if a and floor else 'n/a'} |")
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
    ap.add_argument("--only", default="lastgood,blackbox,monit,wrk,hung,latency")
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
