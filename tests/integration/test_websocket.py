"""GET /websocket (issue 13): Odoo 16/17's bus on one socket, against a
real lpgate, real PostgreSQL and the stand-in Odoo of odoo_standin.py at
series 17 (and 16).  A real WebSocket client (Debian's python3-websockets,
asyncio) for the protocol, raw sockets for handshake and framing errors.
"""

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time

import pytest
import websockets

from conftest import alive, wait_until
from odoo_standin import OdooStandin, create_database


DB17, DB16 = "lpgtest17", "lpgtest16"


@pytest.fixture
def odoo(pg):
    dbs = {DB17: (create_database(pg, DB17, 17), 17),
           DB16: (create_database(pg, DB16, 16), 16)}
    s = OdooStandin(dbs).start()
    yield s
    s.stop()


def start(gateway, odoo, db=DB17, workers=1, config="", ttl=30, args=()):
    gw = gateway(workers=workers, config="session_retry = 1;\n" + config,
                 extra_args=["-d", db, "--odoo-url", odoo.url,
                             "--session-ttl", str(ttl),
                             "--log-level", "debug"] + list(args))
    gw.wait_log('database "%s": Odoo' % db)
    return gw


def origin(gw):
    return "http://127.0.0.1:%d" % gw.port


def uri(gw, query=""):
    return "ws://127.0.0.1:%d/websocket%s" % (gw.port, query)


def connect(gw, sid=None, org=None, **kw):
    headers = {"Cookie": "session_id=" + sid} if sid else {}
    return websockets.connect(uri(gw), origin=org or origin(gw),
                              extra_headers=headers, ping_interval=None,
                              max_size=None, **kw)


def subscribe(channels=(), last=0):
    return json.dumps({"event_name": "subscribe",
                       "data": {"channels": list(channels), "last": last}})


async def recv(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout)


async def await_until(predicate, timeout=30, what=None):
    """wait_until without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for %s" % (
            what or predicate)
        await asyncio.sleep(0.05)


async def nothing(ws, timeout=1.0):
    """True when no message comes within timeout."""
    try:
        await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        return True
    return False


def run(coro):
    return asyncio.run(coro)


def last_id(pg, db=DB17):
    """The database's largest bus id: a last that replays nothing."""
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=db)[0][0]


async def collect(ws, n, timeout=10):
    """The ids of the next frames until n notifications came."""
    ids = []
    while len(ids) < n:
        ids += [x["id"] for x in json.loads(await recv(ws, timeout))]
    return ids


def send(pg, db, channel, message, conns=None):
    return pg.send(db, [db] + list(channel), message, conns=conns)


# --- raw sockets -------------------------------------------------------

class Raw:
    """A socket and the bytes read past the handshake's head."""

    def __init__(self, sock):
        self.sock, self.pending = sock, b""

    def __getattr__(self, name):
        return getattr(self.sock, name)


