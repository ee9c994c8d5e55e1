#!/usr/bin/env python3
"""HTTP/2 peers for the upstream-pool tests (`upstream_pools`), on the Python `h2` library.

    python3 h2_pool_peer.py serve
        An h2c (prior knowledge) upstream on a free port. Prints {"listening": port}, then
        {"connection": n} for every connection it accepts and {"request": path} for every
        request. Paths:
          /big?bytes=N         200 and N bytes of body, sent as flow control allows
          /small               200 "ok"
          /head?bytes=N        200 "ok" with a header `x-big` of N bytes
          /goaway              200 "bye", with a GOAWAY (NO_ERROR) whose last stream id is
                               this request's before its body
          /trailers?bytes=N    200 "ok" then trailers `grpc-status: 0` and
                               `grpc-status-details-bin` of N bytes
    python3 h2_pool_peer.py hold HOST:PORT PATH STREAMS SECONDS
        A client that opens STREAMS streams for PATH, reads their response heads, and never
        reads their bodies (it sends no WINDOW_UPDATE) for SECONDS; prints
        {"heads": n, "statuses": [...], "data_bytes": n}.
"""

import asyncio
import json
import socket
import sys
import time
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import GoAwayFrame

CHUNK = 16384


class Server(asyncio.Protocol):
    connections = 0

    def connection_made(self, transport):
        Server.connections += 1
        print(json.dumps({"connection": Server.connections}), flush=True)
        self.transport = transport
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.pending = {}  # stream id -> [remaining bytes, trailers]
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except Exception:  # a protocol error: the connection ends, as any server's would
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.answer(event.stream_id, dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.pending.pop(event.stream_id, None)
        self.flush()

    def answer(self, stream_id, headers):
        url = urlsplit(headers.get(":path", "/"))
        print(json.dumps({"request": url.path}), flush=True)
        size = int(parse_qs(url.query).get("bytes", ["0"])[0])
        if url.path == "/big":
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(size))])
            self.pending[stream_id] = [size, None]
        elif url.path == "/head":
            self.conn.send_headers(stream_id, [(":status", "200"), ("x-big", "h" * size), ("content-length", "2")])
            self.conn.send_data(stream_id, b"ok", end_stream=True)
        elif url.path == "/goaway":
            # A graceful GOAWAY whose last stream id is this stream's: the streams before it go
            # on, newer ones are refused. Written raw, as h2 would stop every stream after it.
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", "3")])
            self.transport.write(self.conn.data_to_send())
            self.transport.write(GoAwayFrame(stream_id=0, last_stream_id=stream_id, error_code=0).serialize())
            self.conn.send_data(stream_id, b"bye", end_stream=True)
        elif url.path == "/trailers":
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
            self.conn.send_data(stream_id, b"ok")
            trailers = [("grpc-status", "0"), ("grpc-status-details-bin", "d" * size)]
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        else:
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
            self.conn.send_data(stream_id, b"ok", end_stream=True)

    def flush(self):
        for stream_id, state in list(self.pending.items()):
            while state[0] > 0:
                try:
                    window = self.conn.local_flow_control_window(stream_id)
                except Exception:
                    self.pending.pop(stream_id, None)
                    break
                n = min(CHUNK, state[0], window, self.conn.max_outbound_frame_size)
                if n <= 0:
                    break
                state[0] -= n
                self.conn.send_data(stream_id, b"x" * n, end_stream=state[0] == 0)
            if state[0] == 0:
                self.pending.pop(stream_id, None)
        self.transport.write(self.conn.data_to_send())


async def serve():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", 0)
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()


def hold(addr, path, streams, seconds):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    for _ in range(streams):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":authority", addr), (":path", path)], end_stream=True)
    sock.sendall(conn.data_to_send())
    statuses, data_bytes = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                statuses.append(dict(event.headers).get(":status"))
            elif isinstance(event, h2.events.DataReceived):
                # Counted, never acknowledged: the gateway's window for these streams stays spent.
                data_bytes += event.flow_controlled_length
        sock.sendall(conn.data_to_send())
    print(json.dumps({"heads": len(statuses), "statuses": statuses, "data_bytes": data_bytes}), flush=True)
    sock.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    elif sys.argv[1] == "hold":
        hold(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
