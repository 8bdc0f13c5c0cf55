"""The runners of bench/compare.py: each starts one tool alone against the loopback nginx and
returns its figures (CPU per probe, peak RSS, lateness, or detection and rollback latency)."""
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

from benchlib import *  # noqa: F401,F403 (helpers, servers and the CPU pinning)


# ---- lastgood -----------------------------------------------------------------------------------

def metric_lines(text, name):
    for line in text.splitlines():
        if line.startswith(name):
            yield line


LAST_SCRAPE_S = [None]  # how long the last scrape's HTTP exchange took (not the parsing below)


def scrape(port):
    t0 = time.monotonic()
    text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=60)
    LAST_SCRAPE_S[0] = time.monotonic() - t0
    runs = {"ok": 0.0, "other": 0.0}
    for line in metric_lines(text, "lastgood_probes_total{"):
        v = float(line.rsplit(" ", 1)[1])
        runs["ok" if 'outcome="ok"' in line else "other"] += v
    buckets = {}
    for line in metric_lines(text, "lastgood_schedule_lateness_seconds_bucket{"):
        le = re.search(r'le="([^"]+)"', line).group(1)
        buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    skipped = sum(float(l.rsplit(" ", 1)[1]) for l in metric_lines(text, "lastgood_schedule_skipped_total"))
    # TLS handshakes (full, resumed); absent in binaries older than the counter.
    hs = {"full": 0.0, "resumed": 0.0}
    seen = False
    for line in metric_lines(text, "lastgood_tls_handshakes_total{"):
        hs["resumed" if 'resumed="true"' in line else "full"] += float(line.rsplit(" ", 1)[1])
        seen = True
    runs["handshakes"] = hs if seen else None
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


def lastgood_config(work, targets, state_dir, probe_extra=None):
    services = []
    for i, (url, interval, timeout) in enumerate(targets):
        services.append({"name": f"t{i}",
                         "probes": [dict({"name": "p", "kind": "http", "url": url, "interval": interval, "timeout": timeout}, **(probe_extra or {}))],
                         "triggers": [{"name": "down", "severity": "P2", "rule": {"kind": "consecutive_failures", "count": 3}}]})
    port = free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "state_dir": state_dir, "services": services}
    path = os.path.join(work, "lastgood.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path, port


def run_lastgood(work, nginx, n, seconds, warmup, hung=None, tls=False, binary=None, starve=False, interval_s=1, nofile=None):
    """n targets at 1 s (timeout 1 s); with hung: 10% of them point at a server that never answers,
    with timeout 2 s (and so interval 2 s: lastgood, like Prometheus, refuses a timeout longer than
    the interval)."""
    targets = []
    n_hung = n // 10 if hung else 0
    for i in range(n):
        if hung and i % 10 == 0:
            targets.append((f"http://127.0.0.1:{hung.port}/h/{i}", "2s", "2s"))
        else:
            targets.append((nginx.tls_url(f"/lg/{i}") if tls else nginx.url(f"/lg/{i}", i), f"{interval_s}s", "1s"))
    state = tempfile.mkdtemp(prefix="state-", dir=work)
    cfg, port = lastgood_config(work, targets, state, {"ca_file": nginx.cert} if tls else None)
    log = open(os.path.join(work, f"lastgood-{n}.log"), "w")
    cmd = pinned([binary or LASTGOOD, "run", "-c", cfg, "--log-level", "warn"], TOOL_CPU)
    if nofile:  # lastgood under a smaller open-files limit than this driver's
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + cmd
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    hog = None
    ready_s = None
    scrape_s = None
    try:
        wait_port(port, 120)
        while ready_s is None and time.monotonic() - started < 120:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
                ready_s = time.monotonic() - started
            except Exception:
                time.sleep(0.05)
        if starve:  # a busy loop on lastgood's core: it gets about half of it
            hog = subprocess.Popen(pinned([sys.executable, "-c", "while True: pass"], TOOL_CPU))
        time.sleep(warmup)
        r0, b0, s0 = scrape(port)
        w = Window(proc.pid)
        wall0 = time.time()
        time.sleep(seconds)
        elapsed, cpu_s = w.end()
        wall1 = time.time()
        r1, b1, s1 = scrape(port)
        scrape_s = LAST_SCRAPE_S[0]  # the exchange, as Prometheus's scrape_duration_seconds (the parsing here is Python's)
        rss = peak_rss_mib(proc.pid)
        time.sleep(1.2)  # nginx flushes its access log every second
    finally:
        if hog:
            hog.kill()
            hog.wait()
        stop(proc)
        log.close()
    ok = r1["ok"] - r0["ok"]
    other = r1["other"] - r0["other"]
    healthy = (n - n_hung) / interval_s
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
        "ready_s": ready_s, "scrape_s": scrape_s, "ok_share": ok / (ok + other) if ok + other else None,
    }
    if tls and r1["handshakes"] is not None and r0["handshakes"] is not None:
        full = r1["handshakes"]["full"] - r0["handshakes"]["full"]
        resumed = r1["handshakes"]["resumed"] - r0["handshakes"]["resumed"]
        res["handshakes_per_s"] = (full + resumed) / elapsed
        res["resumed_share"] = resumed / (full + resumed) if full + resumed else None
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


def run_blackbox(work, nginx, n, seconds, warmup, tls=False):
    """blackbox_exporter probing n targets at 1 s; with tls, over HTTPS, verifying nginx's certificate."""
    cfg = os.path.join(work, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      preferred_ip_protocol: ip4\n")
        if tls:
            f.write(f"      tls_config:\n        ca_file: {nginx.cert}\n")
    port = free_port()
    proc = subprocess.Popen(pinned(["prometheus-blackbox-exporter", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                                    "--log.level=warn"], TOOL_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        urls = [nginx.tls_url(f"/bb/{i}") if tls else nginx.url(f"/bb/{i}") for i in range(n)]
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

def run_wrk(nginx, keepalive, seconds, tls=False):
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", nginx.tls_url("/wrk") if tls else nginx.url("/wrk")]
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


def run_floor(nginx, n, seconds, warmup, binary=None):
    """bench/pattern_floor.cpp: the least a client spends on lastgood's pattern (n keep-alive targets,
    each once a second, planned on 100 ms slots), pinned like the tools."""
    binary = binary or os.environ.get("PATTERN_FLOOR") or os.path.join(os.path.dirname(os.path.dirname(LASTGOOD)), "bench", "pattern_floor")
    ports = ",".join(str(p) for p in nginx.ports)
    out = subprocess.run(pinned([binary, ports, str(n), str(seconds), str(warmup)], TOOL_CPU),
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["requests_per_s"] = r["requests"] / seconds
    return r


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


