#!/usr/bin/env python3
"""Benchmarks of the gateway, side by side with NGINX's `mirror` on the same backends, in one run.

Machines here are shared and noisy: read the ratios between rows measured in the same run, not
the absolute numbers. Everything runs on 127.0.0.1; every load is bounded in time.

  python3 bench/run.py              # all scenarios (about 3 minutes)
  python3 bench/run.py --quick      # shorter runs

Needs: wrk and nginx (Debian: apt-get install wrk nginx-light), release builds of `gateway` and
`bench-upstream` (the script runs cargo build --release for them).

Scenarios:
  baseline      no mirror: gateway vs NGINX proxying to a fast upstream
  mirror-100    every request mirrored to a fast shadow: gateway vs NGINX (target: gateway >= 1.2x)
  hung-mirror   sequential requests on ONE keep-alive connection, the mirror never answering:
                gateway and NGINX, each against its own no-mirror rate (NGINX's known failure)
  compare       256 KiB JSON answers that mismatch on every request: comparison on vs off
                (primary latency must not move; peak RSS must stay bounded)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proc:
    def __init__(self, args: list[str], port: int | None = None, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        if port:
            wait_port(port)

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.p.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def wrk(url: str, connections: int, threads: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", url],
        capture_output=True, text=True, check=True,
    ).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(x) for x in m.groups()) if (m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)) else 0
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    return {"rps": rps, "requests": total, "failed": non2xx + errors, "p50_ms": p50, "p99_ms": p99}


NGINX_CONF = """
worker_processes 2;
pid {dir}/nginx-{port}.pid;
error_log {dir}/nginx-{port}.err warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream primary {{ server 127.0.0.1:{primary}; keepalive 64; }}
    upstream shadow {{ server 127.0.0.1:{shadow}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            {mirror}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://primary;
        }}
        location = /mirror {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 1s;
            proxy_connect_timeout 1s;
            proxy_pass http://shadow$request_uri;
        }}
    }}
}}
"""


def nginx(work: Path, primary: int, shadow: int | None) -> tuple[Proc, int]:
    port = free_port()
    conf = work / f"nginx-{port}.conf"
    mirror = "mirror /mirror; mirror_request_body on;" if shadow else ""
    conf.write_text(NGINX_CONF.format(dir=work, port=port, primary=primary, shadow=shadow or primary, mirror=mirror))
    return Proc(["nginx", "-c", str(conf), "-p", str(work)], port), port


def gateway(work: Path, primary: int, shadow: int | None, mirror_extra: str = "") -> tuple[Proc, int]:
    port, admin = free_port(), free_port()
    config = work / f"gateway-{port}.yaml"
    services = f"services: {{ app: {{ v1: [127.0.0.1:{primary}], v2: [127.0.0.1:{shadow or primary}] }} }}\n"
    mirror = f", mirrors: [{{ to: app/v2, name: shadow, timeout: 1s{mirror_extra} }}]" if shadow else ""
    config.write_text(services + f"routes: [{{ name: app, to: app/v1{mirror} }}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"RUST_LOG": "error"}
    args = [str(TARGET / "gateway"), "--config", str(config), "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    proc = Proc(args, port, env=env)
    proc.admin = admin
    return proc, port


def admin_json(admin: int, path: str) -> dict:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5) as r:
        return json.loads(r.read())


def row(name: str, result: dict, rss: float | None = None) -> None:
    rss_text = f"{rss:6.1f} MB" if rss is not None else "      -  "
    print(f"  {name:<34} {result['rps']:>10.0f} req/s  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  failed {result['failed']:>5}  peak RSS {rss_text}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", choices=["mirror", "hung", "compare"], help="run one scenario group")
    args = ap.parse_args()
    seconds = 4 if args.quick else 10
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (apt-get install wrk nginx-light)", file=sys.stderr)
            return 2
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gateway", "-p", "e2e-tests", "--bin", "gateway", "--bin", "bench-upstream"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    up = lambda mode, *extra: (lambda port: (Proc([str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{port}", "--mode", mode, *extra], port), port))(free_port())
    (fast_p, fast), (shadow_p, shadow), (hung_p, hung) = up("fast"), up("fast"), up("hang")
    (large_a_p, large_a), (large_b_p, large_b) = up("large", "--variant", "a"), up("large", "--variant", "b")
    results = {}
    try:
        if args.only in (None, "mirror"):
            mirror_scenarios(work, seconds, fast, shadow, results)
        if args.only in (None, "hung"):
            hung_scenarios(work, seconds, fast, hung, results)
        if args.only in (None, "compare"):
            compare_scenarios(work, seconds, large_a, large_b, results)
    finally:
        for p in (fast_p, shadow_p, hung_p, large_a_p, large_b_p):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def mirror_scenarios(work, seconds, fast, shadow, results):
    print(f"\n== baseline and mirror-100: wrk -t2 -c64 -d{seconds}s")
    for name, start in [
        ("gateway, no mirror", lambda: gateway(work, fast, None)),
        ("nginx, no mirror", lambda: nginx(work, fast, None)),
        ("gateway, 100% mirror", lambda: gateway(work, fast, shadow)),
        ("nginx, 100% mirror", lambda: nginx(work, fast, shadow)),
    ]:
        proc, port = start()
        wrk(f"http://127.0.0.1:{port}/index", 16, 2, 1)  # warm-up
        results[name] = r = wrk(f"http://127.0.0.1:{port}/index", 64, 2, seconds)
        rss = proc.peak_rss_mb() if name.startswith("gateway") else None
        row(name, r, rss)
        results[name]["rss_mb"] = rss
        proc.stop()
    print(f"  -> gateway / nginx with a 100% mirror: {results['gateway, 100% mirror']['rps'] / results['nginx, 100% mirror']['rps']:.2f}x")


def hung_scenarios(work, seconds, fast, hung, results):
    print(f"\n== hung-mirror: one keep-alive connection, sequential requests, wrk -t1 -c1 -d{seconds}s; mirror timeout 1 s")
    for name, start in [
        ("gateway, no mirror", lambda: gateway(work, fast, None)),
        ("gateway, hung mirror", lambda: gateway(work, fast, hung)),
        ("nginx, no mirror", lambda: nginx(work, fast, None)),
        ("nginx, hung mirror", lambda: nginx(work, fast, hung)),
    ]:
        proc, port = start()
        r = wrk(f"http://127.0.0.1:{port}/index", 1, 1, seconds)
        results["seq " + name] = r
        row(name, r, proc.peak_rss_mb() if name.startswith("gateway") else None)
        if name == "gateway, hung mirror":
            time.sleep(1.5)
            copies = admin_json(proc.admin, "/mirrors")["mirrors"][0]["copies"]
            print(f"    mirror copies: sent {copies['sent']}, timeout {copies['timeout']}, dropped at the in-flight cap {copies['dropped_max_in_flight']}")
        proc.stop()
    g = results["seq gateway, hung mirror"]["rps"] / results["seq gateway, no mirror"]["rps"]
    n = results["seq nginx, hung mirror"]["rps"] / results["seq nginx, no mirror"]["rps"]
    print(f"  -> hung / no-mirror rate: gateway {g:.2f}, nginx {n:.4f}")


def compare_scenarios(work, seconds, large_a, large_b, results):
    print(f"\n== compare: 256 KiB JSON answers, shadow differs on every request; wrk -t2 -c16 -d{seconds}s")
    for name, extra in [("gateway, comparison off", ""), ("gateway, comparison on", ", compare: { max_body: 1MiB }")]:
        proc, port = gateway(work, large_a, large_b, extra)
        wrk(f"http://127.0.0.1:{port}/items", 4, 1, 1)
        r = wrk(f"http://127.0.0.1:{port}/items", 16, 2, seconds)
        results[name] = r
        rss = proc.peak_rss_mb()
        row(name, r, rss)
        if "on" in name:
            c = admin_json(proc.admin, "/mirrors")["mirrors"][0]
            print(f"    comparisons: mismatched {c['comparison']['mismatched']}, skipped {c['comparison']['skipped']}, kept mismatches {len(c['recent_mismatches'])}")
        proc.stop()
    on, off = results["gateway, comparison on"], results["gateway, comparison off"]
    print(f"  -> comparison on/off: p50 {on['p50_ms'] / off['p50_ms']:.2f}x, p99 {on['p99_ms'] / off['p99_ms']:.2f}x, throughput {on['rps'] / off['rps']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
