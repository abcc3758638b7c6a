"""Past one machine (issue 15), the other transports: Socket.IO, the plain
WebSocket API (<path>/ws) and Server-Sent Events (<path>/sse) through two
lpgate nodes behind Debian's haproxy and nginx running the shipped
configs (tests/integration/cluster.py).

Socket.IO's polling transport is sticky: the unmodified socket.io-client
(tests/socketio, in node, with its cookie jar: withCredentials) polls
many times in one engine.io session, every request on the node that made
it (no "Session ID unknown", no reconnect).  Then that node is killed
(SIGKILL) or drained (SIGQUIT) while notifications are published: every
client of every transport reconnects through the balancer to the other
node with its last (auth.last, subscribe's last, Last-Event-ID) and has
every notification exactly once, in order.
"""

import asyncio
import http.client
import json
import re
import signal
import threading
import time

import pytest
import websockets

from cluster import app_port, balancer, cluster, kill_node  # noqa: F401
from conftest import wait_until
from test_cluster import KINDS, start_nodes
from test_socketio import node, sql  # noqa: F401
from test_socketio import pytestmark as needs_socketio_client
from test_sse import Stream, sse_path

DB = "lpgtest"


class Publisher:
    """Publishes n notifications on channel, one every 50 ms, calling
    during() before the one numbered at; sent holds the ids."""

    def __init__(self, pg, channel):
        self.pg, self.channel, self.sent = pg, channel, []
        self.conns = (pg.connect(DB), pg.connect("postgres"))

    def top(self):
        [(n,)] = self.conns[0].execute(
            "SELECT coalesce(max(id), 0) FROM bus_bus").fetchall()
        return n

    def run(self, n, during=None, at=None):
        for i in range(n):
            if during is not None and i == at:
                during()
            self.sent.append(self.pg.send(DB, self.channel,
                                          {"n": len(self.sent)},
                                          conns=self.conns))
            time.sleep(0.05)

    def close(self):
        self.conns[0].close()
        self.conns[1].close()


@pytest.fixture
def publisher(pg):
    made = []

    def make(channel):
        p = Publisher(pg, channel)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def away(gw, how):
    """The node goes away: killed outright or drained."""
    if how == "kill":
        kill_node(gw)
    else:
        gw.signal(signal.SIGQUIT)


# --- Socket.IO, polling only ------------------------------------------------

SESSION_OPENED = re.compile(r"socket\.io: session \S+ opened")


@needs_socketio_client
@pytest.mark.parametrize("how", ["kill", "drain"])
@pytest.mark.parametrize("kind", KINDS)
def test_socketio_polling_is_sticky_and_moves(pg, cluster, balancer, sql,
                                              node, publisher, kind, how):
    nodes = start_nodes(cluster, 2, drain_delay=3)
    b = balancer(kind, nodes)
    pub = publisher("sio")
    base = pub.top()
    c = node()
    cids = ["c%d" % i for i in range(4)]
    for cid in cids:
        # withCredentials: the node client keeps haproxy's cookie
        c.connect(cid, b.port, transports=["polling"], track_last=True,
                  auth={"last": base}, subscribe=["sio"],
                  withCredentials=True)
    for cid in cids:
        assert c.wait("connect", id=cid)["transport"] == "polling"
        assert c.wait("subscribed", id=cid)["args"] == [{"channels": ["sio"]}]

    # many polls of each session, each on the session's node
    pub.run(15)
    got = {cid: [n["id"] for n in c.notifications(cid, 15)] for cid in cids}
    for gw in nodes:
        assert "Session ID unknown" not in gw.log()
    for cid in cids:
        c.nothing(cid, "disconnect", 0.1)
        c.nothing(cid, "connect", 0.1)
    sessions = [len(SESSION_OPENED.findall(gw.log())) for gw in nodes]
    assert sum(sessions) == len(cids), sessions
    # the node with sessions goes away under traffic; its clients move
    victim = nodes[0] if sessions[0] else nodes[1]
    pub.run(30, lambda: away(victim, how), 10)
    if how == "drain":
        # nginx leaves the sessions on it until it ends them
        assert victim.wait(20) == 0
    pub.run(10)

    moved = 0
    for cid in cids:
        while not got[cid] or got[cid][-1] < pub.sent[-1]:
            got[cid].append(c.wait("notification", 30, id=cid)["n"]["id"])
        assert got[cid] == pub.sent, (cid, got[cid], pub.sent)
        c.nothing(cid, "notification", 0.3)
        if any(e["ev"] == "connect" and e["id"] == cid for e in c.seen):
            moved += 1
    assert moved >= 1


