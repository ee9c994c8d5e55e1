"""WebSocket peer for the end-to-end tests, on the `websockets` library (PyPI).

  ws_peer.py serve                 echo server on 127.0.0.1; prints {"listening": port}, then one
                                   JSON line per connection ({"path", "headers"})
  ws_peer.py call URL MSG...       connects, sends each message, reads its echo; prints
                                   {"echo": [...]} or {"error", "status"} (exit 1)
"""

import asyncio
import json
import sys


def emit(value):
    print(json.dumps(value), flush=True)


async def serve():
    from websockets.asyncio.server import serve as ws_serve

    async def echo(connection):
        emit({"path": connection.request.path, "headers": {k.lower(): v for k, v in connection.request.headers.raw_items()}})
        async for message in connection:
            await connection.send(message)

    async with ws_serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit({"listening": port})
        await asyncio.Future()


async def call(url, messages):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, open_timeout=10, proxy=None) as ws:
            echoed = []
            for message in messages:
                await ws.send(message)
                echoed.append(await asyncio.wait_for(ws.recv(), 10))
            big = "x" * 200_000
            await ws.send(big)
            big_ok = await asyncio.wait_for(ws.recv(), 10) == big
            emit({"echo": echoed, "large_frame_echoed": big_ok})
    except InvalidStatus as e:
        emit({"error": "handshake refused", "status": e.response.status_code})
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - reported to the test as data
        emit({"error": repr(e)})
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    else:
        asyncio.run(call(sys.argv[2], sys.argv[3:]))
