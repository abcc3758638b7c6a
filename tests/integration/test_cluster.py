"""Past one machine (issue 15): several lpgate nodes on one PostgreSQL,
each its own master, shared segment and LISTEN, behind Debian's haproxy
and nginx running the shipped configs (tests/integration/cluster.py).

Clients poll through the balancer with their `last` (a global bus id)
while notifications are published; every client must get every one
exactly once and in order: when its polls land on different nodes, when
a node is killed under load (at most one failed request per client), when
a node drains (SIGQUIT: /health says "draining" first, the balancer takes
it out, its parked polls are answered), and for websockets that
reconnect to another node with their last.
"""

import asyncio
import http.client
import json
import signal
import threading
import time

import pytest
import websockets

from cluster import (app_port, balancer, cluster, haproxy_status,  # noqa
                     kill_node, node_of, poll_via)
from conftest import wait_until

KINDS = ["haproxy", "nginx"]


class Client(threading.Thread):
    """Polls through the balancer until it has the final id; records what
    it got, where each answer came from (and when its request started),
    and each failed request."""

    def __init__(self, port, nodes, channel, last, final):
        super().__init__(daemon=True)
        self.port, self.nodes, self.channel = port, nodes, channel
        self.last, self.final = last, final
        self.ids, self.answers, self.failures = [], [], []

    def run(self):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.final[0] is not None and self.last >= self.final[0]:
                return
            started = time.monotonic()
            try:
                status, tag, result = poll_via(self.port, [self.channel],
                                               self.last)
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(repr(e))
                time.sleep(0.2)
                continue
            if status != 200:
                self.failures.append(status)
                time.sleep(0.2)
                continue
            self.answers.append((started, node_of(tag, self.nodes)))
            for n in result:
                self.ids.append(n["id"])
                self.last = max(self.last, n["id"])


def run_clients(pg, b, nodes, n_clients, n_msgs, during=None, at=None,
                channel="cl"):
    """Starts the clients, publishes n_msgs notifications (calling during()
    after `at` of them), waits for every client; returns (clients, sent
    ids)."""
    conns = (pg.connect("lpgtest"), pg.connect("postgres"))
    try:
        [(base,)] = conns[0].execute(
            "SELECT coalesce(max(id), 0) FROM bus_bus").fetchall()
        final = [None]
        clients = [Client(b.port, nodes, channel, base, final)
                   for _ in range(n_clients)]
        for c in clients:
            c.start()
        wait_until(lambda: sum(n.log().count("poll parked") for n in nodes)
                   >= n_clients, 15, what="the clients' first polls")
        sent = []
        for i in range(n_msgs):
            if during is not None and i == at:
                during()
            sent.append(pg.send("lpgtest", channel, {"n": i}, conns=conns))
            time.sleep(0.05)
        final[0] = sent[-1]
        for c in clients:
            c.join(60)
        return clients, sent
    finally:
        conns[0].close()
        conns[1].close()


def start_nodes(cluster, n, drain_delay=1):
    nodes = cluster(n, workers=1,
                    extra_args=["--log-level", "debug", "--timeout", "5",
                                "--drain-delay", str(drain_delay)])
    for gw in nodes:
        gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    return nodes