def handshake(gw, drop=(), extra=None, http="HTTP/1.1", method="GET",
              path="/websocket"):
    """Sends an upgrade request; returns (socket, status, head text)."""
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": "127.0.0.1:%d" % gw.port, "Upgrade": "websocket",
         "Connection": "Upgrade", "Sec-WebSocket-Key": key,
         "Sec-WebSocket-Version": "13", "Origin": origin(gw)}
    h.update(extra or {})
    for d in drop:
        h.pop(d, None)
    req = "%s %s %s\r\n" % (method, path, http) + "".join(
        "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    s = Raw(socket.create_connection(("127.0.0.1", gw.port), timeout=10))
    s.sendall(req.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    s.pending = rest
    return s, status, head.decode() + "\r\n\r\n" + rest.decode(
        errors="replace")


def read_head(s, chunk=4096):
    """An answer's head off socket s (the bytes after it in s.pending when
    s is a Raw); chunk 1 reads nothing past it."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = s.recv(chunk)
        assert got, data
        data += got
    head, _, rest = data.partition(b"\r\n\r\n")
    if isinstance(s, Raw):
        s.pending = rest
    return head


def frame(op, payload=b"", mask=True, fin=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_exact(s, n):
    out = s.pending[:n]
    s.pending = s.pending[n:]
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def read_frame(s):
    """(opcode, payload) of the next server frame; raises EOFError."""
    b0, b1 = read_exact(s, 2)
    assert not b1 & 0x80, "server frames are never masked"
    n = b1 & 0x7f
    if n == 126:
        n = struct.unpack("!H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(s, 8))[0]
    return b0 & 0x0f, read_exact(s, n)


def close_code(s):
    """The code of the CLOSE frame the server sends next (frames before it
    are skipped); None when the connection ends without one."""
    try:
        while True:
            op, payload = read_frame(s)
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if payload else 1005
    except (EOFError, ConnectionResetError):
        return None


def eof(s, timeout=10):
    """True when the server closes the TCP connection within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536) and not s.pending:
                return True
            s.pending = b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# --- the handshake -----------------------------------------------------

def test_handshake_errors_and_http10(gateway, odoo):
    gw = start(gateway, odoo)

    s, status, text = handshake(gw, drop=["Origin"])
    assert status == 400 and "Empty or missing header(s): origin" in text
    s.close()

    s, status, text = handshake(gw, extra={"Sec-WebSocket-Version": "8"})
    assert status == 426 and "Sec-WebSocket-Version: 13" in text
    s.close()

    s, status, text = handshake(gw, extra={"Sec-WebSocket-Key": "c2hvcnQ="})
    assert status == 400 and "length 16" in text
    s.close()

    s, status, text = handshake(gw, extra={"Upgrade": "foo"})
    assert status == 400 and "Invalid upgrade header" in text
    s.close()

    s, status, text = handshake(gw, method="POST")
    assert status == 405
    s.close()

    # Odoo's documented nginx block sends HTTP/1.0 upgrades; ?version= is
    # ignored
    s, status, text = handshake(gw, http="HTTP/1.0",
                                path="/websocket?version=17.0-1")
    assert status == 101, text
    assert "Upgrade: websocket" in text and "Sec-WebSocket-Accept" in text
    s.sendall(frame(0x9, b"hi"))
    assert read_frame(s) == (0xA, b"hi")
    s.close()

    # the longpolling routes are still there
    assert gw.health()[0] == 200


# --- delivery ----------------------------------------------------------

@pytest.mark.parametrize("db", [DB17, DB16])
def test_delivery_to_the_logged_in_socket_only(gateway, odoo, pg, db):
    gw = start(gateway, odoo, db=db)
    uid_a, pid_a = odoo.user(db, "alice")
    uid_b, pid_b = odoo.user(db, "bob")
    sid_a, sid_b = odoo.login(db, uid_a), odoo.login(db, uid_b)

    async def main():
        async with connect(gw, sid_a) as a, connect(gw, sid_b) as b:
            await a.send(subscribe((), last_id(pg, db)))
            await b.send(subscribe((), last_id(pg, db)))
            await await_until(lambda: gw.log().count("websocket subscribed") >= 2)
            n = send(pg, db, ["res.partner", pid_a],
                     {"type": "hello", "payload": {"to": "alice"}})
            text = await recv(a)
            # Odoo's json.dumps default separators, the stored message
            # inserted as is
            assert text == ('[{"id": %d, "message": {"type":"hello",'
                            '"payload":{"to":"alice"}}}]' % n), text
            m = send(pg, db, ["broadcast"], {"type": "all", "payload": 1})
            # bob gets the broadcast, never alice's notification
            assert json.loads(await recv(b)) == [
                {"id": m, "message": {"type": "all", "payload": 1}}]
            assert json.loads(await recv(a))[0]["id"] == m

    run(main())


def test_replay_by_last_and_last_above_max(gateway, odoo, pg):
    gw = start(gateway, odoo)
    ids = [send(pg, DB17, ["chan-x"], {"type": "t", "payload": i})
           for i in range(3)]
    # the worker has read them (its history then answers the replay)
    gw.wait_log("bus_bus id")

    async def main():
        async with connect(gw) as ws:
            await ws.send(subscribe(["chan-x"], ids[0]))
            assert await collect(ws, 2) == ids[1:]

        # a last above the database's largest id is 0: the last 50 s
        async with connect(gw) as ws:
            await ws.send(subscribe(["chan-x"], ids[-1] + 10 ** 9))
            got = []
            while ids[-1] not in got:
                got += await collect(ws, 1)
            # (and the broadcasts of the last 50 s)
            assert [i for i in got if i >= ids[0]] == ids
            assert await nothing(ws)

        # a channel nobody asked for is not delivered
        async with connect(gw) as ws:
            await ws.send(subscribe(["chan-y"], ids[-1]))
            assert await nothing(ws)

    run(main())
    assert gw.log_contains("is above the largest id")


def test_replay_from_the_database(gateway, odoo, pg):
    """Records older than the worker's history come from a backfill."""
    ids = [send(pg, DB17, ["old"], {"type": "t", "payload": i})
           for i in range(2)]
    gw = start(gateway, odoo)

    async def main():
        async with connect(gw) as ws:
            await ws.send(subscribe(["old"], ids[0] - 1))
            got = json.loads(await recv(ws))
            assert [n["id"] for n in got] == ids

    run(main())


def test_bad_messages_keep_the_socket_and_subscribe_replaces(gateway, odoo,
                                                             pg):
    gw = start(gateway, odoo)

    async def main():
        async with connect(gw) as ws:
            await ws.send("{not json")
            await ws.send(json.dumps({"event_name": "nope", "data": {}}))
            await ws.send(json.dumps({"data": {}}))
            await ws.send(json.dumps({"event_name": "subscribe",
                                      "data": {"channels": [1], "last": 0}}))
            await ws.send(subscribe(["a"], last_id(pg)))
            await ws.send(subscribe(["b"], last_id(pg)))
            await await_until(lambda: gw.log().count("websocket subscribed") >= 2)
            send(pg, DB17, ["a"], {"type": "a", "payload": 0})
            m = send(pg, DB17, ["b"], {"type": "b", "payload": 0})
            got = json.loads(await recv(ws))
            assert [n["id"] for n in got] == [m]
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)

    run(main())
    assert gw.log_contains("websocket: message ignored: invalid JSON")
    assert gw.log_contains("a channel is not a string")
    assert gw.log_contains("unknown event ignored")


