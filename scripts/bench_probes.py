"""bench_probes.py: whether the lpgate under test serves a transport's
route, asked before scripts/bench.py runs a scenario on it: a websocket
upgrade answered 101 with the right Sec-WebSocket-Accept, or an event
stream answered 200 text/event-stream.  Each probe returns None when the
route works, else why not, in a sentence for the report.
"""

import base64
import hashlib
import os
import socket


def _ask(port, path, headers):
    """(status line, header lines) of lpgate's answer to GET path, or
    (None, why) when the request failed"""
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            c.settimeout(5)
            c.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
                       % (path, port, headers)).encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        return None, "GET %s failed: %s" % (path, e)
    lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")
    return (lines[0].decode(errors="replace") if lines[0] else "nothing",
            lines[1:])


def ws_probe(port, path="/websocket"):
    """None when lpgate upgrades GET /websocket (101 with the right
    Sec-WebSocket-Accept), else why not."""
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    status, lines = _ask(port, path, (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://127.0.0.1:%d\r\n" % (key, port)))
    if status is None:
        return lines
    if status.split(" ")[1:2] != ["101"]:
        return "lpgate answers GET %s with \"%s\", not 101" % (path, status)
    accept = [v.split(b":", 1)[1].strip() for v in lines
              if v.lower().startswith(b"sec-websocket-accept:")]
    if accept != [want]:
        return "lpgate's 101 has a wrong Sec-WebSocket-Accept"
    return None


def sse_probe(port, path="/longpolling/sse?channels=probe"):
    """None when lpgate answers GET <path>/sse with a 200 event stream,
    else why not."""
    status, lines = _ask(port, path, "Accept: text/event-stream\r\n")
    if status is None:
        return lines
    if status.split(" ")[1:2] != ["200"]:
        return "lpgate answers GET %s with \"%s\", not 200" % (path, status)
    if not any(v.lower().startswith(b"content-type:")
               and b"text/event-stream" in v.lower() for v in lines):
        return "lpgate's answer to GET %s is not text/event-stream" % path
    return None


# proto -> the probe of its lpgate route (None: available), by port
PROBES = {
    "odoo-ws": lambda port: ws_probe(port),
    "ws": lambda port: ws_probe(port, "/longpolling/ws"),
    "sse": lambda port: sse_probe(port),
    "socketio": lambda port: ws_probe(
        port, "/longpolling/socket.io/?EIO=4&transport=websocket"),
}
