"""<path>/socket.io/, the Socket.IO v4 server (issue 14, item 3): the
unmodified socket.io-client from npm (tests/socketio, installed by
scripts/deps.sh) driven in node by tests/socketio/sio_client.mjs, against
a real lpgate and real PostgreSQL; records published with
contrib/sql/lpgate.sql's lpgate_send().  Raw HTTP and websocket requests
check engine.io's errors and the limits.
"""

import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

from apps import DB, publish, sql, start  # noqa: F401 (sql: a fixture)
from conftest import SRCDIR, free_port, wait_until
from odoo_standin import OdooStandin


SIO_DIR = os.path.join(SRCDIR, "tests", "socketio")
NODE = shutil.which("node")
PATH = "/longpolling/socket.io/"

pytestmark = pytest.mark.skipif(
    NODE is None or not os.path.isdir(
        os.path.join(SIO_DIR, "node_modules", "socket.io-client")),
    reason="node or tests/socketio's socket.io-client is missing "
           "(scripts/deps.sh)")


def last_id(pg):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=DB)[0][0]


class Node:
    """tests/socketio/sio_client.mjs: socket.io-client in node; or another
    driver speaking its protocol (tests/socketio/sio_driver.mjs), such as
    tests/e2e/sio_browser.mjs (the client in Chromium)."""

    def __init__(self, script=os.path.join(SIO_DIR, "sio_client.mjs")):
        self.proc = subprocess.Popen(
            [NODE, script], cwd=os.path.dirname(script),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            bufsize=1)
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait("ready")

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait(self, ev, timeout=15, **match):
        """The next event ev (with the given fields) not consumed yet."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.seen):
                if e["ev"] == ev and all(e.get(k) == v
                                         for k, v in match.items()):
                    return self.seen.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s %r in %r" % (ev, match,
                                                         self.seen))
            try:
                self.seen.append(self.events.get(timeout=left))
            except queue.Empty:
                pass

    def connect(self, cid, port, nsp="/", transports=None, auth=None,
                track_last=False, subscribe=None, **opts):
        o = {"path": PATH, "query": {"db": DB}}
        if transports:
            o["transports"] = transports
        if auth is not None:
            o["auth"] = auth
        o.update(opts)
        self.send(op="connect", id=cid,
                  url="http://127.0.0.1:%d%s" % (port, nsp), opts=o,
                  track_last=track_last, subscribe=subscribe)

    def emit(self, cid, event, *args, ack=True):
        tag = "%s-%s-%f" % (cid, event, time.monotonic())
        self.send(op="emit", id=cid, event=event, args=list(args),
                  tag=tag if ack else None)
        if ack:
            return self.wait("ack", id=cid, tag=tag)["args"]
        return None

    def notifications(self, cid, n, timeout=15):
        return [self.wait("notification", timeout, id=cid)["n"]
                for _ in range(n)]

    def nothing(self, cid, ev="notification", timeout=1.0):
        with pytest.raises(AssertionError):
            self.wait(ev, timeout, id=cid)

    def close(self):
        try:
            self.send(op="exit")
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def node():
    clients = []

    def make():
        c = Node()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def roundtrip(pg, client, cid, nsp_prefix=""):
    """subscribe, then what lpgate_send() publishes arrives, in order."""
    ack = client.emit(cid, "subscribe", ["a", "b"])
    assert ack == [{"channels": ["a", "b"]}]
    i = publish(pg, nsp_prefix + "a", {"n": 1})
    publish(pg, nsp_prefix + "c", {"n": 2})
    j = publish(pg, nsp_prefix + "b", {"n": 3, "s": "\u00e9"})
    assert client.notifications(cid, 2) == [
        {"id": i, "channel": "a", "message": {"n": 1}},
        {"id": j, "channel": "b", "message": {"n": 3, "s": "\u00e9"}}]


def connect_and_roundtrip(pg, c, port, transports=None):
    """Client "c" connects over transports (None: polling, then the
    upgrade to websocket) and gets what is published; the engine's
    transport is the expected one."""
    c.connect("c", port, transports=transports)
    # the upgrade may be over before the Socket.IO connect is
    ev = c.wait("connect", id="c")
    if transports:
        assert ev["transport"] == transports[0]
    else:
        assert c.wait("upgrade", id="c")["transport"] == "websocket"
    roundtrip(pg, c, "c")
    c.send(op="transport", id="c")
    assert c.wait("transport", id="c")["transport"] == \
        (transports or ["websocket"])[0]


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]],
                         ids=["polling", "websocket"])
def test_one_transport(pg, gateway, sql, node, transports):
    gw = start(gateway)
    c = node()
    connect_and_roundtrip(pg, c, gw.port, transports)

    # a namespace is a channel prefix: /chat serves chat/<name>
    c.connect("chat", gw.port, nsp="/chat", transports=transports)
    c.wait("connect", id="chat")
    roundtrip(pg, c, "chat", "chat/")
    # ... and the default namespace got none of them
    c.nothing("c")

    # unsubscribe: nothing more of that channel
    assert c.emit("c", "unsubscribe", ["a"]) == [{"channels": ["b"]}]
    publish(pg, "a", {"n": 4})
    k = publish(pg, "b", {"n": 5})
    assert [n["id"] for n in c.notifications("c", 1)] == [k]


def test_polling_then_upgrade(pg, gateway, sql, node):
    from test_metrics import scrape, value
    admin = free_port()
    gw = start(gateway, args=["--admin-port", str(admin)])
    c = node()
    connect_and_roundtrip(pg, c, gw.port)
    gw.wait_log("upgraded")

    # the metrics: an open session, its websocket, the deliveries
    m = scrape(admin)
    assert value(m, "lpgate_transport_connections_open",
                 transport="socketio") == 1
    assert value(m, "lpgate_transport_deliveries_total",
                 transport="socketio") == 2
    assert value(m, "lpgate_socketio_websockets_open") == 1
    c.send(op="close", id="c")
    wait_until(lambda: value(scrape(admin), "lpgate_transport_connections_open",
                             transport="socketio") == 0, 10)


def test_publish_and_acks(pg, gateway, sql, node):
    # send_channels names the channels: the namespace's prefix included
    gw = start(gateway, config='allow_send = true;\n'
                               'send_channels = "chat/room-*";\n')
    c = node()
    c.connect("c", gw.port, nsp="/chat", transports=["websocket"])
    c.wait("connect", id="c")
    assert c.emit("c", "subscribe", {"channels": ["room-1"]}) == [
        {"channels": ["room-1"]}]
    # publish: the send route's rules, on the namespace's channel
    [ack] = c.emit("c", "publish", {"channel": "room-1", "message": {"t": 1}})
    assert isinstance(ack["id"], int)
    [n] = c.notifications("c", 1)
    assert n == {"id": ack["id"], "channel": "room-1", "message": {"t": 1}}
    assert pg.sql("SELECT channel FROM bus_bus WHERE id = %s", (ack["id"],),
                  dbname=DB) == [('"chat/room-1"',)]
    # a channel send_channels does not open, a bad publish, an unknown
    # event: the ack says why
    assert c.emit("c", "publish", {"channel": "other", "message": 1}) == [
        {"error": "send: this channel is not open to clients "
                  "(send_channels)"}]
    assert c.emit("c", "publish", {"channel": "room-1"}) == [
        {"error": "publish takes {\"channel\", \"message\"}"}]
    assert c.emit("c", "nope", 1) == [{"error": "unknown event"}]
    assert c.emit("c", "subscribe", "x") == [
        {"error": "channels must be a non-empty array of strings"}]
    # without an ack: an `error` event
    c.emit("c", "subscribe", [1], ack=False)
    e = c.wait("error", id="c")["e"]
    assert e == {"message": "a channel must be a string of 1 to 512 bytes",
                 "event": "subscribe"}
    c.nothing("c")


def test_publish_off_by_default(pg, gateway, sql, node):
    gw = start(gateway)
    c = node()
    c.connect("c", gw.port, transports=["polling"])
    c.wait("connect", id="c")
    assert c.emit("c", "publish", {"channel": "a", "message": 1}) == [
        {"error": "send: not allowed here (allow_send)"}]


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], None],
                         ids=["polling", "websocket", "upgrade"])
def test_reconnect_with_last(pg, gateway, sql, node, transports):
    """The client keeps the largest id it saw and passes it as auth.last
    at each reconnect: what was published meanwhile comes, once."""
    reconnect_rounds(pg, node(), start(gateway).port, transports)


def reconnect_rounds(pg, c, port, transports):
    """Three drops of client c's transport, each with records published
    while it is away: every one arrives once, in order."""
    sent = [publish(pg, "r", {"before": 1})]
    c.connect("c", port, transports=transports, track_last=True,
              auth={"last": sent[0] - 1})
    c.wait("connect", id="c")
    c.emit("c", "subscribe", ["r"])
    got = c.notifications("c", 1)
    sent.append(publish(pg, "r", {"n": 1}))
    got += c.notifications("c", 1)

    for rnd in range(3):
        c.send(op="drop", id="c")
        c.wait("disconnect", id="c")
        # published while the client is away
        sent += [publish(pg, "r", {"round": rnd, "k": k}) for k in range(3)]
        c.wait("connect", id="c")
        # a fresh session: subscribe again, from auth.last
        c.emit("c", "subscribe", ["r"])
        sent.append(publish(pg, "r", {"round": rnd, "after": 1}))
        got += c.notifications("c", 4)

    assert [n["id"] for n in got] == sent
    c.nothing("c")


NAMESPACES = 'socketio_namespaces = "/, /chat*";\n'


def test_refused_namespace(pg, gateway, sql, node):
    gw = start(gateway, config=NAMESPACES)
    c = node()
    refused_namespace(c, gw.port)
    # a bad auth is refused too
    c.connect("bad", gw.port, auth={"last": "x"})
    assert c.wait("connect_error", id="bad")["message"] == \
        "auth.last must be an integer >= 0"


def refused_namespace(c, port):
    """With NAMESPACES, /private is refused over either transport and
    /chat-2 accepted."""
    for t in (["polling"], ["websocket"]):
        cid = "x" + t[0]
        c.connect(cid, port, nsp="/private", transports=t,
                  reconnection=False)
        assert c.wait("connect_error", id=cid)["message"] == \
            "Invalid namespace"
    c.connect("ok", port, nsp="/chat-2")
    c.wait("connect", id="ok")


def test_several_workers(pg, gateway, sql, node):
    """Polling requests of one sid reach whichever worker the kernel
    picks (a new connection each: agent false); the others hand them to
    the sid's worker, and the session works as on one."""
    gw = start(gateway, workers=3)
    c = node()
    for i in range(4):
        c.connect("c%d" % i, gw.port, transports=["polling"], agent=False)
    for i in range(4):
        c.wait("connect", id="c%d" % i)
        c.emit("c%d" % i, "subscribe", ["w"])
    sent = []
    for k in range(5):
        sent.append(publish(pg, "w", {"k": k}))
        for i in range(4):
            assert [n["id"] for n in c.notifications("c%d" % i, 1)] == \
                [sent[-1]]
    assert "handoff: a connection went to worker#" in gw.log()
    assert "Session ID unknown" not in gw.log()
    # upgrades land anywhere too
    c.connect("u", gw.port, agent=False)
    c.wait("upgrade", id="u")
    c.emit("u", "subscribe", ["w"])
    i = publish(pg, "w", {"u": 1})
    assert [n["id"] for n in c.notifications("u", 1)] == [i]