# --- framing errors ----------------------------------------------------

def open_raw(gw):
    s, status, text = handshake(gw)
    assert status == 101, text
    return s


def test_framing_errors(gateway, odoo):
    gw = start(gateway, odoo)

    s = open_raw(gw)
    s.sendall(frame(0x1, b"{}", mask=False))
    assert close_code(s) == 1002
    s.close()

    s = open_raw(gw)
    s.sendall(frame(0x1, b"\xff\xfe"))
    assert close_code(s) == 1007
    s.close()

    s = open_raw(gw)
    s.sendall(frame(0x1, b"x" * ((1 << 20) + 1)))
    assert close_code(s) == 1009
    s.close()

    s = open_raw(gw)
    s.sendall(frame(0x9, b"y" * 126))
    assert close_code(s) == 1002
    s.close()

    # 12 PINGs back to back: 10 PONGs, then 1013
    s = open_raw(gw)
    s.sendall(b"".join(frame(0x9, b"%d" % i) for i in range(12)))
    pongs = 0
    while True:
        op, payload = read_frame(s)
        if op == 0xA:
            pongs += 1
            continue
        assert op == 0x8
        assert struct.unpack("!H", payload[:2])[0] == 1013
        break
    assert pongs == 10
    s.close()

    # the client's close is echoed, then the connection ends
    s = open_raw(gw)
    s.sendall(frame(0x8, struct.pack("!H", 1000) + b"bye"))
    op, payload = read_frame(s)
    assert op == 0x8 and payload == struct.pack("!H", 1000) + b"bye"
    assert eof(s)
    s.close()


