"""A ring batch's long-poll answers go out in io_uring batches
(http/lpg_http_batch.c): many answers per io_uring_enter, every answer
whole, the connections kept alive for the next poll.  Skipped when lpgate
was built without liburing (./configure --without-liburing).
"""

import json
import os
import selectors
import socket
import time
from pathlib import Path

import pytest

from conftest import LPGATE_BIN, free_port, wait_until
from test_metrics import scrape, value

CONFIG_H = Path(LPGATE_BIN).resolve().parent / "config.h"


def built_with_liburing():
    try:
        return "#define LPG_HAVE_LIBURING 1" in CONFIG_H.read_text()
    except OSError:
        return None


pytestmark = pytest.mark.skipif(
    built_with_liburing() is False, reason="built without liburing")


def poll_request(channel, last, rpc_id):
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": rpc_id,
                       "params": {"channels": [channel], "last": last}})
    return ("POST /longpolling/poll HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)).encode()


def answers(socks, timeout=30):
    """Reads one whole answer from each socket; returns the parsed
    bodies, in the order of socks."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = bytearray()
    done = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            s = key.fileobj
            chunk = s.recv(65536)
            assert chunk, "connection closed before the answer"
            bufs[s].extend(chunk)
            head, sep, body = bytes(bufs[s]).partition(b"\r\n\r\n")
            if not sep:
                continue
            length = [int(v.split(b":")[1]) for v in head.split(b"\r\n")
                      if v.lower().startswith(b"content-length:")][0]
            if len(body) >= length:
                assert len(body) == length
                assert b"Connection: close" not in head
                done[s] = json.loads(body)
                sel.unregister(s)
    sel.close()
    assert len(done) == len(socks), "%d of %d answered" % (len(done),
                                                         len(socks))
    return [done[s] for s in socks]


def test_answers_of_a_batch_share_io_uring_submissions(pg, gateway):
    """1,500 parked polls (more than the 1,024 sends of one submission)
    get one message: each answer whole, in a handful of io_uring_enter
    calls, and each connection then parks its next poll."""
    admin = free_port()
    gw = gateway(workers=1, extra_args=["--admin-port", str(admin)])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    base = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                  dbname="lpgtest")[0][0]
    before = scrape(admin)
    # psycopg waits with select(): open its connections before the sockets
    conns = (pg.connect("lpgtest"), pg.connect("postgres"))

    socks = []
    for i in range(1500):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(poll_request("batch", base, i))
        socks.append(s)
    wait_until(lambda: value(scrape(admin), "lpgate_parked_polls") >= 1500,
               30, what="1,500 parked polls")

    first = pg.send("lpgtest", "batch", {"n": 1}, conns=conns)
    got = answers(socks)
    for i, a in enumerate(got):
        assert a["id"] == i
        assert a["result"] == [{"id": first, "channel": "batch",
                                "message": {"n": 1}}]

    after = scrape(admin)
    sends = (value(after, "lpgate_batched_sends_total")
             - value(before, "lpgate_batched_sends_total"))
    submits = (value(after, "lpgate_batch_submits_total")
               - value(before, "lpgate_batch_submits_total"))
    print("batched sends", sends, "in", submits, "io_uring_enter calls")
    if sends == 0 and gw.log_contains("io_uring not available"):
        pytest.skip("the kernel refuses io_uring here")
    assert sends == 1500
    assert 2 <= submits <= 1500 // 100

    # keep-alive: the same connections poll again and get the next one
    for i, s in enumerate(socks[:20]):
        s.setblocking(True)
        s.sendall(poll_request("batch", first, 10000 + i))
    wait_until(lambda: value(scrape(admin), "lpgate_parked_polls") >= 20,
               10, what="20 polls parked again")
    second = pg.send("lpgtest", "batch", {"n": 2}, conns=conns)
    for i, a in enumerate(answers(socks[:20])):
        assert a["id"] == 10000 + i
        assert [n["id"] for n in a["result"]] == [second]
    for s in socks:
        s.close()
    for c in conns:
        c.close()