# --- raw engine.io: errors and limits ---------------------------------------

def eio(gw, method="GET", query="EIO=4&transport=polling", body=None,
        timeout=10):
    status, headers, data = gw.http(method, PATH + "?" + query, body,
                                    timeout=timeout)
    return status, data.decode()


def handshake(gw, db=DB):
    status, data = eio(gw, query="EIO=4&transport=polling&db=" + db)
    assert status == 200, data
    assert data.startswith("0{"), data
    return json.loads(data[1:])


def post(gw, sid, payload):
    return eio(gw, "POST", "EIO=4&transport=polling&sid=" + sid, payload)


def get(gw, sid, timeout=10):
    return eio(gw, "GET", "EIO=4&transport=polling&sid=" + sid,
               timeout=timeout)


def packets(gw, sid, n):
    """The next n packets, over as many polls as it takes."""
    out = []
    while len(out) < n:
        status, data = get(gw, sid)
        assert status == 200, data
        out += [p for p in data.split("\x1e") if p != "2"]
    assert len(out) == n, out
    return out


def error(code, message):
    return (400, json.dumps({"code": code, "message": message},
                            separators=(",", ":")))


def test_open_packet_and_engineio_errors(pg, gateway, sql):
    gw = start(gateway, config="socketio_ping_interval = 7;\n"
                               "socketio_ping_timeout = 3;\n"
                               "socketio_max_payload = 5000;\n")
    o = handshake(gw)
    assert set(o) == {"sid", "upgrades", "pingInterval", "pingTimeout",
                      "maxPayload"}
    assert o["upgrades"] == ["websocket"]
    assert (o["pingInterval"], o["pingTimeout"], o["maxPayload"]) == \
        (7000, 3000, 5000)
    assert len(o["sid"]) == 20

    assert eio(gw, query="EIO=4&transport=foo") == \
        error(0, "Transport unknown")
    assert eio(gw, query="EIO=4") == error(0, "Transport unknown")
    assert eio(gw, query="EIO=3&transport=polling") == \
        error(5, "Unsupported protocol version")
    assert eio(gw, query="transport=polling") == \
        error(5, "Unsupported protocol version")
    assert eio(gw, "POST", body="40") == error(2, "Bad handshake method")
    assert eio(gw, "PUT") == error(2, "Bad handshake method")
    assert get(gw, "nope") == error(1, "Session ID unknown")
    assert get(gw, "00" + "x" * 18) == error(1, "Session ID unknown")
    # a websocket transport without the upgrade
    assert eio(gw, query="EIO=4&transport=websocket") == \
        error(3, "Bad request")
    assert eio(gw, query="EIO=4&transport=websocket&sid=" + o["sid"]) == \
        error(3, "Bad request")
    # a payload over maxPayload
    status, _ = post(gw, o["sid"], "4" + "x" * 5000)
    assert status == 413
    # a bad payload ends the session
    assert post(gw, o["sid"], "40\x1e\x1e3") == error(3, "Bad request")
    assert get(gw, o["sid"]) == error(1, "Session ID unknown")

    # two polls at once end the session; the parked one gets the close
    o = handshake(gw)
    first = Gateway_pool.submit(get, gw, o["sid"])
    wait_until(lambda: gw.log().count("socket.io") and first.running(), 5)
    time.sleep(0.3)
    assert get(gw, o["sid"]) == error(3, "Bad request")
    assert first.result() == (200, "1")
    assert get(gw, o["sid"]) == error(1, "Session ID unknown")