# --- sessions ----------------------------------------------------------

def test_4001_after_logout(gateway, odoo, pg):
    gw = start(gateway, odoo, ttl=1)
    uid, pid = odoo.user(DB17, "carol")
    sid = odoo.login(DB17, uid)

    async def main():
        async with connect(gw, sid) as ws:
            await ws.send(subscribe((), last_id(pg)))
            await await_until(lambda: gw.log_contains("websocket subscribed"))
            n = send(pg, DB17, ["res.partner", pid], {"type": "x",
                                                      "payload": 0})
            assert json.loads(await recv(ws))[0]["id"] == n
            odoo.logout(sid)
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    await recv(ws, 15)
            assert e.value.code == 4001

    run(main())


def test_same_origin_serves_cross_site_as_public(gateway, odoo, pg):
    gw = start(gateway, odoo, config="websocket_same_origin = true;\n")
    uid, pid = odoo.user(DB17, "dave")
    sid = odoo.login(DB17, uid)

    async def main():
        async with connect(gw, sid, org="http://evil.example") as bad, \
                connect(gw, sid) as good:
            await bad.send(subscribe((), last_id(pg)))
            await good.send(subscribe((), last_id(pg)))
            await await_until(lambda: gw.log().count("websocket subscribed") >= 2)
            n = send(pg, DB17, ["res.partner", pid], {"type": "p",
                                                      "payload": 0})
            assert json.loads(await recv(good))[0]["id"] == n
            assert await nothing(bad)

    run(main())
    assert gw.log_contains("is not the request's: served as public")


# --- timers ------------------------------------------------------------

def test_ping_then_close_without_pong(gateway, odoo):
    gw = start(gateway, odoo, config="websocket_ping_interval = 1;\n"
                                     "websocket_pong_timeout = 1;\n")
    s = open_raw(gw)
    s.settimeout(10)
    assert read_frame(s) == (0x9, b"")
    # no PONG: the TCP connection ends, without a close frame
    assert close_code(s) is None
    s.close()

    # a client that answers stays
    s = open_raw(gw)
    s.settimeout(10)
    for _ in range(3):
        assert read_frame(s) == (0x9, b"")
        s.sendall(frame(0xA))
    s.close()


def test_keep_alive_4002(gateway, odoo):
    gw = start(gateway, odoo, config="websocket_keep_alive = 2;\n")

    async def main():
        async with connect(gw) as ws:
            await ws.send(subscribe())
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    await recv(ws, 15)
            assert e.value.code == 4002

    run(main())


# --- stop and reload ---------------------------------------------------

def test_sigquit_closes_with_1001(gateway, odoo):
    gw = start(gateway, odoo)

    async def main():
        async with connect(gw) as ws:
            await ws.send(subscribe())
            await await_until(lambda: gw.log_contains("websocket subscribed"))
            gw.signal(signal.SIGQUIT)
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    await recv(ws, 15)
            assert e.value.code == 1001

    run(main())
    gw.wait(15)


def test_handshake_that_meets_a_retiring_worker_gets_4002(gateway, odoo):
    """An upgrade request already on its way to a worker when it retires
    (SIGHUP: its successor is up) is answered, then closed with the
    trickle's 4002, which Odoo's client follows at once, not with 1001"""
    gw = start(gateway, odoo, config="shutdown_timeout = 5;\n")
    s = Raw(socket.create_connection(("127.0.0.1", gw.port), timeout=10))
    # a first request answered: the old worker has accepted this connection
    s.sendall(b"GET /longpolling/health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"pass" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Upgrade: websocket\r\n" % gw.port).encode())
    gw.signal(signal.SIGHUP)
    gw.wait_log("retiring: parked polls are answered as usual")
    s.sendall(("Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\nOrigin: %s\r\n\r\n"
               % (key, origin(gw))).encode())
    head = read_head(s)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert close_code(s) == 4002
    s.close()