def test_last_from_a_node_ahead_is_not_served_twice(pg, cluster):
    """Node B's master has not fetched the id node A handed out (stopped
    here, for the few milliseconds it lags in life): B's poll with that
    last waits for B's fetch instead of taking it as stale and answering
    from B's cursor, which would give the same notification twice."""
    a, b = start_nodes(cluster, 2)
    [(base,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")
    b.signal(signal.SIGSTOP)
    try:
        x = pg.send("lpgtest", "ahead", "first")
        assert [n["id"] for n in a.poll(["ahead"], last=base)["result"]] \
            == [x]
        f = b.poll_async(["ahead"], last=x, timeout=20)
        b.wait_log("above this node's largest id")
        time.sleep(0.5)
    finally:
        b.signal(signal.SIGCONT)
    wait_until(lambda: b.log().count("poll parked") >= 1, 10)
    y = pg.send("lpgtest", "ahead", "second")
    assert [n["id"] for n in f.result(15)["result"]] == [y]


@pytest.mark.parametrize("kind", KINDS)
def test_round_robin_every_notification_once(pg, cluster, balancer, kind):
    nodes = start_nodes(cluster, 2)
    b = balancer(kind, nodes, tag=True)
    clients, sent = run_clients(pg, b, nodes, 6, 30)
    for c in clients:
        assert not c.failures, c.failures
        assert c.ids == sent
        # its successive polls landed on both nodes
        assert {n for _, n in c.answers} == {0, 1}, c.answers


@pytest.mark.parametrize("kind", KINDS)
def test_node_killed_under_load(pg, cluster, balancer, kind):
    nodes = start_nodes(cluster, 3)
    b = balancer(kind, nodes, tag=True)
    killed = []

    def kill():
        kill_node(nodes[0])
        killed.append(time.monotonic())

    clients, sent = run_clients(pg, b, nodes, 8, 30, kill, 10)
    assert killed
    for c in clients:
        assert len(c.failures) <= 1, c.failures
        assert c.ids == sent
        assert all(n != 0 for t, n in c.answers if t > killed[0])


@pytest.mark.parametrize("kind", KINDS)
def test_node_drained(pg, cluster, balancer, kind):
    """SIGQUIT: /health says draining at once while the node still serves;
    haproxy takes it out (before it stops accepting), nginx moves on when
    it refuses; its parked polls are answered; nobody misses anything or
    sees a failed request."""
    nodes = start_nodes(cluster, 3, drain_delay=4)
    b = balancer(kind, nodes, tag=True)
    node = nodes[0]
    marks = {}

    def drain():
        node.signal(signal.SIGQUIT)
        wait_until(lambda: node.health()[0] == 503, 5)
        assert node.health() == (503, {"status": "fail",
                                       "reason": "draining"})
        # still accepting and serving: a new connection, a poll answered
        [(mx,)] = pg.sql("SELECT max(id) FROM bus_bus", dbname="lpgtest")
        assert [n["id"] for n in node.poll(["cl"], last=mx - 1)["result"]] \
            == [mx]
        if kind == "haproxy":
            wait_until(lambda: haproxy_status(b)["lpgate1"].startswith("DOWN"),
                       5, what="haproxy to take the draining node out")
            assert node.running()
            marks["out"] = time.monotonic()

    clients, sent = run_clients(pg, b, nodes, 8, 40, drain, 10)
    assert node.wait(20) == 0
    assert not node.log_contains("shutdown timeout")
    assert node.log_contains("draining")
    for c in clients:
        assert not c.failures, c.failures
        assert c.ids == sent
        if "out" in marks:
            # nothing sent to it once haproxy took it out
            assert all(n != 0 for t, n in c.answers if t > marks["out"])


# --- websockets ---------------------------------------------------------

DB17 = "lpgtest17"


@pytest.fixture
def odoo(pg):
    from odoo_standin import OdooStandin, create_database
    s = OdooStandin({DB17: (create_database(pg, DB17, 17), 17)}).start()
    yield s
    s.stop()


@pytest.mark.parametrize("how", ["kill", "drain"])
@pytest.mark.parametrize("kind", KINDS)
def test_websockets_move_to_another_node(pg, cluster, balancer, odoo, kind,
                                         how):
    nodes = cluster(2, workers=1,
                    extra_args=["-d", DB17, "--odoo-url", odoo.url,
                                "--log-level", "debug"])
    for n in nodes:
        n.wait_log('database "%s": Odoo' % DB17)
    b = balancer(kind, nodes)
    url = "ws://127.0.0.1:%d/websocket" % b.port
    origin = "http://127.0.0.1:%d" % b.port
    conns = (pg.connect(DB17), pg.connect("postgres"))
    [(base,)] = conns[0].execute(
        "SELECT coalesce(max(id), 0) FROM bus_bus").fetchall()
    n_clients, n_msgs = 6, 20
    final = [None]

    def send(i):
        return pg.send(DB17, [DB17, "wsc"], {"type": "t", "payload": i},
                       conns=conns)

    async def client(got, closes):
        last = base
        while final[0] is None or last < final[0]:
            try:
                async with websockets.connect(url, origin=origin,
                                              ping_interval=None,
                                              open_timeout=10) as ws:
                    await ws.send(json.dumps({
                        "event_name": "subscribe",
                        "data": {"channels": ["wsc"], "last": last}}))
                    while final[0] is None or last < final[0]:
                        try:
                            text = await asyncio.wait_for(ws.recv(), 1)
                        except asyncio.TimeoutError:
                            continue
                        for x in json.loads(text):
                            got.append(x["id"])
                            last = max(last, x["id"])
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
            wait_until, lambda: sum(n.log().count("websocket subscribed")
                                    for n in nodes) >= n_clients, 15)
        on_first = nodes[0].log().count("websocket subscribed")
        sent = []
        for i in range(n_msgs):
            if i == 5:
                if how == "kill":
                    kill_node(nodes[0])
                else:
                    nodes[0].signal(signal.SIGQUIT)
            sent.append(await asyncio.to_thread(send, i))
            await asyncio.sleep(0.05)
        final[0] = sent[-1]
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return results, sent, on_first

    try:
        results, sent, on_first = asyncio.run(main())
    finally:
        conns[0].close()
        conns[1].close()
    assert on_first > 0
    moved = 0
    for got, closes in results:
        assert got == sent, (got, sent, closes)
        moved += bool(closes)
    # the sockets of the node that went away reconnected elsewhere
    assert moved >= 1
    if how == "drain":
        assert nodes[0].wait(20) == 0


def test_websocket_last_from_a_node_ahead_is_not_reset(pg, cluster, odoo):
    """As a poll's: a /websocket subscribe whose last this node's master
    has not fetched yet (stopped here) waits for the fetch instead of
    resetting it to 0 (Odoo's rule for a last above every id), which would
    send the last timeout seconds again."""
    [gw] = cluster(1, workers=1,
                   extra_args=["-d", DB17, "--odoo-url", odoo.url,
                               "--log-level", "debug"])
    gw.wait_log('database "%s": Odoo' % DB17)
    earlier = pg.send(DB17, [DB17, "ahead"], {"type": "t", "payload": 0})

    async def main():
        async with websockets.connect(
                "ws://127.0.0.1:%d/websocket" % gw.port,
                origin="http://127.0.0.1:%d" % gw.port,
                ping_interval=None) as ws:
            gw.signal(signal.SIGSTOP)
            try:
                x = pg.send(DB17, [DB17, "ahead"], {"type": "t", "payload": 1})
                await ws.send(json.dumps({
                    "event_name": "subscribe",
                    "data": {"channels": ["ahead"], "last": x}}))
                # the worker read it (and waits, at most 2 s)
                await asyncio.to_thread(gw.wait_log, "largest id")
                await asyncio.sleep(0.5)
            finally:
                gw.signal(signal.SIGCONT)
            y = pg.send(DB17, [DB17, "ahead"], {"type": "t", "payload": 2})
            got = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [n["id"] for n in got], x, y

    got, x, y = asyncio.run(main())
    assert earlier < x < y
    assert got == [y]
