#!/usr/bin/env python3
"""Benchmarks of the gateway, side by side with NGINX (and its `mirror`) in one run; writes
BENCHMARKS.md and the charts in docs/bench/.

  python3 bench/run.py                 # everything, twice (about 18 minutes on 2 cores)
  python3 bench/run.py --repeat 3      # more repeats of the throughput and latency groups
  python3 bench/run.py --smoke         # about a second per row, debug build, results in a temporary directory (CI)
  python3 bench/run.py --only throughput latency   # some groups; BENCHMARKS.md is not rewritten

Both systems run the tutorial's routing (examples/istio/istio.yaml, unchanged; NGINX gets the
equivalent locations): `/proxy/...` is routed only, `/target/...` is routed and mirrored to the
shadow (100%). The primary and shadow backends are NGINX workers answering `index`; misbehaving
shadows are `bench-upstream` (delay, hang, reset) or a port nothing listens on (refused).

Pinning (machines with two or more CPUs): the system under test, the gateway or NGINX with one
worker, runs on CPU 0; the load generators and the backends on the other CPUs (taskset). The
gateway's `workers` setting is left at its default (the CPUs it may use: 1 here).

Machines here are shared and noisy: read the ratios between rows measured in the same run, not
absolute numbers. Everything runs on 127.0.0.1; every load and every wait is bounded in time.

Groups:
  throughput   wrk, 32 connections and 1 connection, routing only and 100% mirror, both systems,
               and direct (wrk at the backend); peak RSS of both
  latency      oha at a fixed 1,000 and 10,000 req/s with latency correction: p50/p99/p99.9 added
               over direct; CPU per 1,000 req/s from /proc/<pid>/stat
  shadows      the shadow fast / 1 s delay / never answering / refusing / resetting, 1 and 16
               connections, both systems: rate against the no-shadow route, p99, primary errors
  compare      256 KiB JSON answers that mismatch on every request: comparison on vs off (gateway)
  capture      a compared 100% mirror with `capture:` at 100% sampling vs without, alternately (wrk
               -c16: throughput and p99 of the primary); entries written and dropped (gateway)
  grpc         h2load unary gRPC calls over h2c, 4 connections x 8 streams and 1 x 1, routing only
               and 100% mirror (methods: all), both systems (NGINX: grpc_pass, mirror), and direct;
               backends: nghttpd answering a fixed reply; a grpcio call checks each system first
  websocket    a Python websockets echo server behind both systems, and direct: echo round trips on
               8 connections (messages/s, p50/p99), handshake + echo + close loops (per second)

The grpc, websocket, shadows, compare and capture groups run once, in the first run.

Needs: wrk, nginx, h2load, nghttpd (Debian: wrk nginx-light nghttp2-client nghttp2-server), oha
(cargo install oha --locked), Python: matplotlib, grpcio, websockets (.ci/requirements.txt); the
script builds the release `gateway` and `bench-upstream` itself.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
TARGET = TARGET_DIR / "release"  # the smoke mode uses the debug build CI already has
ISTIO_YAML = REPO / "examples" / "istio" / "istio.yaml"
BEGIN, END = "<!-- bench:begin (written by bench/run.py; edit outside these markers) -->", "<!-- bench:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 32
SHADOW_CONNECTIONS = (1, 16)
SHADOW_MODES = ("fast", "delay", "hang", "refuse", "reset")
SHADOW_MODE_NAMES = {
    "fast": "fast",
    "delay": "answers after 1 s",
    "hang": "never answers",
    "refuse": "refuses connections",
    "reset": "resets connections",
}
# The gateway's default mirror timeout for Istio mirrors; NGINX's mirror gets the same deadlines.
MIRROR_TIMEOUT_S = 5
# grpc group: (connections, streams per connection) of each h2load row; one unary call's path and messages.
GRPC_LOADS = ((4, 8), (1, 1))
GRPC_PATH = "/helloworld.Greeter/SayHello"
GRPC_REQUEST = b"\x0a\x05world"  # HelloRequest { name: "world" }
GRPC_REPLY = b"\x0a\x0bHello world"  # HelloReply { message: "Hello world" }
# websocket group: echo connections, parallel handshake loops (1 KiB messages; bench/protocol_peers.py).
WS_CONNECTIONS = 8
WS_HANDSHAKE_TASKS = 4
PEERS = Path(__file__).resolve().parent / "protocol_peers.py"

GROUPS = ["throughput", "latency", "shadows", "compare", "capture", "grpc", "websocket", "tls"]
GATEWAY_BIN: Path | None = None
# Commands as run, one of each kind, for BENCHMARKS.md.
COMMANDS: dict[str, str] = {}


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pinning() -> tuple[list[str], list[str]]:
    """taskset prefixes: (system under test, load generators and backends)."""
    mine = cpus()
    if len(mine) < 2 or not shutil.which("taskset"):
        return [], []
    return ["taskset", "-c", str(mine[0])], ["taskset", "-c", ",".join(map(str, mine[1:]))]


SUT_PIN, LOAD_PIN = pinning()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class Proc:
    """A process started for the run; with `family`, its children count too (NGINX's workers)."""

    def __init__(self, args: list[str], port: int | None = None, pin: list[str] | None = None, log: Path | None = None, **kw):
        out = open(log, "ab") if log else subprocess.DEVNULL
        self.p = subprocess.Popen([*(pin or []), *args], stdout=out, stderr=out, **kw)
        self.port = port
        if port:
            wait_port(port, self.p)

    def pids(self) -> list[int]:
        return [self.p.pid, *children(self.p.pid)]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return total / CLK_TCK

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the process and its children (NGINX: master and worker)."""
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if m := re.search(r"VmHWM:\s+(\d+) kB", status):
                total += int(m.group(1))
        return total / 1024

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Load generators


def run_tool(args: list[str], timeout: float) -> str:
    done = subprocess.run([*LOAD_PIN, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def wrk(url: str, connections: int, seconds: float, close: bool = False) -> dict:
    """`close`: `Connection: close` on every request, so each one opens a connection (and over
    TLS, does a full handshake)."""
    seconds = max(1, round(seconds))
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", *(["-H", "Connection: close"] if close else []), url]
    COMMANDS.setdefault(f"wrk -c{connections}{' close' if close else ''}{' tls' if url.startswith('https') else ''}", shlex.join([*LOAD_PIN, *args]))
    out = run_tool(args, seconds + 30)

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in m.groups()) if m else 0
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": total,
        "errors": non2xx + errors,
        "p50_ms": ms(p50.group(1)) if p50 else None,
        "p99_ms": ms(p99.group(1)) if p99 else None,
    }


def wrk_cpu(proc: Proc, url: str, connections: int, seconds: float) -> dict:
    """`wrk` against `proc`, with the CPU time (user + system, from /proc/<pid>/stat, NGINX's
    workers included) `proc` spent per request over the measured window: it holds better than
    req/s on a shared machine."""
    before = proc.cpu_seconds()
    r = wrk(url, connections, seconds)
    r["cpu_us_per_req"] = (proc.cpu_seconds() - before) / r["requests"] * 1e6 if r["requests"] else None
    return r


def oha(url: str, rate: int, seconds: float, connections: int = CONNECTIONS) -> dict:
    seconds = max(1, round(seconds))
    # -w: requests in flight at the deadline finish and count, rather than show up as errors.
    args = ["oha", "--no-tui", "--output-format", "json", "--latency-correction", "-w", "-z", f"{seconds}s", "-q", str(rate),
            "-c", str(connections), url]
    COMMANDS.setdefault(f"oha -q {rate}", shlex.join([*LOAD_PIN, *args]))
    out = json.loads(run_tool(args, seconds + 60))
    pct = out["latencyPercentiles"]
    statuses = out.get("statusCodeDistribution", {})
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    failed = sum(statuses.values()) - ok + sum(out.get("errorDistribution", {}).values())
    return {
        "rps": out["summary"]["requestsPerSec"],
        "requests": ok + failed,
        "errors": failed,
        "p50_ms": pct["p50"] * 1000,
        "p99_ms": pct["p99"] * 1000,
        "p999_ms": pct["p99.9"] * 1000,
    }


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(url: str, connections: int, streams: int, seconds: float, request: Path, log: Path) -> dict:
    """Unary gRPC calls over h2c (prior knowledge) for `seconds`; latencies from h2load's per-request log."""
    seconds = max(1, round(seconds))
    args = ["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-D{seconds}", "-H", "content-type: application/grpc",
            "-H", "te: trailers", "-d", str(request), "--log-file", str(log), url]
    shown = [*args[:-3], re.sub(r":\d+/", ":PORT/", url)]  # without the log file
    COMMANDS.setdefault(f"h2load -c{connections} -m{streams}", shlex.join([*LOAD_PIN, *shown]).replace(str(request), "request.bin"))
    log.unlink(missing_ok=True)  # h2load appends
    out = run_tool(args, seconds + 30)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        raise RuntimeError(f"h2load: no summary in {out[-500:]}")
    total, _, done, succeeded, failed, _, timeout = map(int, m.groups())
    times = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line.count("\t") == 2)
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else None
    return {
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "requests": succeeded,
        "errors": failed + timeout,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": times[-1] if times else None,
    }