def _reload_sockets():
    """Sockets of the reload tests: the issue's 5,000 where this process
    may open them (LPGATE_WS_SOCKETS overrides; scripts/test.sh takes fewer
    under the sanitizers)"""
    import resource

    if "LPGATE_WS_SOCKETS" in os.environ:
        return int(os.environ["LPGATE_WS_SOCKETS"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 12000 and hard >= 12000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (12000, hard))
        soft = 12000
    return 5000 if soft >= 12000 else 300


RELOAD_SOCKETS = _reload_sockets()


@pytest.mark.parametrize("how", ["sighup", "binary-upgrade"])
def test_reload_4002_trickle_and_reconnect(gateway, odoo, pg, how):
    """SIGHUP (a new generation) or a binary upgrade (SIGUSR2, then
    SIGWINCH to the old master): the old workers close every socket with
    4002, spread over shutdown_timeout; every client reconnects with its
    last and gets the notification sent during the change, once."""
    from test_notify import read_pid

    n = RELOAD_SOCKETS
    gw = start(gateway, odoo, workers=2, config="shutdown_timeout = 3;\n")
    # opened before the sockets: psycopg waits with select(), which takes
    # descriptors below 1024 only
    conns = (pg.connect(DB17), pg.connect("postgres"))
    first = send(pg, DB17, ["hup"], {"type": "t", "payload": "before"},
                 conns)
    new_master = [0]
    retries = []

    def change():
        if how == "sighup":
            gw.signal(signal.SIGHUP)
            return
        gw.signal(signal.SIGUSR2)
        gw.wait_log("took over 2 listening socket(s)")
        new_master[0] = wait_until(
            lambda: (read_pid(gw.pidfile) not in (0, gw.pid)
                     and read_pid(gw.pidfile)), 10, what="the new pidfile")
        wait_until(lambda: gw.log().count("LISTEN connection up") >= 2, 10)
        gw.signal(signal.SIGWINCH)
        gw.wait_log("SIGWINCH: retiring the workers")

    async def client(i, during, results):
        last = first
        ids = []
        codes = []
        while True:
            try:
                async with connect(gw, open_timeout=20) as ws:
                    await ws.send(subscribe(["hup"], last))
                    while True:
                        got = json.loads(await recv(ws, 30))
                        for x in got:
                            ids.append(x["id"])
                            last = max(last, x["id"])
                        if during[0] in ids and 4002 in codes:
                            results[i] = (codes, ids)
                            return
            except (OSError, asyncio.TimeoutError,
                    websockets.InvalidHandshake) as e:
                # a connection the kernel queued on a listening socket of
                # the old generation: Odoo's client retries, so does this
                retries.append(repr(e))
                await asyncio.sleep(0.5)
                continue
            except websockets.ConnectionClosed as e:
                codes.append(e.code)
                if during[0] in ids:
                    # got it from the old worker before its 4002: it
                    # still reconnects, and nothing is sent twice
                    async with connect(gw, open_timeout=20) as ws:
                        await ws.send(subscribe(["hup"], last))
                        assert await nothing(ws, 0.5)
                    results[i] = (codes, ids)
                    return

    async def main():
        during = [-1]
        results = {}
        tasks = [asyncio.create_task(client(i, during, results))
                 for i in range(n)]
        await await_until(
            lambda: gw.log().count("websocket subscribed") >= n, 60)
        await asyncio.to_thread(change)
        # sent while the old generation closes its sockets
        await asyncio.sleep(1.0)
        during[0] = send(pg, DB17, ["hup"], {"type": "t",
                                             "payload": "during"}, conns)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        except asyncio.TimeoutError:
            pass
        return results

    try:
        results = run(main())
        assert len(results) == n, (len(results), gw.log().count("4002"))
        for codes, ids in results.values():
            # a reconnect can meet the other old worker as it retires: 4002
            # again (test_handshake_that_meets_a_retiring_worker_gets_4002)
            assert codes and set(codes) == {4002}, codes
            assert len(ids) == len(set(ids))
        # a trickle: the closes of each old worker spread over time
        assert gw.log_contains("closed with 4002 over")
        print("handshakes retried: %d %s" % (len(retries), retries[:3]))
    finally:
        conns[0].close()
        conns[1].close()
        if new_master[0]:
            os.kill(new_master[0], signal.SIGQUIT)
            wait_until(lambda: not alive(new_master[0]), 15)


# --- presence, metrics, limits ------------------------------------------

def test_update_presence_and_metrics(gateway, odoo, pg):
    from conftest import free_port
    from test_metrics import scrape, value

    admin = free_port()
    gw = start(gateway, odoo, args=["--admin-port", str(admin),
                                    "--presence-interval", "1"])
    uid, pid = odoo.user(DB17, "erin")
    sid = odoo.login(DB17, uid)

    async def main():
        async with connect(gw, sid) as ws:
            await ws.send(subscribe((), last_id(pg)))
            await ws.send(json.dumps({
                "event_name": "update_presence",
                "data": {"inactivity_period": 1000,
                         "im_status_ids_by_model": {}}}))
            # the batched presence writes of polls, for the socket's user
            await await_until(lambda: pg.sql(
                "SELECT count(*) FROM bus_presence WHERE user_id = %s",
                (uid,), dbname=DB17)[0][0] == 1, 20, "a bus_presence row")
            # no poll in this gateway: the histogram counts socket deliveries
            assert value(scrape(admin), "lpgate_delivery_seconds_count") == 0
            send(pg, DB17, ["res.partner", pid], {"type": "m", "payload": 0})
            await recv(ws)
            fams = scrape(admin)
            # the same delivery histogram as polls
            assert value(fams, "lpgate_delivery_seconds_count") == 1
            assert value(fams, "lpgate_websockets_open") == 1
            assert value(fams, "lpgate_websocket_messages_in_total") >= 2
            # the 101 head is not a frame: the notification batch is
            assert value(fams, "lpgate_websocket_frames_out_total") >= 1

    run(main())

    s = open_raw(gw)
    s.sendall(frame(0x1, b"{}", mask=False))
    assert close_code(s) == 1002
    s.close()
    wait_until(lambda: value(scrape(admin), "lpgate_websocket_closes_total",
                             code="1002") == 1, what="the 1002 counted")
    fams = scrape(admin)
    assert value(fams, "lpgate_websocket_closes_total", code="1000") == 1
    assert value(fams, "lpgate_websockets_open") == 0


def test_fd_limit_503_before_exhaustion(gateway, odoo):
    """Websockets count against the worker's connection margin like polls:
    past it, an upgrade gets 503 (never EMFILE), and a socket still works."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    gw = gateway(workers=1, preexec_fn=limit, config="session_retry = 1;\n",
                 extra_args=["-d", DB17, "--odoo-url", odoo.url,
                             "--log-level", "debug"])
    gw.wait_log('database "%s": Odoo' % DB17)

    # 128 - 32 - 8 = 88 connections at most
    socks = []
    refused = None
    for i in range(100):
        s, status, text = handshake(gw)
        if status != 101:
            refused = (i, status, text)
            s.close()
            break
        socks.append(s)
    assert refused is not None and refused[1] == 503, refused
    assert 80 <= refused[0] <= 88, refused
    # the open sockets still answer
    socks[0].sendall(frame(0x9, b"ok"))
    assert read_frame(socks[0]) == (0xA, b"ok")
    for s in socks:
        s.close()


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_17_subscribe_selects_discuss_channels(gateway, pg, addon):
    """Odoo 17's subscribe builds the channel list from its strings:
    `discuss.channel_<id>` asks for a channel the user may read (a public
    one even without a session).  The socket is keyed with what Odoo (or
    the built-in SQL) says for those strings; a private channel of another
    user is not, and the selector string is no channel itself."""
    import secrets

    db = "lpgtest17sel"
    odoo = OdooStandin({db: (create_database(pg, db, 17), 17)}).start()
    try:
        odoo.addon = addon
        tag = secrets.token_hex(3)
        uid, _ = odoo.user(db, "alice" + tag, groups=[42])
        _, bob = odoo.user(db, "bob" + tag)
        staff = odoo.discuss_channel(db, "staff" + tag, group_public_id=42)
        priv = odoo.discuss_channel(db, "priv" + tag, partners=[bob],
                                    channel_type="group")
        lobby = odoo.discuss_channel(db, "lobby" + tag)
        sid = odoo.login(db, uid)
        gw = start(gateway, odoo, db=db)
        asked = ["discuss.channel_%d" % staff, "discuss.channel_%d" % priv]

        async def main():
            async with connect(gw, sid) as a, connect(gw) as anon:
                last = last_id(pg, db)
                await a.send(subscribe(asked, last))
                # no cookie: a public channel asked for by its string
                await anon.send(subscribe(
                    ["discuss.channel_%d" % lobby,
                     "discuss.channel_%d" % staff], last))
                await await_until(
                    lambda: gw.log().count("websocket subscribed") >= 2)
                pg.send(db, [db, "discuss.channel", priv], {"priv": 1})
                pg.send(db, [db, "discuss.channel_%d" % staff],
                        {"string": 1})
                t = pg.send(db, [db, "discuss.channel", staff], {"staff": 1})
                got = json.loads(await recv(a))
                while got[-1]["id"] < t:
                    got += json.loads(await recv(a))
                # readable and asked for: delivered; bob's private group
                # and the selector string itself: not
                assert [x["message"] for x in got] == [{"staff": 1}]
                u = pg.send(db, [db, "discuss.channel", lobby], {"lobby": 1})
                got = json.loads(await recv(anon))
                # the public one only (staff is group 42's)
                assert [x["id"] for x in got] == [u], got

        run(main())
        if addon:
            bodies = [json.loads(b)["params"]["channels"]
                      for b in odoo.bodies("/lpgate/session")]
            assert sorted(asked) in bodies, bodies
    finally:
        odoo.stop()


@pytest.mark.parametrize("how", ["max_answer_size", "send_timeout"])
def test_client_that_stops_reading_is_cut(gateway, odoo, pg, how):
    """A client that never reads: its output queue past max_answer_size
    cuts it, and so does output blocked for send_timeout (the other limit
    set out of reach each time)."""
    config = ("max_answer_size = 65536;\nsend_timeout = 3600;\n"
              if how == "max_answer_size" else
              "max_answer_size = 268435456;\nsend_timeout = 1;\n")
    gw = start(gateway, odoo, config=config)
    want = ("client too slow" if how == "max_answer_size"
            else "client stopped reading")

    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", gw.port))
    s.sendall(("GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Origin: %s\r\n\r\n" % (key, origin(gw))).encode())
    s.settimeout(10)
    head = read_head(s, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(frame(0x1, subscribe(["slow"], last_id(pg)).encode()))
    wait_until(lambda: gw.log_contains("websocket subscribed"))

    # 30 KB notifications until lpgate cuts the reader (the kernel's socket
    # buffers take some first); never read
    conns = (pg.connect(DB17), pg.connect("postgres"))
    big = "x" * 30000
    for i in range(2000):
        send(pg, DB17, ["slow"], {"type": "t", "payload": [i, big]}, conns)
        if gw.log_contains(want):
            break
    wait_until(lambda: gw.log_contains(want), 30, what=want)

    # the connection is gone: draining it ends in EOF or a reset
    s.settimeout(10)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    s.close()