def test_socketio_packet_errors(pg, gateway, sql):
    gw = start(gateway, config="max_channels_per_poll = 2;\n")
    sid = handshake(gw)["sid"]
    # each bad packet: 44 with why, on its namespace
    assert post(gw, sid, "4x\x1e42[\"a\"\x1e451-[\"x\"]\x1e"
                         "42/chat,[\"subscribe\",[\"a\"]]") == (200, "ok")
    status, data = get(gw, sid)
    assert status == 200
    assert data.split("\x1e") == [
        '44{"message":"unknown packet type"}',
        '44{"message":"invalid payload: not JSON"}',
        '44{"message":"binary packets are not supported"}',
        '44/chat,{"message":"not connected to this namespace"}']
    # the session goes on: connect, too many channels, an unknown event
    assert post(gw, sid, "40\x1e421[\"subscribe\",[\"a\",\"b\",\"c\"]]"
                         "\x1e422[\"subscribe\",[\"a\"]]\x1e"
                         "423[\"x\"]") == (200, "ok")
    p = packets(gw, sid, 4)
    assert p[0].startswith('40{"sid":"'), p
    assert p[1:] == [
        '431[{"error":"too many channels on one connection '
        '(max_channels_per_poll)"}]',
        '432[{"channels":["a"]}]',
        '433[{"error":"unknown event"}]']
    # a second connect to the same namespace: refused, and it leaves
    assert post(gw, sid, "40") == (200, "ok")
    assert get(gw, sid) == (200, '44{"message":"already connected to this '
                                 'namespace"}')
    # the client's close packet ends the session
    assert post(gw, sid, "1") == (200, "ok")
    assert get(gw, sid) == error(1, "Session ID unknown")


