#!/usr/bin/env python3
"""The issue 10 cases against a proxy: the gateway (any build) or NGINX, same upstreams, same
clients. Prints one line per case; the table in the issue's closing note is three runs of this.

    python3 tests/nginx/measure.py gateway PATH/TO/gateway [--before]   # --before: a build without `protocol:`
    python3 tests/nginx/measure.py nginx                                 # Debian's nginx (1.22)

Needs python3 with `websockets` and `grpcio` (.ci/requirements.txt) and curl. Everything listens
on 127.0.0.1 ports chosen by the system. The long case (an upstream that never answers) waits up
to 75 s.
"""

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers")
SEEN = []  # (upstream, method, path, note)
LOCK = threading.Lock()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tag = "up"

    def log_message(self, *args):
        pass

    def record(self, note=""):
        with LOCK:
            SEEN.append((self.tag, self.command, self.path, note))

    def reply(self, body, status=200):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunks(self, n, interval):
        self.send_response(200)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for i in range(n):
                line = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(interval)
            self.wfile.write(b"0\r\n\r\n")
            self.record("stream completed")
        except OSError:
            self.record("stream cut by the proxy")

    def do_GET(self):
        if self.path.startswith("/trickle/"):
            return self.chunks(40, 0.1)
        if self.path.startswith("/slow-stream"):
            return self.chunks(8, 0.2)
        if self.path.startswith("/hang"):
            self.record()
            time.sleep(120)
            return
        if self.path.startswith("/cookies"):
            self.record()
            return self.reply(json.dumps(self.headers.get_all("cookie") or []))
        self.record()
        self.reply(f"{self.tag} {self.path}")

    def do_OPTIONS(self):
        self.record()
        self.reply("options")

    def do_TRACE(self):
        self.record()
        self.reply("trace reached the upstream")

    def do_POST(self):
        length = int(self.headers.get("content-length", "0") or 0)
        chunked = "chunked" in (self.headers.get("transfer-encoding") or "")
        got = self.rfile.read(length) if length else (self.rfile.read1(65536) if chunked else b"")
        self.record(f"body {len(got)} of {length if length else 'chunked'} bytes; handler ran")
        self.reply(f"received {len(got)}")


def serve(tag):
    handler = type(f"Upstream_{tag}", (Upstream,), {"tag": tag})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Peer:
    def __init__(self, script, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(PEERS, script), "serve", *args], stdout=subprocess.PIPE, text=True)
        self.events = []
        first = json.loads(self.proc.stdout.readline())
        self.port = first["listening"]
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def stop(self):
        self.proc.kill()


def peer_call(script, *args):
    out = subprocess.run([sys.executable, os.path.join(PEERS, script), *args], capture_output=True, text=True, timeout=60).stdout
    return json.loads(out.strip().splitlines()[-1])


def raw(port, data, quiet=3.0):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)
        s.settimeout(quiet)
        seen = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                seen += chunk
        except socket.timeout:
            pass
    return seen.decode(errors="replace")


def status_line(text):
    return text.split("\r\n", 1)[0] or "(connection closed, no answer)"


