#!/usr/bin/env python3
"""Soak test of the gateway: a fixed request rate for a bounded time (default 10 minutes) through a
release build, with a mirror that never answers and a mirror that compares, on 127.0.0.1 only.

  python3 scripts/soak.py                    # 10 minutes at 200 requests/s
  python3 scripts/soak.py --minutes 1        # shorter
  python3 scripts/soak.py --rate 100 --no-build

Every --sample seconds it records the gateway's RSS, open descriptors and threads (from /proc; the
gateway exports no task count), the primary errors so far, and the mirror outcomes from the admin
listener's /mirrors. At the end it draws docs/soak.png (matplotlib), writes docs/soak.json, and
prints the figures RELIABILITY.md quotes. Exit status 1 when any primary request failed.

Needs: python3 with matplotlib (pip install matplotlib), cargo (release builds of `gateway` and
`bench-upstream` are built first unless --no-build).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


class Load:
    """Open-loop load: `workers` threads, each on its own keep-alive connection, each sending at
    rate/workers per second on a fixed schedule (a late request is sent at once, never skipped)."""

    def __init__(self, port: int, rate: float, workers: int = 8) -> None:
        self.port, self.rate, self.workers = port, rate, workers
        self.sent = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(workers)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def run(self, worker: int) -> None:
        interval = self.workers / self.rate
        next_at = time.monotonic() + interval * worker / self.workers
        connection = None
        i = 0
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
            i += 1
            error = None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", f"/soak/{worker}/{i}", headers={"x-request-id": f"soak-{worker}-{i}"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or body != b"index":
                    error = f"status {response.status}"
            except Exception as e:  # noqa: BLE001 - every failure counts, by kind
                error = type(e).__name__
                connection = None
            with self.lock:
                self.sent += 1
                if error:
                    self.errors += 1
                    self.error_kinds[error] = self.error_kinds.get(error, 0) + 1


def mirrors(admin_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/mirrors", timeout=10) as response:
        report = json.load(response)
    return {m["mirror"]: {"copies": m["copies"], "comparison": m["comparison"]} for m in report["mirrors"]}


def chart(samples: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    axes[0].plot(minutes, [s["rss_kib"] / 1024 for s in samples], color="tab:blue")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(minutes, [s["fds"] for s in samples], color="tab:orange", label="descriptors")
    axes[1].plot(minutes, [s["threads"] for s in samples], color="tab:green", label="threads")
    axes[1].set_ylabel("count")
    axes[1].set_ylim(bottom=0)
    axes[1].legend(loc="upper left")
    axes[2].plot(minutes, [s["sent"] for s in samples], color="tab:gray", label="requests sent")
    axes[2].plot(minutes, [s["errors"] for s in samples], color="tab:red", label="primary errors")
    axes[2].set_ylabel("requests (cumulative)")
    axes[2].legend(loc="upper left")
    for name, style in (("hung", "-"), ("compare", "--")):
        if samples and name in samples[-1]["mirrors"]:
            for outcome, color in (("ok", "tab:green"), ("timeout", "tab:purple"), ("error", "tab:red"), ("dropped", "tab:brown")):
                axes[3].plot(minutes, [s["mirrors"].get(name, {}).get("copies", {}).get(outcome, 0) for s in samples], style, color=color, label=f"{name} {outcome}")
    axes[3].set_ylabel("mirror copies (cumulative)")
    axes[3].set_xlabel("minutes")
    axes[3].legend(loc="upper left", fontsize="small", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--chart", type=Path, default=REPO / "docs" / "soak.png")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "soak.json")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not 0 < args.minutes <= 60:
        raise SystemExit("--minutes: between 0 and 60")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gateway", "-p", "e2e-tests", "--bin", "gateway", "--bin", "bench-upstream"], cwd=REPO, check=True)

    ports = {name: free_port() for name in ("primary", "hung", "compare", "gateway", "admin")}
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    config = work / "soak.yaml"
    config.write_text(
        f"""services:
  app:
    v1: [127.0.0.1:{ports['primary']}]
    hung: [127.0.0.1:{ports['hung']}]
    v2: [127.0.0.1:{ports['compare']}]