# --- the plain WebSocket API ------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_ws_api_resumes_on_another_node(pg, cluster, balancer, sql,
                                        publisher, kind):
    nodes = start_nodes(cluster, 2)
    b = balancer(kind, nodes)
    url = "ws://127.0.0.1:%d/longpolling/ws" % b.port
    pub = publisher("wsa")
    base = pub.top()
    n_clients = 6
    final = [None]

    async def client(got, closes):
        last = base
        while final[0] is None or last < final[0]:
            try:
                async with websockets.connect(url, ping_interval=None,
                                              open_timeout=10) as ws:
                    await ws.send(json.dumps({"op": "subscribe",
                                              "channels": ["wsa"],
                                              "last": last}))
                    while final[0] is None or last < final[0]:
                        try:
                            text = await asyncio.wait_for(ws.recv(), 1)
                        except asyncio.TimeoutError:
                            continue
                        msg = json.loads(text)
                        if isinstance(msg, dict):
                            assert msg == {"op": "subscribe",
                                           "channels": ["wsa"]}, msg
                            continue
                        for r in msg:
                            got.append(r["id"])
                            last = max(last, r["id"])
            except websockets.ConnectionClosed as e:
                closes.append(e.code)
            except (OSError, asyncio.TimeoutError,
                    websockets.InvalidHandshake) as e:
                closes.append(repr(e))
                await asyncio.sleep(0.3)

    async def main():
        results = [([], []) for _ in range(n_clients)]
        tasks = [asyncio.create_task(client(*r)) for r in results]
        await asyncio.to_thread(
            wait_until, lambda: sum(n.log().count("ws subscribed")
                                    for n in nodes) >= n_clients, 15)
        on_first = nodes[0].log().count("ws subscribed")
        await asyncio.to_thread(pub.run, 20, lambda: kill_node(nodes[0]), 5)
        final[0] = pub.sent[-1]
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return results, on_first

    results, on_first = asyncio.run(main())
    assert on_first > 0
    moved = 0
    for got, closes in results:
        assert got == pub.sent, (got, pub.sent, closes)
        moved += bool(closes)
    assert moved >= 1


# --- Server-Sent Events -----------------------------------------------------

class SseClient(threading.Thread):
    """An EventSource through the balancer (http.client: nginx answers
    HTTP/1.1 clients chunked and keeps the connection when the stream
    ends): reads events, and when the stream ends, fails or is quiet for
    a few seconds opens a new one with Last-Event-ID."""

    def __init__(self, port, channel, last, final):
        super().__init__(daemon=True)
        self.port, self.channel, self.last, self.final = (port, channel,
                                                          last, final)
        self.ids, self.breaks = [], []

    def done(self):
        return self.final[0] is not None and self.last >= self.final[0]

    def run(self):
        deadline = time.monotonic() + 90
        while not self.done() and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                              timeout=3)
            try:
                conn.request("GET", sse_path([self.channel]), headers={
                    "Accept": "text/event-stream",
                    "Last-Event-ID": str(self.last)})
                r = conn.getresponse()
                if r.status != 200:
                    self.breaks.append(r.status)
                    time.sleep(0.3)
                    continue
                ev_id = None
                while not self.done():
                    line = r.readline()
                    if not line:
                        self.breaks.append("end")
                        break
                    line = line.rstrip(b"\r\n")
                    if line.startswith(b"id:"):
                        ev_id = int(line[3:])
                    elif not line and ev_id is not None:
                        self.ids.append(ev_id)
                        self.last = max(self.last, ev_id)
                        ev_id = None
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.breaks.append(repr(e))
                time.sleep(0.3)
            finally:
                conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_sse_resumes_on_another_node(pg, cluster, balancer, publisher, kind):
    nodes = start_nodes(cluster, 2)
    b = balancer(kind, nodes)
    pub = publisher("ssec")
    final = [None]
    clients = [SseClient(b.port, "ssec", pub.top(), final) for _ in range(6)]
    for t in clients:
        t.start()
    wait_until(lambda: sum(n.log().count("sse stream open") for n in nodes)
               >= len(clients), 15, what="the streams")
    on_first = nodes[0].log().count("sse stream open")
    pub.run(20, lambda: kill_node(nodes[0]), 5)
    final[0] = pub.sent[-1]
    for t in clients:
        t.join(60)
    assert on_first > 0
    moved = 0
    for t in clients:
        assert t.ids == pub.sent, (t.ids, pub.sent, t.breaks)
        moved += bool(t.breaks)
    assert moved >= 1