def grpc_load(connections: int, streams: int) -> str:
    return f"{connections} conn x {streams} stream{'s' if streams > 1 else ''}"


def grpc_check(target: str, request: Path, what: str) -> dict:
    """One real unary call with grpcio (bench/protocol_peers.py): status OK and the expected reply, or the run stops."""
    done = subprocess.run([*LOAD_PIN, sys.executable, str(PEERS), "grpc-call", target, GRPC_PATH, str(request)],
                          capture_output=True, text=True, timeout=30)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"grpc check through {what}: no answer ({done.returncode}): {done.stderr.strip()[-500:]}") from None
    if result.get("code") != "OK" or bytes.fromhex(result.get("answer", "")) != GRPC_REPLY:
        raise RuntimeError(f"grpc check through {what} failed: {json.dumps(result)}")
    return result


def ws_load(mode: str, url: str, parallel: int, seconds: float) -> dict:
    """bench/protocol_peers.py ws-echo-load or ws-handshakes on the load CPUs; `rate` is messages/s or handshakes/s."""
    seconds = max(1, round(seconds))
    args = [sys.executable, str(PEERS), mode, url, str(parallel), str(seconds)]
    COMMANDS.setdefault(mode, shlex.join([*LOAD_PIN, "python3", "bench/protocol_peers.py", mode, "ws://127.0.0.1:PORT/ws/", str(parallel),
                                          str(seconds)]))
    r = json.loads(run_tool(args, seconds + 60))
    r["requests"] = r["count"]
    return r


# ---------------------------------------------------------------------------------------------
# Systems: backends, NGINX as the proxy, the gateway

BACKEND_CONF = """
worker_processes 1;
pid {dir}/backend-{port}.pid;
error_log {dir}/backend-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{ return 200 "index"; }}
    }}
}}
"""

# The equivalent of istio.yaml: /proxy/ and /target/ rewritten to /, /target/ mirrored to v2.
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx-{port}.pid;
error_log {dir}/nginx-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream proxy_v1 {{ server 127.0.0.1:{primary}; keepalive 64; }}
    upstream target_v1 {{ server 127.0.0.1:{primary}; keepalive 64; }}
    upstream target_v2 {{ server 127.0.0.1:{shadow}; keepalive 64; }}
    map $request_uri $shadow_uri {{ ~^/target(?<rest>/.*)$ $rest; default $request_uri; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /proxy/ {{ proxy_pass http://proxy_v1/; }}
        location /target/ {{
            mirror /mirror;
            mirror_request_body on;
            proxy_pass http://target_v1/;
        }}
        location = /mirror {{
            internal;
            proxy_connect_timeout {timeout}s;
            proxy_read_timeout {timeout}s;
            proxy_send_timeout {timeout}s;
            proxy_pass http://target_v2$shadow_uri;
        }}
    }}
}}
"""

SERVICE_ENTRIES = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{ name: proxy, namespace: test }}
spec:
  hosts: [proxy]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{ number: 8090, name: http, protocol: HTTP }}]
  endpoints:
  - {{ address: 127.0.0.1, ports: {{ http: {primary} }}, labels: {{ app: proxy, version: v1 }} }}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{ name: target, namespace: test }}
spec:
  hosts: [target]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{ number: 8090, name: http, protocol: HTTP }}]
  endpoints:
  - {{ address: 127.0.0.1, ports: {{ http: {primary} }}, labels: {{ app: target, version: v1 }} }}
  - {{ address: 127.0.0.1, ports: {{ http: {shadow} }}, labels: {{ app: target, version: v2 }} }}
"""


# NGINX as the gRPC proxy; {mirror} is empty (routing only) or NGINX_GRPC_MIRROR.
NGINX_GRPC_CONF = """
worker_processes 1;
pid {dir}/nginx-grpc-{port}.pid;
error_log {dir}/nginx-grpc-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream greeter_v1 {{ server 127.0.0.1:{primary}; keepalive 64; }}
    upstream greeter_v2 {{ server 127.0.0.1:{shadow}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} http2 backlog=4096;
        keepalive_requests 1000000;
        location /helloworld.Greeter/ {{
            {mirror}
            grpc_pass grpc://greeter_v1;
        }}
        location = /grpc_mirror {{
            internal;
            rewrite ^ $request_uri break;   # the call's own path, not /grpc_mirror
            grpc_connect_timeout {timeout}s;
            grpc_read_timeout {timeout}s;
            grpc_send_timeout {timeout}s;
            grpc_pass grpc://greeter_v2;
        }}
    }}
}}
"""
NGINX_GRPC_MIRROR = "mirror /grpc_mirror; mirror_request_body on;"

# The gateway's equivalent (native routing file); {mirror} is empty or GATEWAY_GRPC_MIRROR.
GATEWAY_GRPC_ROUTING = """
services:
  greeter: {{ protocol: http2, v1: [127.0.0.1:{primary}], v2: [127.0.0.1:{shadow}] }}
routes:
  - name: grpc
    match: {{ prefix: /helloworld.Greeter/ }}
    to: greeter/v1
{mirror}"""
GATEWAY_GRPC_MIRROR = "    mirrors: [{{ to: greeter/v2, methods: all, timeout: {timeout}s }}]\n"

# WebSocket: NGINX proxies /ws/ to the echo server with the documented Upgrade/Connection map.
NGINX_WS_CONF = """
worker_processes 1;
pid {dir}/nginx-ws-{port}.pid;
error_log {dir}/nginx-ws-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream echo {{ server 127.0.0.1:{echo}; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /ws/ {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""

GATEWAY_WS_ROUTING = """
services:
  echo: [127.0.0.1:{echo}]
routes:
  - name: ws
    match: {{ prefix: /ws/ }}
    to: echo