routes:
  - name: soak
    to: app/v1
    mirrors:
      - {{ to: app/hung, name: hung, timeout: 2s }}
      - {{ to: app/v2, name: compare, compare: true }}
"""
    )
    children = []
    logs = open(work / "processes.log", "w")

    def spawn(*command: str, **env: str) -> subprocess.Popen:
        child = subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT, env={**os.environ, **env})
        children.append(child)
        return child

    try:
        spawn(str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{ports['primary']}", "--mode", "fast")
        spawn(str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{ports['hung']}", "--mode", "hang")
        spawn(str(TARGET / "bench-upstream"), "--listen", f"127.0.0.1:{ports['compare']}", "--mode", "fast")
        for name in ("primary", "hung", "compare"):
            wait_listening(ports[name])
        gateway = spawn(
            str(TARGET / "gateway"),
            "--config", str(config),
            "--listen", f"127.0.0.1:{ports['gateway']}",
            "--admin-listen", f"127.0.0.1:{ports['admin']}",
            OTEL_SDK_DISABLED="true",
            RUST_LOG="warn",
        )
        wait_listening(ports["gateway"])
        wait_listening(ports["admin"])

        load = Load(ports["gateway"], args.rate)
        samples = []
        started = time.monotonic()
        end = started + args.minutes * 60

        def sample() -> None:
            status = proc_status(gateway.pid)
            with load.lock:
                sent, errors = load.sent, load.errors
            samples.append({
                "t": round(time.monotonic() - started, 1),
                "rss_kib": status["VmRSS"],
                "fds": status["fds"],
                "threads": status["Threads"],
                "sent": sent,
                "errors": errors,
                "mirrors": mirrors(ports["admin"]),
            })
            s = samples[-1]
            print(f"{s['t']:7.1f}s rss {s['rss_kib'] / 1024:6.1f} MiB fds {s['fds']:4d} threads {s['threads']:3d} sent {sent:7d} errors {errors}", flush=True)

        sample()
        load.start()
        while time.monotonic() < end:
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
            if gateway.poll() is not None:
                raise SystemExit(f"the gateway exited with {gateway.returncode} (see {work / 'processes.log'})")
            sample()
        load.finish()
        # Copies to the hung mirror end at their timeout: let them, then take the last sample.
        time.sleep(3)
        sample()
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

    rss = [s["rss_kib"] for s in samples]
    # "Start" is the first sample after warm-up (a minute, or a tenth of a short run).
    warm = next((s for s in samples if s["t"] >= min(60.0, args.minutes * 6)), samples[0])
    result = {
        "minutes": args.minutes,
        "rate": args.rate,
        "requests": samples[-1]["sent"],
        "primary_errors": samples[-1]["errors"],
        "error_kinds": load.error_kinds,
        "achieved_rate": round(samples[-1]["sent"] / max(1.0, samples[-2]["t"] if len(samples) > 1 else 1.0), 1),
        "rss_mib": {"idle": round(rss[0] / 1024, 1), "start": round(warm["rss_kib"] / 1024, 1), "end": round(rss[-1] / 1024, 1), "peak": round(max(rss) / 1024, 1)},
        "fds": {"idle": samples[0]["fds"], "start": warm["fds"], "end": samples[-1]["fds"], "peak": max(s["fds"] for s in samples)},
        "threads": {"start": warm["threads"], "end": samples[-1]["threads"], "peak": max(s["threads"] for s in samples)},
        "mirrors": samples[-1]["mirrors"],
        "samples": samples,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    chart(samples, args.chart, f"gateway soak: {args.rate:g} req/s for {args.minutes:g} min, hung + comparing mirror")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=1))
    print(f"chart: {args.chart}  data: {args.json}")
    return 1 if result["primary_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