def curl(*args):
    started = time.monotonic()
    r = subprocess.run(["curl", "-s", "--noproxy", "*", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, time.monotonic() - started


def main():
    target = sys.argv[1]
    before = "--before" in sys.argv
    ports = {"WS": None, "API": serve("api"), "HTTP_UPSTREAM": serve("up")}
    ws = Peer("ws_peer.py")
    grpc_primary, grpc_shadow = Peer("grpc_peer.py", "primary"), Peer("grpc_peer.py", "shadow")
    ports.update(WS=ws.port, GRPC_PRIMARY=grpc_primary.port, GRPC_SHADOW=grpc_shadow.port)
    scratch = tempfile.mkdtemp(prefix="measure-")
    admin = None
    if target == "nginx":
        ports.update(HTTP1=free_port(), HTTP2=free_port(), DIR=scratch)
        for name in ("nginx.conf", "locations.conf"):
            text = open(os.path.join(HERE, name + ".template")).read()
            for key, value in ports.items():
                text = text.replace("{{" + key + "}}", str(value))
            open(os.path.join(scratch, name), "w").write(text)
        proxy = subprocess.Popen(["nginx", "-p", scratch, "-c", os.path.join(scratch, "nginx.conf")])
        h1, h2 = ports["HTTP1"], ports["HTTP2"]
    else:
        binary = sys.argv[2]
        listen, admin = free_port(), free_port()
        protocol = "" if before else "protocol: http2, "
        config = f"""
services:
  ws: [127.0.0.1:{ws.port}]
  api: [127.0.0.1:{ports['API']}]
  up: [127.0.0.1:{ports['HTTP_UPSTREAM']}]
  greeter: {{ {protocol}v1: [127.0.0.1:{grpc_primary.port}], v2: [127.0.0.1:{grpc_shadow.port}] }}
routes:
  - {{ name: ws, match: {{ prefix: /ws/ }}, rewrite: /, to: ws }}
  - {{ name: grpc, match: {{ prefix: /test.Echo/ }}, to: greeter/v1, mirror: {{ to: greeter/v2, methods: all }} }}
  - {{ name: api, match: {{ prefix: /api/ }}, rewrite: /, to: api }}
  - {{ name: trickle, match: {{ prefix: /trickle/ }}, to: up, timeout: 1s }}
  - {{ name: default, to: up }}
"""
        path = os.path.join(scratch, "gateway.yaml")
        open(path, "w").write(config)
        env = dict(os.environ, OTEL_SDK_DISABLED="true", RUST_LOG="warn")
        proxy = subprocess.Popen(
            [binary, "--config", path, "--listen", f"127.0.0.1:{listen}", "--admin-listen", f"127.0.0.1:{admin}"], env=env
        )
        h1 = h2 = listen
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", h1)).close()
            break
        except OSError:
            time.sleep(0.1)

    def seen_since(mark):
        with LOCK:
            return SEEN[mark:]

    results = []

    def case(name, value):
        results.append((name, value))
        print(f"{name}: {value}", flush=True)

    try:
        r = peer_call("ws_peer.py", "call", f"ws://127.0.0.1:{h1}/ws/chat", "hello", "world")
        case("WebSocket echo", "echoed" if r.get("echo") == ["hello", "world"] else f"failed: {r}")

        u = peer_call("grpc_peer.py", "call", f"127.0.0.1:{h2}", "Unary", "hi")
        case("gRPC unary", f"{u['code']}, message {u['messages']}, trailer x-served-by={u['trailers'].get('x-served-by')}")
        s = peer_call("grpc_peer.py", "call", f"127.0.0.1:{h2}", "Stream", "s")
        case("gRPC server streaming", f"{s['code']}, {len(s['messages'])} messages, trailers {s['trailers']}")
        f = peer_call("grpc_peer.py", "call", f"127.0.0.1:{h2}", "Fail", "f")
        case("gRPC error status", f"{f['code']} {f['details']!r}")
        time.sleep(2)
        case("gRPC calls the shadow got", f"{len(grpc_shadow.events)} of 3 ({[e['method'] for e in grpc_shadow.events]})")

        code, out, _ = curl("--http2-prior-knowledge", "-H", "cookie: a=1", "-H", "cookie: b=2", f"http://127.0.0.1:{h2}/cookies")
        case("HTTP/2 cookies a=1, b=2 at an HTTP/1.1 upstream", out or f"curl exit {code}")

        code, out, took = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-m", "20", f"http://127.0.0.1:{h1}/trickle/x")
        case("route timeout 1s, body trickles for 4s", f"status {out.split()[0]}, {out.split()[1]} of 350 body bytes, curl exit {code}, {took:.1f}s")

        code, out, took = curl("-o", "/dev/null", "-w", "%{http_code}", "-m", "75", f"http://127.0.0.1:{h1}/hang")
        case("upstream never answers, no route timeout", f"status {out}, curl exit {code} after {took:.1f}s")

        case("two Host headers", status_line(raw(h1, b"GET /two HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")))
        case("HTTP/1.1 without Host", status_line(raw(h1, b"GET /none HTTP/1.1\r\nConnection: close\r\n\r\n")))
        mark = len(SEEN)
        bad_chunk = b"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"
        case("malformed chunk", f"{status_line(raw(h1, bad_chunk))}; upstream: {seen_since(mark) or 'nothing'}")
        case("bad Content-Length", status_line(raw(h1, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n")))
        mark = len(SEEN)
        trace = status_line(raw(h1, b"TRACE /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        case("TRACE", f"{trace}; upstream saw it: {bool(seen_since(mark))}")

        mark = len(SEEN)
        with socket.create_connection(("127.0.0.1", h1)) as s:
            s.sendall(b"POST /cut HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"y" * 100)
            time.sleep(1)
        time.sleep(1)
        case("upload cut at 100 of 1000 bytes", f"upstream: {seen_since(mark) or 'never got the request'}")

        for path in ("/api/../secret", "/api/%2e%2e/secret"):
            mark = len(SEEN)
            answer = raw(h1, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
            case(f"GET {path}", f"{status_line(answer)}; reached {[(t, p) for t, _, p, _ in seen_since(mark)] or 'no upstream'}")

        curl("-o", "/dev/null", f"http://127.0.0.1:{h1}/slow-stream")
        curl("-o", "/dev/null", "-m", "0.5", f"http://127.0.0.1:{h1}/hang")
        time.sleep(1)
        if not admin:
            log = open(os.path.join(scratch, "access.log")).read().splitlines()
            case("access log of a 1.6 s streamed answer and a request abandoned after 0.5 s", "; ".join(log[-2:]))
        else:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
            lines = [line for line in metrics.splitlines() if line.startswith(("gateway_request_duration_seconds_sum", "gateway_request_duration_seconds_count", "gateway_requests_total")) and 'route="default"' in line]
            case("metrics of the default route (a 1.6 s streamed answer, one request abandoned after 0.5 s)", "; ".join(lines))
    finally:
        proxy.terminate()
        proxy.wait()
        for p in (ws, grpc_primary, grpc_shadow):
            p.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
