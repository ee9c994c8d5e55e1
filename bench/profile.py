#!/usr/bin/env python3
"""Profiles the release gateway under wrk, pinned like the benchmark (bench/run.py), and draws
flame graphs: docs/bench/flamegraph-<row>.svg.

  python3 bench/profile.py                        # routing only (32 connections), mirror (1 connection)
  python3 bench/profile.py --seconds 20 --rows routing-c32

Needs perf (Debian: linux-perf) and inferno (cargo install inferno). Stacks are unwound with
DWARF (`perf record --call-graph dwarf`): release builds have no frame pointers, but their
.eh_frame unwinds and their symbol table names the functions. Prints the functions with the most
samples of their own (self time) and the share of a few suspects (inclusive).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the same backends, gateway and pinning)

ROWS = {
    "routing-c32": ("/proxy/index", run.CONNECTIONS),
    "mirror-c32": ("/target/index", run.CONNECTIONS),
    "routing-c1": ("/proxy/index", 1),
    "mirror-c1": ("/target/index", 1),
}

# Substrings of symbols, for the inclusive share of each suspect of the issue.
SUSPECTS = {
    "uuid (x-request-id)": ["uuid::"],
    "tracing spans and subscriber": ["tracing_subscriber::", "tracing_core::", "tracing::span", "Instrumented"],
    "tracing-opentelemetry": ["tracing_opentelemetry::", "opentelemetry"],
    "metrics registry and labels": ["metrics_exporter_prometheus::", "metrics_util::", "metrics::key", "metrics::label"],
    "arc_swap": ["arc_swap::"],
    "route matching": ["gateway_config::matching"],
    "hyper server (h1 parse/encode)": ["hyper::proto::h1"],
    "hyper client pool": ["hyper_util::client::legacy::pool", "hyper_util::client::legacy::client"],
    "tokio scheduler": ["tokio::runtime::scheduler", "tokio::runtime::task"],
    "syscalls (read/write/epoll)": ["__libc_write", "__libc_read", "writev", "epoll_wait", "__send", "__recv", "entry_SYSCALL"],
    "allocator (malloc/free)": ["malloc", "free", "realloc", "_int_malloc", "_int_free"],
    "mirror plan and copies": ["gateway::mirror"],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=["routing-c32", "mirror-c1"])
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", type=Path, default=run.REPO / "docs" / "bench")
    args = ap.parse_args()
    for tool in ("perf", "inferno-collapse-perf", "inferno-flamegraph", "wrk", "nginx"):
        if not shutil.which(tool):
            print(f"profile: {tool} is missing (apt-get install linux-perf wrk nginx-light; cargo install inferno)", file=sys.stderr)
            return 2
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gateway", "-p", "e2e-tests", "--bin", "gateway", "--bin", "bench-upstream"],
                       cwd=run.REPO, check=True, timeout=3600)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    bench = run.Bench(work, smoke=False)
    try:
        primary, shadow = bench.backend(), bench.backend()
        for name in args.rows:
            path, connections = ROWS[name]
            proc = bench.gateway(primary.port, shadow.port)
            url = f"http://127.0.0.1:{proc.port}{path}"
            run.wrk(url, 8, 1)
            data = work / f"{name}.data"
            load = {}
            loader = threading.Thread(target=lambda: load.update(run.wrk(url, connections, args.seconds + 2)))
            loader.start()
            subprocess.run(["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,32768", "-o", str(data), "-p", str(proc.p.pid),
                            "--", "sleep", str(args.seconds)], check=True, timeout=args.seconds + 120, capture_output=True)
            loader.join(timeout=args.seconds + 60)
            bench.stop(proc)
            script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True, timeout=1800).stdout
            folded = subprocess.run(["inferno-collapse-perf"], input=script, capture_output=True, text=True, check=True, timeout=600).stdout
            svg = args.out / f"flamegraph-{name}.svg"
            with open(svg, "w") as f:
                subprocess.run(["inferno-flamegraph", "--minwidth", "1", "--title", f"gateway, {name}: wrk -c{connections} {path}, {load.get('rps', 0):,.0f} req/s"],
                               input=folded, stdout=f, text=True, check=True, timeout=600)
            (work / f"{name}.folded").write_text(folded)
            summarise(name, folded, load)
            print(f"  flame graph: {svg}")
    finally:
        bench.stop_all()
    print(f"\nprofile: raw data in {work}")
    return 0


def summarise(name: str, folded: str, load: dict) -> None:
    stacks = []
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks) or 1
    own: dict[str, int] = {}
    for frames, n in stacks:
        leaf = re.sub(r"::h[0-9a-f]{16}$", "", frames[-1])
        own[leaf] = own.get(leaf, 0) + n
    print(f"\n== {name}: {total} samples, {load.get('rps', 0):,.0f} req/s under perf")
    print("  self time, top 25:")
    for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        print(f"    {n / total:6.1%}  {leaf[:150]}")
    print("  suspects, inclusive (a stack counts once per suspect):")
    for suspect, needles in SUSPECTS.items():
        n = sum(c for frames, c in stacks if any(any(needle in f for needle in needles) for f in frames))
        print(f"    {n / total:6.1%}  {suspect}")


if __name__ == "__main__":
    sys.exit(main())