def test_namespaces_per_session_are_capped(pg, gateway, sql):
    gw = start(gateway)
    sid = handshake(gw)["sid"]
    # 32 namespaces connect; the 33rd is refused and the others stay
    assert post(gw, sid, "\x1e".join("40/n%d," % i for i in range(33))) \
        == (200, "ok")
    p = packets(gw, sid, 33)
    for i in range(32):
        assert p[i].startswith('40/n%d,{"sid":"' % i), p[i]
    assert p[32] == ('44/n32,{"message":"too many namespaces on one '
                     'connection"}')
    assert post(gw, sid, '42/n31,5["subscribe",["a"]]') == (200, "ok")
    assert packets(gw, sid, 1) == ['43/n31,5[{"channels":["a"]}]']


Gateway_pool = __import__("concurrent.futures").futures.ThreadPoolExecutor(8)


def test_ping_timeout_and_pong(pg, gateway, sql):
    gw = start(gateway, config="socketio_ping_interval = 1;\n"
                               "socketio_ping_timeout = 1;\n")
    alive = handshake(gw)["sid"]
    silent = handshake(gw)["sid"]
    # the server's ping comes in a poll; answering it keeps the session
    for _ in range(3):
        assert get(gw, alive) == (200, "2")
        assert post(gw, alive, "3") == (200, "ok")
    # a client that never answers is gone
    wait_until(lambda: "session %s: ping timeout" % silent in gw.log(), 10)
    assert get(gw, silent) == error(1, "Session ID unknown")
    assert get(gw, alive) == (200, "2")