# --- a last from a node ahead -----------------------------------------------

@pytest.mark.parametrize("transport", ["sse", "ws", "socketio",
                                       "socketio-subscribe"])
def test_last_from_a_node_ahead_is_not_replayed(pg, cluster, sql, node,
                                                publisher, transport):
    """As a poll's (test_cluster.py): node B's master has not fetched the
    id the client had from node A (stopped here, for the milliseconds it
    lags in life).  The stream resuming on B from that last must not take
    it for a stale id and replay from B's cursor: the client would get
    that notification twice."""
    b = start_nodes(cluster, 1)[0]
    pub = publisher("ahead")
    b.signal(signal.SIGSTOP)
    try:
        pub.run(1)
        [x] = pub.sent
        if transport == "sse":
            s = Stream(b.port, sse_path(["ahead"]),
                       headers={"Last-Event-ID": str(x)})
            assert s.head()[0] == 200
        elif transport == "ws":
            async def subscribe():
                ws = await websockets.connect(
                    "ws://127.0.0.1:%d/longpolling/ws" % b.port,
                    ping_interval=None)
                await ws.send(json.dumps({"op": "subscribe",
                                          "channels": ["ahead"], "last": x}))
                return ws
            loop = asyncio.new_event_loop()
            ws = loop.run_until_complete(subscribe())
        elif transport == "socketio":
            c = node()
            c.connect("c", b.port, transports=["websocket"],
                      auth={"last": x}, subscribe=["ahead"])
        else:
            c = node()
            c.connect("c", b.port, transports=["websocket"],
                      subscribe={"channels": ["ahead"], "last": x})
        # it waits (at most 2 s) for B's master, stopped
        b.wait_log("above this node's largest id")
        time.sleep(0.5)
    finally:
        b.signal(signal.SIGCONT)
    pub.run(1)
    y = pub.sent[-1]
    if transport == "sse":
        assert s.event()[0] == y
        s.close()
    elif transport == "ws":
        async def records():
            out = []
            while not out or out[-1]["id"] < y:
                got = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if isinstance(got, list):
                    out += got
            await ws.close()
            return [r["id"] for r in out]
        assert loop.run_until_complete(records()) == [y]
        loop.close()
    else:
        assert [n["id"] for n in c.notifications("c", 1)] == [y]
        c.nothing("c", timeout=0.3)


def test_last_above_every_id_is_stale(pg, cluster, sql, node, publisher):
    """After the fetch it waited for, a last still above every id (a reset
    database, an old client) is stale: the client gets what comes next."""
    gw = start_nodes(cluster, 1)[0]
    pub = publisher("stale")
    far = pub.top() + 1000

    async def ws_client():
        async with websockets.connect(
                "ws://127.0.0.1:%d/longpolling/ws" % gw.port,
                ping_interval=None) as ws:
            await ws.send(json.dumps({"op": "subscribe",
                                      "channels": ["stale"], "last": far}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack == {"op": "subscribe", "channels": ["stale"]}
            await asyncio.to_thread(pub.run, 1)
            got = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [r["id"] for r in got]

    assert asyncio.run(ws_client()) == [pub.sent[-1]]

    c = node()
    c.connect("auth", gw.port, transports=["websocket"],
              auth={"last": far}, subscribe=["stale"])
    c.connect("sub", gw.port, transports=["websocket"],
              subscribe={"channels": ["stale"], "last": far})
    for cid in ("auth", "sub"):
        c.wait("subscribed", id=cid)
    pub.run(1)
    for cid in ("auth", "sub"):
        assert [n["id"] for n in c.notifications(cid, 1)] == [pub.sent[-1]]
    assert gw.log().count("above this node's largest id") == 3
