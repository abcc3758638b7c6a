"""GET <path>/ws, the plain WebSocket API (issue 14, item 2): a real
WebSocket client (Debian's python3-websockets) against a real lpgate and
real PostgreSQL, records published with contrib/sql/lpgate.sql's
lpgate_send().
"""

import asyncio
import json

import websockets

from apps import DB, publish, sql, start  # noqa: F401 (sql: a fixture)
from conftest import free_port, wait_until
from test_websocket import close_code, eof, frame, handshake, read_frame




def uri(port, path="/longpolling/ws"):
    return "ws://127.0.0.1:%d%s" % (port, path)


def connect(port, **kw):
    return websockets.connect(uri(port), ping_interval=None, max_size=None,
                              **kw)


def last_id(pg):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=DB)[0][0]


async def recv(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def op(ws, **kw):
    """Sends an op; returns the server's answer to it (an object)."""
    await ws.send(json.dumps(kw))
    got = await recv(ws)
    assert isinstance(got, dict), got
    return got


async def records(ws, upto, timeout=10):
    """The records of the next batches until the id upto came."""
    out = []
    while not out or out[-1]["id"] < upto:
        got = await recv(ws, timeout)
        assert isinstance(got, list), got
        out += got
    return out


async def nothing(ws, timeout=1.0):
    try:
        got = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        return True
    raise AssertionError("unexpected %r" % got)


def run(coro):
    return asyncio.run(coro)


def test_subscribe_receive_unsubscribe(pg, gateway, sql):
    gw = start(gateway)

    async def main():
        async with connect(gw.port) as ws:
            ack = await op(ws, op="subscribe", channels=["a-\u00e9", "b"],
                           last=last_id(pg))
            assert ack == {"op": "subscribe", "channels": ["a-\u00e9", "b"]}
            i = publish(pg, "a-\u00e9", {"n": 1})
            assert await recv(ws) == [{"id": i, "channel": "a-\u00e9",
                                       "message": {"n": 1}}]
            # a channel not subscribed: nothing
            publish(pg, "c", {"n": 2})
            j = publish(pg, "b", {"n": 3})
            assert await recv(ws) == [{"id": j, "channel": "b",
                                       "message": {"n": 3}}]

            ack = await op(ws, op="unsubscribe", channels=["a-\u00e9", "x"])
            assert ack == {"op": "unsubscribe", "channels": ["b"]}
            publish(pg, "a-\u00e9", {"n": 4})
            k = publish(pg, "b", {"n": 5})
            assert [r["id"] for r in await recv(ws)] == [k]
            ack = await op(ws, op="unsubscribe", channels=["b"])
            assert ack["channels"] == []
            publish(pg, "b", {"n": 6})
            assert await nothing(ws)
            # subscribing again without last: from now on
            ack = await op(ws, op="subscribe", channels=["b"])
            assert await nothing(ws, 0.5)
            m = publish(pg, "b", {"n": 7})
            assert [r["id"] for r in await recv(ws)] == [m]

    run(main())


def test_added_channel_replays_from_its_own_last(pg, gateway, sql):
    """A second subscribe replays the new channels from its last and does
    not send the held ones' records again."""
    gw = start(gateway)
    base = last_id(pg)
    a1 = publish(pg, "a", 1)
    b1 = publish(pg, "b", 1)
    a2 = publish(pg, "a", 2)

    async def main():
        async with connect(gw.port) as ws:
            await op(ws, op="subscribe", channels=["a"], last=base)
            assert [r["id"] for r in await records(ws, a2)] == [a1, a2]
            await op(ws, op="subscribe", channels=["b"], last=base)
            assert [r["id"] for r in await records(ws, b1)] == [b1]
            assert await nothing(ws)

    run(main())


def test_resume_after_disconnect_from_history_and_database(pg, gateway,
                                                           sql):
    """A client that comes back with the last id it saw gets exactly what
    it missed: from the worker's history, and after a restart (an empty
    history) from the database (the backfill path), without loss or
    duplicate."""
    from test_metrics import scrape, value

    admin = free_port()
    gw = start(gateway, args=["--admin-port", str(admin)])
    base = last_id(pg)

    async def session(port, last, upto):
        async with connect(port) as ws:
            await op(ws, op="subscribe", channels=["r"], last=last)
            got = await records(ws, upto)
            assert await nothing(ws, 0.5)
            return [r["id"] for r in got]

    async def first():
        async with connect(gw.port) as ws:
            await op(ws, op="subscribe", channels=["r"], last=base)
            i = publish(pg, "r", 0)
            return [r["id"] for r in await records(ws, i)]

    seen = run(first())
    missed = [publish(pg, "r", n) for n in range(1, 4)]
    publish(pg, "other", 0)
    assert run(session(gw.port, seen[-1], missed[-1])) == missed
    # from the worker's history: no query
    assert value(scrape(admin), "lpgate_backfill_queries_total") == 0

    # a new lpgate: nothing in its history, the rows come from bus_bus
    gw.stop()
    admin = free_port()
    gw2 = start(gateway, args=["--admin-port", str(admin)])
    more = [publish(pg, "r", n) for n in range(4, 6)]
    assert run(session(gw2.port, missed[-1], more[-1])) == more
    assert value(scrape(admin), "lpgate_backfill_queries_total") >= 1
    assert run(session(gw2.port, base, more[-1])) == seen + missed + more


def test_publish_allowed_and_refused(pg, gateway, sql):
    gw = start(gateway, config='allow_send = true;\n'
                               'send_channels = "pub-*";\n'
                               'send_max_bytes = 100;\n')

    async def main():
        async with connect(gw.port) as sub, connect(gw.port) as pub:
            await op(sub, op="subscribe", channels=["pub-1"],
                     last=last_id(pg))
            ack = await op(pub, op="publish", channel="pub-1",
                           message={"hi": "\u00e9"})
            assert ack["op"] == "publish" and ack["id"] > 0
            assert await recv(sub) == [{"id": ack["id"], "channel": "pub-1",
                                        "message": {"hi": "\u00e9"}}]
            err = await op(pub, op="publish", channel="other", message=1)
            assert err == {"error": "send: this channel is not open to "
                                    "clients (send_channels)",
                           "op": "publish"}
            err = await op(pub, op="publish", channel="pub-2",
                           message="x" * 200)
            assert "send_max_bytes" in err["error"]
            err = await op(pub, op="publish", channel=["pub-1"], message=1)
            assert "string" in err["error"]
            err = await op(pub, op="publish", channel="pub-1")
            assert err["op"] == "publish" and "message" in err["error"]
            # ops behind a publish wait for it, in order
            await pub.send(json.dumps({"op": "publish", "channel": "pub-1",
                                       "message": 1}))
            await pub.send(json.dumps({"op": "subscribe",
                                       "channels": ["pub-1"]}))
            assert (await recv(pub))["op"] == "publish"
            assert (await recv(pub))["op"] == "subscribe"

    run(main())

    gw.stop()
    gw = start(gateway)

    async def refused():
        async with connect(gw.port) as ws:
            err = await op(ws, op="publish", channel="pub-1", message=1)
            assert err == {"error": "send: not allowed here (allow_send)",
                           "op": "publish"}

    run(refused())


def test_bad_input_gets_an_error_and_the_socket_stays(pg, gateway, sql):
    gw = start(gateway, config="max_channels_per_poll = 3;\n")
    cases = [
        ("{", None, "not a JSON object"),
        ("[1]", None, "not a JSON object"),
        ("{}", None, '"op" must be'),
        ('{"op": 1}', None, '"op" must be'),
        ('{"op": "dance"}', "dance", "unknown op"),
        ('{"op": "subscribe"}', "subscribe", '"channels" must be'),
        ('{"op": "subscribe", "channels": []}', "subscribe",
         '"channels" must be'),
        ('{"op": "subscribe", "channels": "a"}', "subscribe",
         '"channels" must be'),
        ('{"op": "subscribe", "channels": [1]}', "subscribe",
         "a channel must be"),
        ('{"op": "subscribe", "channels": [""]}', "subscribe",
         "a channel must be"),
        (json.dumps({"op": "subscribe", "channels": ["x" * 513]}),
         "subscribe", "a channel must be"),
        ('{"op": "subscribe", "channels": ["a"], "last": -1}', "subscribe",
         '"last" must be'),
        ('{"op": "subscribe", "channels": ["a"], "last": "1"}', "subscribe",
         '"last" must be'),
        ('{"op": "subscribe", "channels": ["a"], "db": "nope"}', "subscribe",
         "no such database"),
        ('{"op": "subscribe", "channels": ["a"], "db": 1}', "subscribe",
         '"db" must be'),
        ('{"op": "subscribe", "channels": ["a", "b", "c", "d"]}',
         "subscribe", "too many channels"),
        ('{"op": "unsubscribe", "channels": {}}', "unsubscribe",
         '"channels" must be'),
    ]

    async def main():
        # each on a new socket: 10 messages within 200 ms is the limit
        for text, name, why in cases:
            async with connect(gw.port) as ws:
                await ws.send(text)
                err = await recv(ws)
                assert err["op"] == name and why in err["error"], (text, err)
        async with connect(gw.port) as ws:
            await ws.send(b"\x01\x02")
            err = await recv(ws)
            assert "binary" in err["error"] and err["op"] is None
            # an error keeps the socket
            await ws.send("{}")
            assert "op" in (await recv(ws))["error"]
            # three channels held: a fourth is too many, across subscribes
            await op(ws, op="subscribe", channels=["a", "b"])
            await op(ws, op="subscribe", channels=["b", "c"])
            err = await op(ws, op="subscribe", channels=["d"])
            assert "too many channels" in err["error"]
            # still served
            i = publish(pg, "c", 1)
            assert [r["id"] for r in await recv(ws)] == [i]

    run(main())

    # no database at all: ?db= names none
    async def nodb():
        async with websockets.connect(uri(gw.port, "/longpolling/ws?db=no"),
                                      ping_interval=None) as ws:
            err = await op(ws, op="subscribe", channels=["a"])
            assert "no such database" in err["error"]
            ack = await op(ws, op="subscribe", channels=["a"], db=DB)
            assert ack["op"] == "subscribe"

    run(nodb())

    # the handshake's errors are /websocket's
    s, status, _ = handshake(gw, drop=("Sec-WebSocket-Key",),
                             path="/longpolling/ws")
    assert status == 400
    s.close()
    status, _, _ = gw.http("POST", "/longpolling/ws", b"")
    assert status == 405


def test_limits_message_size_and_slow_reader(pg, gateway, sql):
    gw = start(gateway, config="max_answer_size = 65536;\n"
                               "send_timeout = 3600;\n")
    s, status, _ = handshake(gw, path="/longpolling/ws")
    assert status == 101
    # the head of a frame past 1 MiB is enough (the rest would only meet
    # a closed socket)
    s.sendall(frame(0x1, b"x" * ((1 << 20) + 1))[:1000])
    assert close_code(s) == 1009
    s.close()

    # more than 10 messages within 200 ms: 1013, as /websocket
    s, status, _ = handshake(gw, path="/longpolling/ws")
    s.sendall(b"".join(frame(0x1, b"{}") for _ in range(12)))
    assert close_code(s) == 1013
    s.close()

    # a client that never reads: cut past max_answer_size of output
    import socket
    s, status, _ = handshake(gw, path="/longpolling/ws")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(frame(0x1, json.dumps({"op": "subscribe", "channels": ["slow"],
                                     "last": last_id(pg)}).encode()))
    wait_until(lambda: gw.log_contains("ws subscribed"))
    big = "x" * 30000
    conn = pg.connect(DB)
    for i in range(2000):
        conn.execute("SELECT lpgate_send('slow', %s::json)",
                     (json.dumps([i, big]),))
        if gw.log_contains("ws: client too slow"):
            break
    wait_until(lambda: gw.log_contains("ws: client too slow"), 30)
    assert eof(s)
    s.close()


def test_fd_limit_503_before_exhaustion(pg, gateway, sql):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    gw = gateway(workers=1, preexec_fn=limit)
    socks, refused = [], None
    for i in range(100):
        s, status, text = handshake(gw, path="/longpolling/ws")
        if status != 101:
            refused = (i, status, text)
            s.close()
            break
        socks.append(s)
    assert refused is not None and refused[1] == 503, refused
    socks[0].sendall(frame(0x9, b"ok"))
    assert read_frame(socks[0]) == (0xA, b"ok")
    for s in socks:
        s.close()


def test_several_workers_and_metrics(pg, gateway, sql):
    """Sockets spread over 4 workers (SO_REUSEPORT) all get one record,
    framed once per worker; the per-transport metrics count them."""
    from test_metrics import scrape, value

    admin = free_port()
    gw = gateway(workers=4, extra_args=["--admin-port", str(admin)])
    n = 24

    async def main():
        socks = [await connect(gw.port).__aenter__() for _ in range(n)]
        last = last_id(pg)
        for ws in socks:
            await op(ws, op="subscribe", channels=["fan"], last=last)
        fams = scrape(admin)
        assert value(fams, "lpgate_transport_connections_open",
                     transport="ws") == n
        workers = [s.labels["worker"] for s in
                   fams["lpgate_transport_connections_open"].samples
                   if s.value > 0]
        assert len(workers) > 1, "one worker got every socket"
        i = publish(pg, "fan", {"all": True})
        for ws in socks:
            assert await recv(ws) == [{"id": i, "channel": "fan",
                                       "message": {"all": True}}]
        assert value(scrape(admin), "lpgate_transport_deliveries_total",
                     transport="ws") == n
        for ws in socks:
            await ws.close()

    run(main())
    wait_until(lambda: value(scrape(admin), "lpgate_transport_connections_open",
                             transport="ws") == 0)


def test_through_nginx(pg, gateway, sql, nginx):  # noqa: F811
    gw = gateway(workers=2)
    port = nginx(gw.port)

    async def main():
        async with connect(port) as ws:
            await op(ws, op="subscribe", channels=["via-nginx"],
                     last=last_id(pg))
            i = publish(pg, "via-nginx", {"ok": 1})
            assert await recv(ws) == [{"id": i, "channel": "via-nginx",
                                       "message": {"ok": 1}}]

    run(main())


from test_proxy import app, nginx  # noqa: E402,F401