def test_queue_limit_ends_the_session(pg, gateway, sql):
    gw = start(gateway, config="max_answer_size = 65536;\n")
    sid = handshake(gw)["sid"]
    assert post(gw, sid, "40\x1e421[\"subscribe\",[\"q\"]]") == (200, "ok")
    status, data = get(gw, sid)
    assert data.split("\x1e")[1] == '431[{"channels":["q"]}]'
    # nobody polls: the output waits, up to max_answer_size
    for k in range(20):
        publish(pg, "q", {"k": k, "pad": "x" * 5000})
    wait_until(lambda: "(max_answer_size): closed" in gw.log(), 10)
    assert get(gw, sid) == error(1, "Session ID unknown")


def test_sessions_past_the_fd_margin_get_503(pg, gateway, sql):
    """Sessions hold no descriptor between polls, but memory: a worker
    keeps at most as many as its connection margin (the fd limit less its
    own descriptors), then answers 503 before anything runs out."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    gw = gateway(workers=1, preexec_fn=limit,
                 extra_args=["--log-level", "debug"])
    gw.wait_log('database "%s": Odoo' % DB)
    statuses = [eio(gw, query="EIO=4&transport=polling")[0]
                for _ in range(100)]
    n = statuses.count(200)
    assert 0 < n < 100 and statuses[n:] == [503] * (100 - n), statuses
    assert gw.health()[0] == 200


def test_websocket_message_too_big(pg, gateway, sql):
    import asyncio
    import websockets

    gw = start(gateway, config="socketio_max_payload = 2000;\n")

    async def main():
        async with websockets.connect(
                "ws://127.0.0.1:%d%s?EIO=4&transport=websocket" %
                (gw.port, PATH), ping_interval=None) as ws:
            assert (await ws.recv()).startswith("0{")
            await ws.send("40")
            assert (await ws.recv()).startswith("40{")
            await ws.send("42" + json.dumps(["x", "y" * 2000]))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 1009
        async with websockets.connect(
                "ws://127.0.0.1:%d%s?EIO=4&transport=websocket" %
                (gw.port, PATH), ping_interval=None) as ws:
            assert (await ws.recv()).startswith("0{")
            await ws.send(b"\x04binary")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 1002

    asyncio.run(main())


@pytest.fixture
def odoo(pg):
    s = OdooStandin({DB: (pg.dsn(DB), 14)}).start()
    yield s
    s.stop()


def test_odoo_session(pg, gateway, sql, node, odoo):
    """auth.session (or the handshake's session_id cookie) is asked of Odoo
    as a poll's: a session it vouches for connects and joins the
    session's channels; another gets 44 before anything is joined."""
    uid, pid = odoo.user(DB, "alice")
    sid = odoo.login(DB, uid)
    gw = start(gateway, args=["--odoo-url", odoo.url])
    c = node()
    for t in (["polling"], ["websocket"]):
        cid = "alice-" + t[0]
        c.connect(cid, gw.port, transports=t, auth={"session": sid})
        c.wait("connect", id=cid)
        c.emit(cid, "subscribe", ["pub"])
    c.connect("forged", gw.port, auth={"session": "f" * 40},
              reconnection=False)
    assert c.wait("connect_error", id="forged")["message"] == \
        "invalid session"
    c.connect("bad", gw.port, auth={"session": "a; b"}, reconnection=False)
    assert c.wait("connect_error", id="bad")["message"] == \
        "auth.session must be a session id"

    # the partner's channel (the session's), then a public one
    i = pg.send(DB, [DB, "res.partner", pid], {"to": "alice"})
    j = publish(pg, "pub", {"all": 1})
    for t in ("polling", "websocket"):
        assert c.notifications("alice-" + t, 2) == [
            {"id": i, "channel": [DB, "res.partner", pid],
             "message": {"to": "alice"}},
            {"id": j, "channel": "pub", "message": {"all": 1}}]
    assert odoo.count("/lpgate/session") >= 1

    # the handshake's cookie works the same (raw engine.io)
    status, _, data = gw.http(
        "GET", PATH + "?EIO=4&transport=polling",
        headers={"Cookie": "session_id=" + "f" * 40})
    esid = json.loads(data[1:])["sid"]
    assert post(gw, esid, "40") == (200, "ok")
    assert get(gw, esid) == (200, '44{"message":"invalid session"}')
