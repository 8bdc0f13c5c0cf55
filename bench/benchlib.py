"""What bench/compare.py measures with: process CPU and memory from /proc, the loopback nginx that
serves every target, a server that accepts and never answers, and the runners of each tool
(lastgood, blackbox_exporter, monit, wrk, detection and rollback latency)."""
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
    def __init__(self, work, site_root=None, tls=False, tls_keepalive=True, origins=1, tls_resume=True):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.site_port = free_port()
        self.tls_port = free_port() if tls else None
        # More origins (ports) for the same answer: targets spread over them as over real sites
        # (one origin for tens of thousands of connections makes the kernel's ephemeral-port
        # search for connect() the bottleneck: docs/benchmarks.md, round 5).
        self.ports = []
        while len(self.ports) < origins:  # free_port() may give a port again once it is released
            p = free_port()
            if p not in self.ports and p not in (self.site_port, self.tls_port):
                self.ports.append(p)
        self.port = self.ports[0]
        tls_server = ""
        if tls:
            # A self-signed certificate for 127.0.0.1, which the probes trust as their CA file.
            self.cert = os.path.join(self.dir, "cert.pem")
            key = os.path.join(self.dir, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", self.cert],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            tls_server = f"""
  server {{ listen 127.0.0.1:{self.tls_port} ssl backlog=4096; ssl_certificate {self.cert}; ssl_certificate_key {key};
           {"ssl_session_cache shared:bench:10m;" if tls_resume else "ssl_session_cache off; ssl_session_tickets off;"}{"" if tls_keepalive else " keepalive_timeout 0;"}
           location / {{ default_type text/plain; return 200 "ok\\n"; }} }}"""
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
  server {{ {" ".join(f"listen 127.0.0.1:{p} backlog=4096;" for p in self.ports)} location / {{ default_type text/plain; return 200 "ok\\n"; }} }}{site}{tls_server}
}}
"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(pinned(["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")], INFRA_CPU),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if tls:
            wait_port(self.tls_port)
        if site_root:
            wait_port(self.site_port)

    def url(self, path, i=0):
        """The URL of path on the i-th origin (modulo how many there are)."""
        return f"http://127.0.0.1:{self.ports[i % len(self.ports)]}{path}"

    def tls_url(self, path):
        return f"https://127.0.0.1:{self.tls_port}{path}"

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


def median_range(xs, digits=1, unit=""):
    """'12.3 (11.0–14.1)': median (min–max) of the values given, None left out; 'n/a' when none."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    med = statistics.median(xs)
    return f"{med:.{digits}f}{unit} ({min(xs):.{digits}f}–{max(xs):.{digits}f})" if len(xs) > 1 else f"{med:.{digits}f}{unit}"


def bench_setup(prefix):
    """What every bench driver does first: nginx present, this process's open-files limit raised to
    its hard limit, itself pinned beside nginx; returns a fresh work directory."""
    import resource
    if not shutil.which("nginx"):
        sys.exit("nginx is missing: run scripts/install-deps --bench")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if INFRA_CPU is not None:
        os.sched_setaffinity(0, {int(INFRA_CPU)})
    return tempfile.mkdtemp(prefix=prefix)