"""

# TLS: both terminate TLS 1.3 with the same self-signed P-256 certificate and proxy to the plain
# backend; keep-alive connections, and one new handshake per request (`Connection: close`).
NGINX_TLS_CONF = """
worker_processes 1;
pid {dir}/nginx-tls-{port}.pid;
error_log {dir}/nginx-tls-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream primary {{ server 127.0.0.1:{primary}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;   # `http2 on;` from NGINX 1.25.1
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://primary;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

GATEWAY_TLS_ROUTING = """
services:
  primary: [127.0.0.1:{primary}]
routes:
  - name: tls
    to: primary
"""

GATEWAY_TLS_SETTINGS = """
tls:
  certificates:
    - {{ certificate: {cert}, private_key: {key} }}
"""


class Bench:
    def __init__(self, work: Path, smoke: bool):
        self.work = work
        self.smoke = smoke
        self.procs: list[Proc] = []

    def start(self, args: list[str], port: int, pin: list[str], log: str | None = None, **kw) -> Proc:
        proc = Proc(args, port, pin, log=self.work / log if log else None, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)

    def backend(self) -> Proc:
        port = free_port()
        conf = self.work / f"backend-{port}.conf"
        conf.write_text(BACKEND_CONF.format(dir=self.work, port=port))
        return self.start(["nginx", "-e", str(self.work / f"backend-{port}.err"), "-c", str(conf), "-p", str(self.work)], port, LOAD_PIN)

    def misbehaving(self, mode: str) -> Proc | None:
        if mode == "refuse":
            return None
        port = free_port()
        return self.start([str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{port}", "--mode", mode, "--delay", "1000"], port, LOAD_PIN)

    def nginx(self, primary: int, shadow: int) -> Proc:
        port = free_port()
        conf = self.work / f"nginx-{port}.conf"
        conf.write_text(NGINX_CONF.format(dir=self.work, port=port, primary=primary, shadow=shadow, timeout=MIRROR_TIMEOUT_S))
        COMMANDS.setdefault("nginx", shlex.join([*SUT_PIN, "nginx", "-c", "nginx.conf"]) + "   # bench/run.py NGINX_CONF")
        return self.start(["nginx", "-e", str(self.work / f"nginx-{port}.err"), "-c", str(conf), "-p", str(self.work)], port, SUT_PIN)

    def nginx_conf(self, kind: str, template: str, pin: list[str], **values) -> Proc:
        """NGINX with one of the templates above, on a fresh port."""
        port = free_port()
        conf = self.work / f"{kind}-{port}.conf"
        conf.write_text(template.format(dir=self.work, port=port, **values))
        return self.start(["nginx", "-e", str(self.work / f"{kind}-{port}.err"), "-c", str(conf), "-p", str(self.work)], port, pin)

    def grpc_backend(self) -> Proc:
        """nghttpd over h2c answering every call with one fixed, gRPC-framed HelloReply and the trailer grpc-status 0:
        it answers 150,000 calls/s on one CPU, so it bounds neither system."""
        port = free_port()
        root = self.work / f"grpc-{port}"
        (root / GRPC_PATH.rsplit("/", 1)[0].lstrip("/")).mkdir(parents=True)
        (root / GRPC_PATH.lstrip("/")).write_bytes(grpc_frame(GRPC_REPLY))
        COMMANDS.setdefault("nghttpd", shlex.join([*LOAD_PIN, "nghttpd", "--no-tls", "-d", "DIR", "--trailer", "grpc-status: 0", "PORT"])
                            + "   # DIR/helloworld.Greeter/SayHello: the framed reply")
        return self.start(["nghttpd", "--no-tls", "-d", str(root), "--trailer", "grpc-status: 0", str(port)], port, LOAD_PIN,
                          log=f"nghttpd-{port}.log")

    def nginx_grpc(self, primary: int, shadow: int, mirror: bool) -> Proc:
        COMMANDS.setdefault("nginx grpc", shlex.join([*SUT_PIN, "nginx", "-c", "nginx.conf"]) + "   # bench/run.py NGINX_GRPC_CONF")
        return self.nginx_conf("nginx-grpc", NGINX_GRPC_CONF, SUT_PIN, primary=primary, shadow=shadow, timeout=MIRROR_TIMEOUT_S,
                               mirror=NGINX_GRPC_MIRROR if mirror else "")

    def gateway_grpc(self, primary: int, shadow: int, mirror: bool) -> Proc:
        routing = self.work / f"grpc-{'mirror' if mirror else 'routing'}.yaml"
        routing.write_text(GATEWAY_GRPC_ROUTING.format(primary=primary, shadow=shadow,
                                                       mirror=GATEWAY_GRPC_MIRROR.format(timeout=MIRROR_TIMEOUT_S) if mirror else ""))
        COMMANDS.setdefault("gateway grpc", shlex.join([*SUT_PIN, "gateway", "--config", "grpc.yaml", "--listen", "127.0.0.1:PORT"])
                            + "   # bench/run.py GATEWAY_GRPC_ROUTING")
        return self.gateway(0, 0, routing)

    def ws_echo(self) -> Proc:
        port = free_port()
        COMMANDS.setdefault("ws-echo", shlex.join([*LOAD_PIN, "python3", "bench/protocol_peers.py", "ws-echo", "PORT"]))
        return self.start([sys.executable, str(PEERS), "ws-echo", str(port)], port, LOAD_PIN, log=f"ws-echo-{port}.log")

    def nginx_ws(self, echo: int) -> Proc:
        COMMANDS.setdefault("nginx websocket", shlex.join([*SUT_PIN, "nginx", "-c", "nginx.conf"]) + "   # bench/run.py NGINX_WS_CONF")
        return self.nginx_conf("nginx-ws", NGINX_WS_CONF, SUT_PIN, echo=echo)

    def gateway_ws(self, echo: int) -> Proc:
        routing = self.work / f"ws-{echo}.yaml"
        routing.write_text(GATEWAY_WS_ROUTING.format(echo=echo))
        COMMANDS.setdefault("gateway websocket", shlex.join([*SUT_PIN, "gateway", "--config", "ws.yaml", "--listen", "127.0.0.1:PORT"])
                            + "   # bench/run.py GATEWAY_WS_ROUTING")
        return self.gateway(0, 0, routing)

    def gateway(self, primary: int, shadow: int, routing: Path | None = None, binary: Path | None = None) -> Proc:
        port, admin = free_port(), free_port()
        configs = [routing] if routing else [ISTIO_YAML, self.work / f"entries-{port}.yaml"]
        if not routing:
            configs[1].write_text(SERVICE_ENTRIES.format(primary=primary, shadow=shadow))
        # As a user runs it: no exporter, the default log level.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUST_LOG", "GATEWAY_"))}
        args = [str(binary or GATEWAY_BIN or TARGET / "gateway"), *[a for c in configs for a in ("--config", str(c))], "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}"]
        if not routing:
            COMMANDS.setdefault("gateway", shlex.join([*SUT_PIN, "gateway", "--config", "examples/istio/istio.yaml", "--config",
                                                       "service-entries.yaml", "--listen", "127.0.0.1:PORT"]))
        proc = self.start(args, port, SUT_PIN, log=f"gateway-{port}.log", env=env)
        proc.admin = admin
        return proc


    def certificate(self) -> tuple[Path, Path]:
        cert, key = self.work / "tls.crt", self.work / "tls.key"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True, timeout=60)
        return cert, key

    def nginx_tls(self, primary: int) -> Proc:
        cert, key = self.certificate()
        COMMANDS.setdefault("nginx tls", shlex.join([*SUT_PIN, "nginx", "-c", "nginx.conf"]) + "   # bench/run.py NGINX_TLS_CONF")
        return self.nginx_conf("nginx-tls", NGINX_TLS_CONF, SUT_PIN, primary=primary, cert=cert, key=key)

    def gateway_tls(self, primary: int) -> Proc:
        cert, key = self.certificate()
        routing = self.work / "tls-routing.yaml"
        routing.write_text(GATEWAY_TLS_ROUTING.format(primary=primary))
        settings = self.work / "tls-settings.yaml"
        settings.write_text(GATEWAY_TLS_SETTINGS.format(cert=cert, key=key))
        port, admin = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUST_LOG", "GATEWAY_"))}
        args = [str(GATEWAY_BIN or TARGET / "gateway"), "--config", str(routing), "--settings", str(settings), "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin}"]
        COMMANDS.setdefault("gateway tls", shlex.join([*SUT_PIN, "gateway", "--config", "tls-routing.yaml", "--settings", "tls-settings.yaml"]))
        proc = self.start(args, port, SUT_PIN, log=f"gateway-tls-{port}.log", env=env)
        proc.admin = admin
        return proc


def admin_json(admin: int, path: str) -> dict:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5) as r:
        return json.loads(r.read())


def show(name: str, r: dict) -> None:
    p50 = f"{r['p50_ms']:8.3f}" if r.get("p50_ms") is not None else "       -"
    p99 = f"{r['p99_ms']:8.3f}" if r.get("p99_ms") is not None else "       -"
    extra = f"  p99.9 {r['p999_ms']:8.3f} ms" if "p999_ms" in r else ""
    extra += f"  cpu {r['vcpu_per_1k']:.3f} vCPU/1k" if "vcpu_per_1k" in r else ""
    extra += f"  cpu {r['cpu_us_per_req']:.1f} us/req" if r.get("cpu_us_per_req") is not None else ""
    extra += f"  peak RSS {r['rss_mb']:.1f} MB" if r.get("rss_mb") else ""
    print(f"  {name:<44} {r['rps']:>10.0f} req/s  p50 {p50} ms  p99 {p99} ms{extra}  errors {r['errors']}", flush=True)


# ---------------------------------------------------------------------------------------------
# Groups


def systems(bench: Bench, primary: int, shadow: int):
    """(name, start) of both systems, the gateway first."""
    return [("gateway", lambda: bench.gateway(primary, shadow)), ("nginx", lambda: bench.nginx(primary, shadow))]


def throughput(bench: Bench, seconds: float, primary: Proc, shadow: Proc) -> dict:
    print(f"\n== throughput: wrk -t1 -c{CONNECTIONS} and -c1, {seconds} s per row", flush=True)
    out = {}
    for c in (CONNECTIONS, 1):
        out[f"direct c{c}"] = r = wrk(f"http://127.0.0.1:{primary.port}/index", c, seconds)
        show(f"direct, {c} conn", r)
    for system, start in systems(bench, primary.port, shadow.port):
        proc = start()
        wrk(f"http://127.0.0.1:{proc.port}/target/index", 8, min(1, seconds))  # warm-up: pools, caches
        for c in (CONNECTIONS, 1):
            for route, path in (("routing", "/proxy/index"), ("mirror", "/target/index")):
                out[f"{system} {route} c{c}"] = r = wrk_cpu(proc, f"http://127.0.0.1:{proc.port}{path}", c, seconds)
                show(f"{system}, {route}, {c} conn", r)
        out[f"{system} rss"] = proc.peak_rss_mb()
        print(f"  {system} peak RSS over the group: {out[f'{system} rss']:.1f} MB")
        bench.stop(proc)
    return out


def latency(bench: Bench, seconds: float, rates: list[int], primary: Proc, shadow: Proc) -> dict:
    print(f"\n== latency: oha --latency-correction at fixed rates {rates}, -c{CONNECTIONS}, {seconds} s per row", flush=True)
    out = {}
    for rate in rates:
        out[f"direct {rate}"] = r = oha(f"http://127.0.0.1:{primary.port}/index", rate, seconds)
        show(f"direct @{rate}", r)
        for system, start in systems(bench, primary.port, shadow.port):
            proc = start()
            wrk(f"http://127.0.0.1:{proc.port}/target/index", 8, min(1, seconds))
            for route, path in (("routing", "/proxy/index"), ("mirror", "/target/index")):
                before, t0 = proc.cpu_seconds(), time.monotonic()
                r = oha(f"http://127.0.0.1:{proc.port}{path}", rate, seconds)
                vcpu = (proc.cpu_seconds() - before) / (time.monotonic() - t0)
                r["vcpu"] = vcpu
                r["vcpu_per_1k"] = vcpu / (r["rps"] / 1000) if r["rps"] else None
                out[f"{system} {route} {rate}"] = r
                show(f"{system}, {route} @{rate}", r)
            bench.stop(proc)
    return out


def shadows(bench: Bench, seconds: float, primary: Proc) -> dict:
    print(f"\n== shadows: wrk -t1 -c1 and -c16, {seconds} s per row; mirror deadline {MIRROR_TIMEOUT_S} s in both systems", flush=True)
    out = {}
    fast_shadow = None
    for mode in SHADOW_MODES:
        if mode == "fast":
            fast_shadow = bench.backend()
            shadow, port = fast_shadow, fast_shadow.port
        else:
            shadow = bench.misbehaving(mode)
            port = shadow.port if shadow else free_port()
        for system, start in systems(bench, primary.port, port):
            proc = start()
            wrk(f"http://127.0.0.1:{proc.port}/proxy/index", 4, min(1, seconds))
            for c in SHADOW_CONNECTIONS:
                if mode == "fast":
                    out[f"{system} none c{c}"] = r = wrk(f"http://127.0.0.1:{proc.port}/proxy/index", c, seconds)
                    show(f"{system}, no shadow, {c} conn", r)
                out[f"{system} {mode} c{c}"] = r = wrk(f"http://127.0.0.1:{proc.port}/target/index", c, seconds)
                r["of_none"] = r["rps"] / out[f"{system} none c{c}"]["rps"]
                show(f"{system}, shadow {mode}, {c} conn ({r['of_none']:.0%})", r)
            if system == "gateway":
                time.sleep(min(1.5, seconds))
                try:
                    copies = admin_json(proc.admin, "/mirrors")["mirrors"][0]["copies"]
                    out[f"gateway {mode} copies"] = copies
                    print(f"    copies: {json.dumps(copies)}")
                except (OSError, KeyError, IndexError, ValueError) as error:
                    print(f"    copies: unavailable ({error})")
            bench.stop(proc)
        if shadow:
            bench.stop(shadow)
    return out


def ab(bench: Bench, seconds: float, repeat: int, before: Path, primary: Proc, shadow: Proc) -> None:
    """Two gateway builds, alternately in one run: the figures of an optimisation's commit."""
    rows = [("routing", "/proxy/index", CONNECTIONS), ("routing", "/proxy/index", 1), ("mirror", "/target/index", CONNECTIONS),
            ("mirror", "/target/index", 1)]
    results: dict[str, list[float]] = {}
    for i in range(repeat):
        for name, binary in (("before", before), ("after", TARGET / "gateway")):
            proc = bench.gateway(primary.port, shadow.port, binary=binary)
            wrk(f"http://127.0.0.1:{proc.port}/target/index", 8, min(1, seconds))
            for route, path, c in rows:
                r = wrk_cpu(proc, f"http://127.0.0.1:{proc.port}{path}", c, seconds)
                results.setdefault(f"{name} {route} c{c}", []).append(r["rps"])
                results.setdefault(f"{name} {route} c{c} cpu", []).append(r["cpu_us_per_req"] or 0.0)
                show(f"run {i + 1}, {name}, {route}, {c} conn", r)
            bench.stop(proc)
    print(f"\n== before -> after ({repeat} runs, wrk -t1, {seconds} s per row; medians, each run in brackets)")
    for route, _, c in rows:
        b, a = results[f"before {route} c{c}"], results[f"after {route} c{c}"]
        print(f"  {route}, {c} conn: {spread(b, '{:,.0f}')} -> {spread(a, '{:,.0f}')} req/s, "
              f"{spread([y / x for x, y in zip(b, a)], '{:.3f}x')}")
        bc, ac = results[f"before {route} c{c} cpu"], results[f"after {route} c{c} cpu"]
        print(f"    CPU per request: {spread(bc, '{:.1f}')} -> {spread(ac, '{:.1f}')} us, "
              f"{spread([y / x for x, y in zip(bc, ac) if x], '{:.3f}x')}")


def compare(bench: Bench, seconds: float) -> dict:
    print(f"\n== compare: 256 KiB JSON answers, the shadow differs on every request; wrk -t1 -c16, {seconds} s per row", flush=True)
    out = {}
    ups = [bench.start([str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{p}", "--mode", "large", "--variant", v], p, LOAD_PIN)
           for p, v in ((free_port(), "a"), (free_port(), "b"))]
    for name, extra in (("off", ""), ("on", ", compare: { max_body: 1MiB }")):
        routing = bench.work / f"compare-{name}.yaml"
        routing.write_text(f"services: {{ app: {{ v1: [127.0.0.1:{ups[0].port}], v2: [127.0.0.1:{ups[1].port}] }} }}\n"
                           f"routes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: shadow{extra} }}] }}]\n")
        proc = bench.gateway(0, 0, routing)
        wrk(f"http://127.0.0.1:{proc.port}/items", 4, min(1, seconds))
        out[name] = r = wrk(f"http://127.0.0.1:{proc.port}/items", 16, seconds)
        r["rss_mb"] = proc.peak_rss_mb()
        show(f"gateway, comparison {name}", r)
        if name == "on":
            c = admin_json(proc.admin, "/mirrors")["mirrors"][0]
            out["comparison"] = c.get("comparison", {})
            print(f"    comparisons: {json.dumps(out['comparison'])}")
        bench.stop(proc)
    for up in ups:
        bench.stop(up)
    return out


def capture(bench: Bench, seconds: float, primary: Proc, shadow: Proc) -> dict:
    print(f"\n== capture: a compared mirror, capture at 100% sampling vs off, alternately twice; wrk -t1 -c16, {seconds} s per row", flush=True)
    out: dict = {"off": [], "on": []}
    for round_ in range(2):
        for name in ("off", "on"):
            har = bench.work / f"capture-{round_}.har"
            extra = f", capture: {{ file: {har}, sample: 100% }}" if name == "on" else ""
            routing = bench.work / f"capture-{name}-{round_}.yaml"
            routing.write_text(f"services: {{ app: {{ v1: [127.0.0.1:{primary.port}], v2: [127.0.0.1:{shadow.port}] }} }}\n"
                               f"routes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: shadow, compare: true{extra} }}] }}]\n")
            proc = bench.gateway(0, 0, routing)
            wrk(f"http://127.0.0.1:{proc.port}/index", 4, min(1, seconds))
            r = wrk(f"http://127.0.0.1:{proc.port}/index", 16, seconds)
            if name == "on":
                metrics = urllib_get(f"http://127.0.0.1:{proc.admin}/metrics")
                for outcome in ("written", "dropped", "failed"):
                    m = re.search(rf'gateway_capture_entries_total{{[^}}]*outcome="{outcome}"[^}}]*}} (\d+)', metrics)
                    r[outcome] = int(m.group(1)) if m else 0
                r["file_mb"] = sum(f.stat().st_size for f in bench.work.glob(f"capture-{round_}.har*")) / 1e6
            out[name].append(r)
            show(f"gateway, capture {name}", r)
            bench.stop(proc)
    return out


def urllib_get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def grpc(bench: Bench, seconds: float) -> dict:
    """Unary gRPC calls over h2c: routing only and a 100% mirror (methods: all), both systems, and direct."""
    loads = ", ".join(f"-c{c} -m{m}" for c, m in GRPC_LOADS)
    print(f"\n== grpc: h2load unary calls over h2c ({loads}), {seconds} s per row; backends: nghttpd answering a fixed reply", flush=True)
    out = {}
    request = bench.work / "grpc-request.bin"
    request.write_bytes(grpc_frame(GRPC_REQUEST))
    log = bench.work / "h2load.log"
    primary, shadow = bench.grpc_backend(), bench.grpc_backend()
    try:
        grpc_check(f"127.0.0.1:{primary.port}", request, "the backend")
        for c, m in GRPC_LOADS:
            out[f"direct c{c}m{m}"] = r = h2load(f"http://127.0.0.1:{primary.port}{GRPC_PATH}", c, m, seconds, request, log)
            show(f"direct, {grpc_load(c, m)}", r)
        for system, start in (("gateway", bench.gateway_grpc), ("nginx", bench.nginx_grpc)):
            for route in ("routing", "mirror"):
                proc = start(primary.port, shadow.port, route == "mirror")
                try:
                    checked = grpc_check(f"127.0.0.1:{proc.port}", request, f"{system} ({route})")
                    out[f"{system} {route} check"] = checked["code"]
                    h2load(f"http://127.0.0.1:{proc.port}{GRPC_PATH}", 4, 8, min(1, seconds), request, log)  # warm-up
                    for c, m in GRPC_LOADS:
                        out[f"{system} {route} c{c}m{m}"] = r = h2load(f"http://127.0.0.1:{proc.port}{GRPC_PATH}", c, m, seconds, request, log)
                        show(f"{system}, {route}, {grpc_load(c, m)}", r)
                    if system == "gateway" and route == "mirror":
                        time.sleep(min(1.5, seconds))
                        copies = admin_json(proc.admin, "/mirrors")["mirrors"][0]["copies"]
                        out["gateway mirror copies"] = copies
                        print(f"    copies: {json.dumps(copies)}")
                finally:
                    bench.stop(proc)
    finally:
        bench.stop(primary)
        bench.stop(shadow)
    return out


def websocket(bench: Bench, seconds: float) -> dict:
    """WebSocket through each system to a Python echo server: echo round trips, then handshakes; and direct."""
    print(f"\n== websocket: Python websockets client and echo server, {WS_CONNECTIONS} echo connections (1 KiB messages), "
          f"{WS_HANDSHAKE_TASKS} handshake loops, {seconds} s per row", flush=True)
    out = {}
    echo = bench.ws_echo()

    def measure(name: str, url: str) -> None:
        out[f"{name} echo"] = r = ws_load("ws-echo-load", url, WS_CONNECTIONS, seconds)
        print(f"  {name + ', echo':<44} {r['rate']:>10.0f} msg/s  p50 {fmt_ms(r['p50_ms'])} ms  p99 {fmt_ms(r['p99_ms'])} ms  "
              f"errors {r['errors']}", flush=True)
        out[f"{name} handshake"] = r = ws_load("ws-handshakes", url, WS_HANDSHAKE_TASKS, seconds)
        print(f"  {name + ', handshake + echo + close':<44} {r['rate']:>10.0f} /s     p50 {fmt_ms(r['p50_ms'])} ms  "
              f"p99 {fmt_ms(r['p99_ms'])} ms  errors {r['errors']}", flush=True)

    try:
        measure("direct", f"ws://127.0.0.1:{echo.port}/ws/")
        for system, start in (("gateway", bench.gateway_ws), ("nginx", bench.nginx_ws)):
            proc = start(echo.port)
            try:
                ws_load("ws-echo-load", f"ws://127.0.0.1:{proc.port}/ws/", 2, min(1, seconds))  # warm-up
                measure(system, f"ws://127.0.0.1:{proc.port}/ws/")
            finally:
                bench.stop(proc)
    finally:
        bench.stop(echo)
    return out


def tls(bench: Bench, seconds: float, primary: Proc) -> dict:
    """TLS 1.3 termination to the plain backend: keep-alive requests, and a new handshake per request."""
    print(f"\n== tls: wrk over TLS 1.3, {CONNECTIONS} keep-alive connections, then a new connection (handshake) per request; "
          f"{seconds} s per row", flush=True)
    out = {}
    for system, start in (("gateway", bench.gateway_tls), ("nginx", bench.nginx_tls)):
        proc = start(primary.port)
        try:
            url = f"https://localhost:{proc.port}/index"
            wrk(url, 8, min(1, seconds))  # warm-up
            out[f"{system} keep-alive"] = r = wrk(url, CONNECTIONS, seconds)
            show(f"{system}, keep-alive", r)
            out[f"{system} handshakes"] = r = wrk(url, CONNECTIONS, seconds, close=True)
            show(f"{system}, handshake per request", r)
        finally:
            bench.stop(proc)
    return out


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> dict:
    def version(args: list[str]) -> str:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model.group(1) if model else platform.processor(),
        "cpus": len(cpus()),
        "kernel": platform.release(),
        "load": os.getloadavg(),
        "commit": commit,
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "-v"]),
        "oha": version(["oha", "--version"]),
        "h2load": version(["h2load", "--version"]),
        "rustc": version(["rustc", "-V"]),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str) -> str:
    """The median, then every run's value in brackets when there are several."""
    text = fmt.format(med(values))
    return text + (" (" + ", ".join(fmt.format(v) for v in values) + ")" if len(values) > 1 else "")


def targets(runs: list[dict]) -> list[tuple[str, str, str, str]]:
    """(scenario, gateway, NGINX, ratio/verdict) rows of the issue's table."""
    rows = []
    tp = [r["throughput"] for r in runs if "throughput" in r]
    lat = [r["latency"] for r in runs if "latency" in r]
    sh = [r["shadows"] for r in runs if "shadows" in r]

    def ratio_row(name, key, target):
        g = [t[f"gateway {key}"]["rps"] for t in tp]
        n = [t[f"nginx {key}"]["rps"] for t in tp]
        ratios = [a / b for a, b in zip(g, n)]
        verdict = "met" if med(ratios) >= target else f"**missed by {(target - med(ratios)) / target:.0%}**"
        rows.append((name, spread(g, "{:,.0f} req/s"), spread(n, "{:,.0f} req/s"), f"{spread(ratios, '{:.2f}x')}; target >= {target}x: {verdict}"))

    if tp:
        ratio_row(f"routing only, {CONNECTIONS} connections", f"routing c{CONNECTIONS}", 1.0)
        ratio_row(f"100% mirror to a fast shadow, {CONNECTIONS} connections", f"mirror c{CONNECTIONS}", 2.0)
        ratio_row("100% mirror, 1 connection (per-request cost)", "mirror c1", 1.0)
        for c in (CONNECTIONS, 1):
            g = [t[f"gateway routing c{c}"].get("cpu_us_per_req") for t in tp]
            n = [t[f"nginx routing c{c}"].get("cpu_us_per_req") for t in tp]
            if None in g or None in n:
                continue
            ratios = [a / b for a, b in zip(g, n)]
            verdict = "met" if med(ratios) <= 1.0 else f"**missed by {med(ratios) - 1:.0%}**"
            rows.append((f"CPU per request (user + system), routing only, {c} connection{'s' if c > 1 else ''}", spread(g, "{:.1f} us"),
                         spread(n, "{:.1f} us"), f"{spread(ratios, '{:.2f}x')}; target <= NGINX's: {verdict}"))
    if sh:
        for c in SHADOW_CONNECTIONS:
            worst_g = min(s[f"gateway {m} c{c}"]["of_none"] for s in sh for m in SHADOW_MODES if m != "fast")
            worst_n = min(s[f"nginx {m} c{c}"]["of_none"] for s in sh for m in SHADOW_MODES if m != "fast")
            errors = sum(s[f"gateway {m} c{c}"]["errors"] for s in sh for m in SHADOW_MODES)
            verdict = "met" if worst_g >= 0.99 and errors == 0 else f"**missed: {worst_g:.1%} of the rate, {errors} primary errors**"
            rows.append((f"worst failing shadow, {c} connection{'s' if c > 1 else ''}: rate kept", f"{worst_g:.0%}", f"{worst_n:.1%}",
                         f"target >= 99%, zero primary errors: {verdict}"))
    if lat:
        for rate in sorted({int(k.split()[-1]) for k in lat[0] if k.startswith("direct")}):
            added = lambda s: [l[f"{s} mirror {rate}"]["p99_ms"] - l[f"direct {rate}"]["p99_ms"] for l in lat]
            g, n = added("gateway"), added("nginx")
            ok = med(g) <= med(n) and (rate != 1000 or med(g) <= 0.15)
            target = "<= NGINX and <= 0.15 ms" if rate == 1000 else "<= NGINX"
            rows.append((f"added p99 over direct at {rate:,} req/s, 100% mirror (oha, latency-corrected)", spread(g, "{:.3f} ms"),
                         spread(n, "{:.3f} ms"), f"target {target}: {'met' if ok else '**missed**'}"))
            gc = [l[f"gateway mirror {rate}"]["vcpu_per_1k"] for l in lat]
            nc = [l[f"nginx mirror {rate}"]["vcpu_per_1k"] for l in lat]
            rows.append((f"CPU per 1,000 req/s at {rate:,} req/s, 100% mirror", spread(gc, "{:.3f} vCPU"), spread(nc, "{:.3f} vCPU"),
                         f"target <= 0.1 vCPU: {'met' if med(gc) <= 0.1 else '**missed by ' + format(med(gc) / 0.1 - 1, '.0%') + '**'}"))
    if tp:
        g = [t["gateway rss"] for t in tp]
        n = [t["nginx rss"] for t in tp]
        rows.append((f"peak RSS over the throughput group ({CONNECTIONS} connections, mirror)", spread(g, "{:.1f} MB"),
                     spread(n, "{:.1f} MB") + " (master + worker)", f"target <= 20 MB: {'met' if max(g) <= 20 else '**missed**'}"))
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_cell(rows: list[dict]) -> str:
    values = [r.get("cpu_us_per_req") for r in rows]
    return "-" if None in values else spread(values, "{:.1f}")


def cpu_ratio(g: list[dict], n: list[dict]) -> str:
    pairs = [(a.get("cpu_us_per_req"), b.get("cpu_us_per_req")) for a, b in zip(g, n)]
    return "-" if any(a is None or not b for a, b in pairs) else spread([a / b for a, b in pairs], "{:.2f}x")


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(runs: list[dict], info: dict, charts: dict[str, str], args) -> str:
    out = [BEGIN, "", f"Run of {info['date']}, commit `{info['commit']}`, `python3 bench/run.py{' ' + ' '.join(args.argv) if args.argv else ''}`"
           f" ({len(runs)} run{'s' if len(runs) > 1 else ''}; a cell with several values gives the median, then each run's).", ""]
    out += ["### Machine", "",
            f"- {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}; load average at the start "
            f"{info['load'][0]:.2f} / {info['load'][1]:.2f} / {info['load'][2]:.2f}, at the end "
            f"{info['load_end'][0]:.2f} / {info['load_end'][1]:.2f} / {info['load_end'][2]:.2f} (1/5/15 min; the machine is shared).",
            f"- {info['nginx']}; {info['wrk']}; {info['oha']}; {info.get('h2load', '?')}; {info['rustc']}.",
            "- Pinning: " + (f"the system under test on CPU {SUT_PIN[-1]}, load generators and backends on CPUs {LOAD_PIN[-1]} "
                             "(`taskset`). The gateway's `workers` is at its default (the CPUs it may use: 1); NGINX has one worker."
                             if SUT_PIN else "none (fewer than two CPUs)."), ""]
    out += ["### Commands", "", "```"] + [f"{v}" for _, v in sorted(COMMANDS.items())] + ["```", ""]
    out += ["### The issue's table", "", table(["scenario", "gateway", "NGINX", "ratio / target"], [list(r) for r in targets(runs)]), ""]

    tp = [r["throughput"] for r in runs if "throughput" in r]
    if tp:
        rows = []
        for c in (CONNECTIONS, 1):
            d = [t[f"direct c{c}"] for t in tp]
            rows.append([f"direct (the backend), {c} conn", spread([x["rps"] for x in d], "{:,.0f}"), fmt_ms(d[0]["p50_ms"]), fmt_ms(d[0]["p99_ms"]),
                         d[0]["errors"], "", "", "", "", "", "", "", ""])
            for route in ("routing", "mirror"):
                g = [t[f"gateway {route} c{c}"] for t in tp]
                n = [t[f"nginx {route} c{c}"] for t in tp]
                rows.append([f"{'routing only' if route == 'routing' else '100% mirror'}, {c} conn",
                             spread([x["rps"] for x in g], "{:,.0f}"), fmt_ms(g[0]["p50_ms"]), fmt_ms(g[0]["p99_ms"]), g[0]["errors"],
                             spread([x["rps"] for x in n], "{:,.0f}"), fmt_ms(n[0]["p50_ms"]), fmt_ms(n[0]["p99_ms"]), n[0]["errors"],
                             spread([a["rps"] / b["rps"] for a, b in zip(g, n)], "{:.2f}x"),
                             cpu_cell(g), cpu_cell(n), cpu_ratio(g, n)])
        out += ["### Throughput (wrk, as fast as each system goes)", "",
                table(["scenario", "gateway req/s", "p50 ms", "p99 ms", "errors", "NGINX req/s", "p50 ms", "p99 ms", "errors", "gateway / NGINX",
                       "gateway CPU us/req", "NGINX CPU us/req", "CPU gateway / NGINX"], rows),
                "", "Latencies and errors are those of the first run.", ""]
    lat = [r["latency"] for r in runs if "latency" in r]
    if lat:
        rows = []
        for key in lat[0]:
            if key.startswith("direct"):
                continue
            system, route, rate = key.split()
            d, x = lat[0][f"direct {rate}"], lat[0][key]
            rows.append([f"{rate} req/s", system, "routing only" if route == "routing" else "100% mirror", f"{x['rps']:,.0f}",
                         fmt_ms(x["p50_ms"]), fmt_ms(x["p99_ms"]), fmt_ms(x["p999_ms"]),
                         f"{x['p50_ms'] - d['p50_ms']:+.3f} / {x['p99_ms'] - d['p99_ms']:+.3f} / {x['p999_ms'] - d['p999_ms']:+.3f}",
                         f"{x['vcpu']:.3f}", f"{x['vcpu_per_1k']:.3f}" if x["vcpu_per_1k"] else "-", x["errors"]])
        directs = "; ".join(f"{k.split()[1]} req/s: p50 {v['p50_ms']:.3f}, p99 {v['p99_ms']:.3f}, p99.9 {v['p999_ms']:.3f} ms"
                            for k, v in lat[0].items() if k.startswith("direct"))
        out += ["### Latency at a fixed rate (oha, latency-corrected), first run", "",
                f"Direct (oha at the backend): {directs}.", "",
                table(["rate", "system", "route", "achieved req/s", "p50 ms", "p99 ms", "p99.9 ms", "added over direct p50 / p99 / p99.9 ms",
                       "CPU (vCPU)", "vCPU per 1,000 req/s", "errors"], rows), ""]
    sh = [r["shadows"] for r in runs if "shadows" in r]
    if sh:
        s = sh[0]
        rows = []
        for c in SHADOW_CONNECTIONS:
            rows.append([f"{c}", "none (routing only)", f"{s[f'gateway none c{c}']['rps']:,.0f}", "100%", fmt_ms(s[f"gateway none c{c}"]["p99_ms"]),
                         s[f"gateway none c{c}"]["errors"], f"{s[f'nginx none c{c}']['rps']:,.0f}", "100%", fmt_ms(s[f"nginx none c{c}"]["p99_ms"]),
                         s[f"nginx none c{c}"]["errors"]])
            for m in SHADOW_MODES:
                g, n = s[f"gateway {m} c{c}"], s[f"nginx {m} c{c}"]
                rows.append([f"{c}", SHADOW_MODE_NAMES[m], f"{g['rps']:,.0f}", f"{g['of_none']:.1%}", fmt_ms(g["p99_ms"]), g["errors"],
                             f"{n['rps']:,.1f}", f"{n['of_none']:.1%}", fmt_ms(n["p99_ms"]), n["errors"]])
        copies = "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in s[f"gateway {m} copies"].items() if v)
                           for m in SHADOW_MODES if f"gateway {m} copies" in s)
        out += ["### Failing shadows (wrk; rate against the same system's routing-only route)", "",
                table(["conn", "shadow", "gateway req/s", "of no shadow", "p99 ms", "primary errors", "NGINX req/s", "of no shadow", "p99 ms",
                       "primary errors"], rows), "",
                f"The gateway's copy outcomes (admin `/mirrors`): {copies}.", ""]
    out += protocol_sections(runs)
    cm = [r["compare"] for r in runs if "compare" in r]
    if cm:
        c = cm[0]
        rows = [[f"comparison {k}", f"{c[k]['rps']:,.0f}", fmt_ms(c[k]["p50_ms"]), fmt_ms(c[k]["p99_ms"]), c[k]["errors"], f"{c[k]['rss_mb']:.1f}"]
                for k in ("off", "on")]
        out += ["### Comparison (gateway; 256 KiB JSON answers, the shadow differs on every request; wrk -c16)", "",
                table(["mode", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MB"], rows), "",
                f"Comparisons: {json.dumps(c.get('comparison', {}))}.", ""]
    cp = [r["capture"] for r in runs if "capture" in r]
    if cp:
        c = cp[0]
        rows = [[f"capture {k} ({n + 1})", f"{r['rps']:,.0f}", fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), r["errors"],
                 f"{r.get('written', '')}", f"{r.get('dropped', '')}"] for k in ("off", "on") for n, r in enumerate(c[k])]
        rps = med([r["rps"] for r in c["on"]]) / med([r["rps"] for r in c["off"]])
        p99 = med([r["p99_ms"] for r in c["on"]]) / med([r["p99_ms"] for r in c["off"]])
        out += ["### Capture (gateway; a compared 100% mirror, `capture:` at 100% sampling vs off, alternately; wrk -c16)", "",
                table(["mode", "req/s", "p50 ms", "p99 ms", "errors", "entries written", "dropped"], rows), "",
                f"Capture on, median of the rounds: {rps:.3f}x the throughput, {p99:.3f}x the p99 of capture off.", ""]
    if charts:
        out += ["### Charts", ""] + [f"![{name}]({path})" for name, path in charts.items()] + [""]
    out += [END]
    return "\n".join(out)


def protocol_sections(runs: list[dict]) -> list[str]:
    """The grpc and websocket groups' tables (first run), for report()."""
    out = []
    g = runs[0].get("grpc") if runs else None
    if g:
        rows = []
        for c, m in GRPC_LOADS:
            d = g[f"direct c{c}m{m}"]
            rows.append([f"direct (the backend), {grpc_load(c, m)}", f"{d['rps']:,.0f}", fmt_ms(d["p50_ms"]), fmt_ms(d["p99_ms"]), d["errors"],
                         "", "", "", "", ""])
        for route in ("routing", "mirror"):
            for c, m in GRPC_LOADS:
                x, n = g[f"gateway {route} c{c}m{m}"], g[f"nginx {route} c{c}m{m}"]
                rows.append([f"{'routing only' if route == 'routing' else '100% mirror'}, {grpc_load(c, m)}",
                             f"{x['rps']:,.0f}", fmt_ms(x["p50_ms"]), fmt_ms(x["p99_ms"]), x["errors"],
                             f"{n['rps']:,.0f}", fmt_ms(n["p50_ms"]), fmt_ms(n["p99_ms"]), n["errors"], f"{x['rps'] / n['rps']:.2f}x"])
        copies = ", ".join(f"{k} {v}" for k, v in g.get("gateway mirror copies", {}).items() if v) or "unavailable"
        out += ["### gRPC over h2c (h2load unary calls, as fast as each system goes)", "",
                table(["scenario", "gateway calls/s", "p50 ms", "p99 ms", "errors", "NGINX calls/s", "p50 ms", "p99 ms", "errors", "gateway / NGINX"],
                      rows), "",
                f"`{GRPC_PATH}` with a 12-byte request; the backends are nghttpd (h2c) answering a fixed gRPC-framed reply with the trailer "
                "`grpc-status: 0` (the direct rows: it bounds neither system). The gateway routes with a native routing file (`protocol: http2`; the mirror "
                f"`methods: all`, as gRPC calls are POSTs), NGINX with `grpc_pass` and `mirror` (deadlines {MIRROR_TIMEOUT_S} s in both). "
                "Before its rows each system answered a real `grpcio` call with status OK and the expected reply "
                "(errors: h2load's failed requests: non-2xx, reset or errored). Latencies from h2load's per-request log.", "",
                f"The gateway's copy outcomes over its mirrored rows (admin `/mirrors`): {copies}.", ""]
    w = runs[0].get("websocket") if runs else None
    if w:
        def cells(key: str, fmt) -> list[str]:
            return [fmt(w[f"{s} {key}"]) for s in ("direct", "gateway", "nginx")]

        rate = lambda r: f"{r['rate']:,.0f}"
        rows = [["echo round trips, messages/s", *cells("echo", rate)],
                ["echo round trip p50 / p99 ms", *cells("echo", lambda r: f"{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])}")],
                ["handshake + one echo + close, per s", *cells("handshake", rate)],
                ["handshake + one echo + close p50 / p99 ms", *cells("handshake", lambda r: f"{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])}")],
                ["errors (echo / handshake)", *[f"{w[f'{s} echo']['errors']} / {w[f'{s} handshake']['errors']}" for s in ("direct", "gateway", "nginx")]]]
        for row, key in ((rows[0], "echo"), (rows[2], "handshake")):
            row.append(f"{w[f'gateway {key}']['rate'] / w[f'nginx {key}']['rate']:.2f}x")
        for row in rows[1:2] + rows[3:]:
            row.append("")
        out += ["### WebSocket (Python `websockets` client and echo server)", "",
                table(["measure", "direct (the echo server)", "gateway", "NGINX", "gateway / NGINX"], rows), "",
                f"{WS_CONNECTIONS} connections each send 1 KiB messages back-to-back and wait for the echo; {WS_HANDSHAKE_TASKS} loops "
                "connect, echo once and close. The Python client and echo server (on the load CPU) bound these rows (the direct "
                "column is what they do with no proxy between them): read the ratio between the systems, not the absolute rates. The gateway routes `/ws/` "
                "with a native routing file (upgrades are spliced, never mirrored); NGINX with `proxy_http_version 1.1` and the "
                "`Upgrade`/`Connection` map.", ""]
    t = runs[0].get("tls") if runs else None
    if t:
        rows = []
        for key, what in (("keep-alive", f"keep-alive, {CONNECTIONS} connections, requests/s"), ("handshakes", "a new TLS connection per request, /s")):
            x, n = t[f"gateway {key}"], t[f"nginx {key}"]
            rows.append([what, f"{x['rps']:,.0f}", fmt_ms(x["p50_ms"]), fmt_ms(x["p99_ms"]), x["errors"],
                         f"{n['rps']:,.0f}", fmt_ms(n["p50_ms"]), fmt_ms(n["p99_ms"]), n["errors"], f"{x['rps'] / n['rps']:.2f}x"])
        out += ["### TLS termination (wrk over TLS 1.3 to the plain backend)", "",
                table(["scenario", "gateway /s", "p50 ms", "p99 ms", "errors", "NGINX /s", "p50 ms", "p99 ms", "errors", "gateway / NGINX"], rows), "",
                "Both terminate TLS 1.3 with the same self-signed P-256 certificate and route to the same backend (NGINX: `ssl_protocols "
                "TLSv1.3`, upstream keep-alive; the gateway: `tls.certificates` in a settings file, rustls with ring). The second row sends "
                "`Connection: close` on every request, so each is a new TCP connection and a full handshake.", ""]
    return out


def draw(runs: list[dict], into: Path, link_prefix: str) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    into.mkdir(parents=True, exist_ok=True)
    charts = {}
    lat = runs[0].get("latency")
    if lat:
        rates = sorted({int(k.split()[-1]) for k in lat if k.startswith("direct")})
        fig, axes = plt.subplots(1, len(rates), figsize=(6 * len(rates), 4), squeeze=False)
        for ax, rate in zip(axes[0], rates):
            series = [("direct", lat[f"direct {rate}"])] + [(f"{s} {r}", lat[f"{s} {r} {rate}"]) for s in ("gateway", "nginx")
                                                             for r in ("routing", "mirror")]
            labels = ["p50", "p99", "p99.9"]
            width = 0.8 / len(series)
            for i, (name, x) in enumerate(series):
                values = [x["p50_ms"], x["p99_ms"], x["p999_ms"]]
                ax.bar([j + i * width for j in range(3)], values, width, label=name)
            ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(3)], labels)
            ax.set_ylabel("latency, ms (latency-corrected)")
            ax.set_title(f"oha at {rate:,} req/s, {CONNECTIONS} connections")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(into / "latency.png", dpi=110)
        plt.close(fig)
        charts["latency percentiles per system"] = f"{link_prefix}latency.png"
    sh = runs[0].get("shadows")
    if sh:
        fig, axes = plt.subplots(1, len(SHADOW_CONNECTIONS), figsize=(12, 4), squeeze=False)
        for ax, c in zip(axes[0], SHADOW_CONNECTIONS):
            modes = ["none", *SHADOW_MODES]
            for i, system in enumerate(("gateway", "nginx")):
                values = [sh[f"{system} {m} c{c}"]["rps"] for m in modes]
                ax.bar([j + i * 0.4 for j in range(len(modes))], values, 0.4, label=system)
            ax.set_xticks([j + 0.2 for j in range(len(modes))], ["no shadow" if m == "none" else SHADOW_MODE_NAMES[m] for m in modes],
                          rotation=20, fontsize=8)
            ax.set_ylabel("primary req/s")
            ax.set_title(f"100% mirror, shadow behaviour, {c} connection{'s' if c > 1 else ''}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(into / "shadows.png", dpi=110)
        plt.close(fig)
        charts["throughput per shadow mode"] = f"{link_prefix}shadows.png"
    tp = runs[0].get("throughput")
    if tp:
        fig, ax = plt.subplots(figsize=(8, 4))
        rows = [(f"routing, {c} conn", f"routing c{c}") for c in (CONNECTIONS, 1)] + [(f"mirror, {c} conn", f"mirror c{c}") for c in (CONNECTIONS, 1)]
        for i, system in enumerate(("gateway", "nginx")):
            ax.bar([j + i * 0.4 for j in range(len(rows))], [tp[f"{system} {k}"]["rps"] for _, k in rows], 0.4, label=system)
        ax.set_xticks([j + 0.2 for j in range(len(rows))], [n for n, _ in rows])
        ax.set_ylabel("req/s")
        ax.set_title("throughput (wrk)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(into / "throughput.png", dpi=110)
        plt.close(fig)
        charts["throughput per system"] = f"{link_prefix}throughput.png"
    g, w = runs[0].get("grpc"), runs[0].get("websocket")
    if g or w:
        panels = ([("grpc", "gRPC unary calls/s (h2load)", [(f"{'routing' if r == 'routing' else 'mirror'}, {c}x{m}", f"{r} c{c}m{m}")
                                                          for c, m in GRPC_LOADS for r in ("routing", "mirror")])] if g else []) + \
                 ([("websocket", "WebSocket echo messages/s", [("echo, 1 KiB", "echo")]),
                   ("websocket", "WebSocket handshake + echo + close /s", [("handshakes", "handshake")])] if w else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False,
                                 gridspec_kw={"width_ratios": [2 if group == "grpc" else 1 for group, _, _ in panels]})
        for ax, (group, title, rows) in zip(axes[0], panels):
            data = runs[0][group]
            for i, system in enumerate(("gateway", "nginx")):
                ax.bar([j + i * 0.4 for j in range(len(rows))], [data[f"{system} {k}"]["rps" if group == "grpc" else "rate"] for _, k in rows],
                       0.4, label=system)
            if group == "websocket":
                ax.axhline(data[f"direct {rows[0][1]}"]["rate"], color="grey", linestyle="--", label="direct (no proxy)")
            ax.set_xticks([j + 0.2 for j in range(len(rows))], [n for n, _ in rows], fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc="lower right" if group == "websocket" else "best")
        fig.tight_layout()
        fig.savefig(into / "protocols.png", dpi=110)
        plt.close(fig)
        charts["gRPC and WebSocket per system"] = f"{link_prefix}protocols.png"
    return charts


def write_report(path: Path, section: str) -> None:
    head = ("# Benchmarks\n\nRegenerated by `python3 bench/run.py` between the markers below; what is outside them "
            "(the profile, the analysis) is written by hand.\n\n")
    text = path.read_text() if path.exists() else head + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + "\n\n" + BEGIN + "\n" + END + "\n"
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    path.write_text(before + section + after)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="about a second per row; results in a temporary directory")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--repeat", type=int, help="runs of the throughput and latency groups (default 2, smoke 1)")
    ap.add_argument("--only", nargs="+", choices=GROUPS)
    ap.add_argument("--seconds", type=float, help="seconds per row (default 10; shadows half of it)")
    ap.add_argument("--gateway-bin", type=Path, help="the gateway binary to measure (default: the release build)")
    ap.add_argument("--before", type=Path, help="another gateway binary: only compare it with this build, alternately (commit figures)")
    ap.add_argument("--out", type=Path, help="where BENCHMARKS.md goes, a file or a directory (default: the repository's; smoke: a temporary directory)")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    seconds = args.seconds or (1 if args.smoke else 10)
    repeat = args.repeat or (1 if args.smoke else 2)
    rates = [200, 1000] if args.smoke else [1000, 10000]
    groups = args.only or GROUPS
    needed = ("wrk", "nginx", *(["oha"] if "latency" in groups else []), *(["h2load", "nghttpd"] if "grpc" in groups else []))
    missing = [t for t in needed if not shutil.which(t)]
    missing += [m for m, group in (("grpc", "grpc"), ("websockets", "websocket")) if group in groups and not importlib.util.find_spec(m)]
    if missing:
        print(f"bench: missing {', '.join(missing)} (apt-get install wrk nginx-light nghttp2-client nghttp2-server; cargo install oha --locked; "
              "pip install grpcio websockets, see .ci/requirements.txt)", file=sys.stderr)
        return 2
    global TARGET, GATEWAY_BIN
    GATEWAY_BIN = args.gateway_bin
    TARGET = TARGET_DIR / ("debug" if args.smoke else "release")
    if not args.no_build:
        profile = [] if args.smoke else ["--release"]
        subprocess.run(["cargo", "build", *profile, "-q", "-p", "gateway", "-p", "e2e-tests", "--bin", "gateway", "--bin", "bench-upstream"],
                       cwd=REPO, check=True, timeout=3600)
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    bench = Bench(work, args.smoke)
    runs: list[dict] = []
    print(f"bench: {info['cpus']} CPUs, load {info['load'][0]:.2f}; pinning: system {SUT_PIN[-1:] or 'none'}, load {LOAD_PIN[-1:] or 'none'}; "
          f"work dir {work}", flush=True)
    try:
        primary, shadow = bench.backend(), bench.backend()
        if args.before:
            ab(bench, seconds, args.repeat or 3, args.before, primary, shadow)
            return 0
        for i in range(repeat):
            run: dict = {}
            print(f"\n#### run {i + 1} of {repeat}", flush=True)
            if "throughput" in groups:
                run["throughput"] = throughput(bench, seconds, primary, shadow)
            if "latency" in groups:
                run["latency"] = latency(bench, seconds, rates, primary, shadow)
            if i == 0 and "shadows" in groups:
                run["shadows"] = shadows(bench, max(1, seconds / 2), primary)
            if i == 0 and "compare" in groups:
                run["compare"] = compare(bench, seconds)
            if i == 0 and "capture" in groups:
                run["capture"] = capture(bench, seconds, primary, shadow)
            if i == 0 and "grpc" in groups:
                run["grpc"] = grpc(bench, seconds)
            if i == 0 and "websocket" in groups:
                run["websocket"] = websocket(bench, seconds)
            if i == 0 and "tls" in groups:
                run["tls"] = tls(bench, seconds, primary)
            runs.append(run)
    finally:
        bench.stop_all()
    info["load_end"] = os.getloadavg()
    broken = [f"{group} {key}" for run in runs for group, rows in run.items() for key, r in rows.items()
              if isinstance(r, dict) and "requests" in r and r["requests"] == 0 and not key.startswith("nginx")]
    if args.smoke or args.out:
        out = args.out or work / "BENCHMARKS.md"
        if out.is_dir() or not out.suffix:  # --out DIR: DIR/BENCHMARKS.md
            out.mkdir(parents=True, exist_ok=True)
            out = out / "BENCHMARKS.md"
        charts_dir, prefix = out.parent / "bench", "bench/"
    elif args.only:
        out = work / "BENCHMARKS.md"
        charts_dir, prefix = work / "bench", "bench/"
    else:
        out = REPO / "BENCHMARKS.md"
        charts_dir, prefix = REPO / "docs" / "bench", "docs/bench/"
    charts = draw(runs, charts_dir, prefix)
    write_report(out, report(runs, info, charts, args))
    (charts_dir / "results.json").write_text(json.dumps({"machine": info, "runs": runs}, indent=1))
    print("\n" + "\n".join(f"{a}: gateway {b}, NGINX {c}; {d}" for a, b, c, d in targets(runs)))
    print(f"\nbench: wrote {out} and charts in {charts_dir}")
    if not args.smoke and not args.out and not args.only:
        shutil.rmtree(work, ignore_errors=True)
    if broken:
        print(f"bench: rows without a single answer: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
