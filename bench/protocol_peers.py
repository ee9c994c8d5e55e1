#!/usr/bin/env python3
"""Peers of bench/run.py's `grpc` and `websocket` groups, each a bounded command printing JSON:

  protocol_peers.py ws-echo PORT                          # WebSocket echo server (websockets), until SIGTERM
  protocol_peers.py ws-echo-load URL CONNECTIONS SECONDS  # 1 KiB messages back-to-back on each connection
  protocol_peers.py ws-handshakes URL TASKS SECONDS       # connect + one echo + close, in a loop per task
  protocol_peers.py grpc-call HOST:PORT PATH REQUEST_FILE # one unary call (grpcio, raw bytes): the status

Compression (permessage-deflate) and keepalive pings are off on both WebSocket sides: what is
measured is the proxy, not zlib.
"""
from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time

MESSAGE = b"x" * 1024


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(count: int, elapsed: float, rtts: list[float], errors: int, kind: str) -> dict:
    return {
        "rate": count / elapsed if elapsed else 0.0,
        "count": count,
        "errors": errors,
        "p50_ms": percentile(rtts, 0.50),
        "p99_ms": percentile(rtts, 0.99),
        "mean_ms": statistics.fmean(rtts) if rtts else None,
        "kind": kind,
    }


async def ws_echo(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(echo, "127.0.0.1", port, compression=None, ping_interval=None, max_size=1 << 20, backlog=1024):
        await stop


async def ws_echo_load(url: str, connections: int, seconds: float) -> dict:
    from websockets.asyncio.client import connect

    rtts: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        try:
            async with connect(url, compression=None, ping_interval=None, open_timeout=10, close_timeout=5) as ws:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    await ws.send(MESSAGE)
                    answer = await asyncio.wait_for(ws.recv(), 10)
                    if answer != MESSAGE:
                        errors += 1
                        continue
                    rtts.append((time.perf_counter() - t0) * 1000)
        except Exception as error:  # noqa: BLE001 - every failure counts as one error, the row goes on
            errors += 1
            print(f"ws-echo-load: {type(error).__name__}: {error}", file=sys.stderr)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(connections)))
    return summary(len(rtts), time.monotonic() - t0, rtts, errors, "messages")


async def ws_handshakes(url: str, tasks: int, seconds: float) -> dict:
    from websockets.asyncio.client import connect

    times: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                async with connect(url, compression=None, ping_interval=None, open_timeout=10, close_timeout=5) as ws:
                    await ws.send(MESSAGE)
                    if await asyncio.wait_for(ws.recv(), 10) != MESSAGE:
                        errors += 1
                        continue
                times.append((time.perf_counter() - t0) * 1000)
            except Exception as error:  # noqa: BLE001
                errors += 1
                print(f"ws-handshakes: {type(error).__name__}: {error}", file=sys.stderr)
                await asyncio.sleep(0.01)

    t0 = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    return summary(len(times), time.monotonic() - t0, times, errors, "handshakes")


def grpc_call(target: str, path: str, request_file: str) -> dict:
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            answer, info = call.with_call(open(request_file, "rb").read(), timeout=5)
            return {"code": info.code().name, "answer": answer.hex(), "trailers": dict(info.trailing_metadata() or ())}
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details()}


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "ws-echo":
        asyncio.run(ws_echo(int(rest[0])))
        return 0
    if command == "ws-echo-load":
        result = asyncio.run(ws_echo_load(rest[0], int(rest[1]), float(rest[2])))
    elif command == "ws-handshakes":
        result = asyncio.run(ws_handshakes(rest[0], int(rest[1]), float(rest[2])))
    elif command == "grpc-call":
        result = grpc_call(*rest)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
