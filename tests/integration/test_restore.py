"""bus_bus ids that go backwards: TRUNCATE ... RESTART IDENTITY, a database
dropped and created again, a database that does not exist yet at start,
and clients that kept a `last` from before.

Each test uses a database of its own (the session's lpgtest is left
alone), polls as Odoo 8-15's web client does (it re-polls at once and
keeps last = max(last, ids): it never moves last down), and waits for
conditions with generous bounds; the gateways run with a long --timeout
so that an answer can only come from lpgate noticing the reset, never
from the poll timing out.
"""

import http.client
import json
import re
import selectors
import socket
import time

import pytest

from conftest import BUS_BUS, free_port, wait_until

TIMEOUT = "300"     # s: longer than any wait below


def parked(gw):
    return gw.log().count("poll parked")


def ids(answer):
    return [n["id"] for n in answer["result"]]


def drop_db(pg, name):
    pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def create_db(pg, name, table=True):
    pg.sql('CREATE DATABASE "%s"' % name)
    if table:
        pg.sql(BUS_BUS, dbname=name)


@pytest.fixture
def scratch(pg):
    """Factory: scratch(name, exists=True) gives a database of the test's
    own (with Odoo's bus_bus), dropped at teardown."""
    names = []

    def make(name, exists=True):
        drop_db(pg, name)
        if exists:
            create_db(pg, name)
        names.append(name)
        return name

    yield make
    for name in names:
        drop_db(pg, name)


def start(gateway, db, workers=2, ready=True, extra=()):
    gw = gateway(workers=workers,
                 extra_args=["--log-level", "debug", "--timeout", TIMEOUT,
                             "-d", db] + list(extra))
    if ready:
        gw.wait_log('database "%s": Odoo 14 bus shapes' % db)
    return gw


def warn_numbers(gw, db):
    """(cursor, largest id) of every re-sync WARN line of db."""
    return [(int(a), int(b)) for a, b in re.findall(
        r'warn: database "%s": bus_bus ids went backwards .*?: cursor '
        r'(\d+), largest id now (\d+)' % re.escape(db), gw.log())]


class Clients:
    """n long-polling clients on raw keep-alive sockets, driven by one
    selector: each sends its poll, and when the answer comes re-polls at
    once with max(last, ids) (as Odoo 8-15's bus service does)."""

    def __init__(self, gw, n, channel, last):
        self.gw = gw
        self.channel = channel
        self.sel = selectors.DefaultSelector()
        self.clients = []
        for i in range(n):
            c = {"last": last, "seen": [], "answers": 0, "empty": 0,
                 "buf": bytearray(), "id": i}
            self.clients.append(c)
            self._connect(c)

    def _request(self, c):
        body = json.dumps({"jsonrpc": "2.0", "method": "call",
                           "id": c["id"],
                           "params": {"channels": [self.channel],
                                      "last": c["last"]}})
        return ("POST /longpolling/poll HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n"
                "\r\n%s" % (len(body), body)).encode()

    def _connect(self, c):
        s = socket.create_connection(("127.0.0.1", self.gw.port))
        s.sendall(self._request(c))
        s.setblocking(False)
        c["buf"] = bytearray()
        self.sel.register(s, selectors.EVENT_READ, c)

    def _answer(self, s, c):
        """Parses every complete answer in c's buffer and re-polls."""
        while True:
            head, sep, rest = bytes(c["buf"]).partition(b"\r\n\r\n")
            if not sep:
                return
            m = re.search(rb"(?i)content-length: *(\d+)", head)
            assert m and head.startswith(b"HTTP/1.1 200"), head
            size = int(m.group(1))
            if len(rest) < size:
                return
            answer = json.loads(rest[:size])
            c["buf"] = bytearray(rest[size:])
            got = ids(answer)
            c["answers"] += 1
            c["empty"] += not got
            c["seen"] += got
            c["last"] = max([c["last"]] + got)
            if re.search(rb"(?i)connection: *close", head):
                self.sel.unregister(s)
                s.close()
                self._connect(c)
                return
            s.sendall(self._request(c))

    def pump(self, done, timeout):
        """Serves the sockets until done(clients) or timeout seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.clients) and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.5):
                s, c = key.fileobj, key.data
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.sel.unregister(s)
                    s.close()
                    self._connect(c)
                    continue
                c["buf"].extend(chunk)
                self._answer(s, c)
        return done(self.clients)

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def test_truncate_restart_identity_under_parked_polls(pg, scratch, gateway):
    """The issue's scenario: after TRUNCATE bus_bus RESTART IDENTITY the
    next row gets id 1, below the master's cursor.  lpgate logs it at WARN
    with the numbers, the parked polls get the new table's rows (the one
    that revealed the reset included), and polls with last=0, last=1 and
    the old large last all get the next notification."""
    db = scratch("lpgr_truncate")
    gw = start(gateway, db)
    old = [pg.send(db, "ta", i) for i in range(6)][-1]
    wait_until(lambda: gw.poll(["ta"], last=old - 1)["result"], 10)

    parked_a = gw.poll_async(["ta"], last=old, timeout=60)
    parked_b = gw.poll_async(["tb"], last=old, timeout=60)
    wait_until(lambda: parked(gw) >= 2, 10, what="2 parked polls")

    pg.sql("TRUNCATE bus_bus RESTART IDENTITY", dbname=db)
    first = pg.send(db, "ta", "wakes the master")
    assert first == 1

    # (the timeout is 300 s: only the reset can let id 1 through)
    assert ids(parked_a.result(60)) == [first]
    wait_until(lambda: warn_numbers(gw, db), 10, what="the WARN line")
    assert warn_numbers(gw, db) == [(old, first)], gw.log()
    second = pg.send(db, "tb", "the next one")
    assert ids(parked_b.result(60)) == [second]

    n = parked(gw)
    polls = [gw.poll_async(["tc"], last=last, timeout=60)
             for last in (0, 1, old)]
    wait_until(lambda: parked(gw) >= n + 3, 20, what="3 more parked polls")
    nid = pg.send(db, "tc", "next")
    assert nid == 3
    for f in polls:
        assert ids(f.result(60)) == [nid]

    assert ids(gw.poll(["ta"], last=0, timeout=20)) == [first]


def test_thousand_parked_polls_get_the_next_notification(pg, scratch,
                                                         gateway):
    """1,000 parked polls over 2 workers, TRUNCATE ... RESTART IDENTITY,
    one notification: every client (re-polling as Odoo 8-15's does, its
    last staying at the old large value) gets it exactly once, and then
    the next one too."""
    db = scratch("lpgr_thousand")
    admin = free_port()
    gw = start(gateway, db, extra=["--log-level", "info",
                                   "--admin-port", str(admin)])
    old = [pg.send(db, "warm", i) for i in range(4)][-1]
    wait_until(lambda: gw.poll(["warm"], last=old - 1)["result"], 10)

    n = 1000
    # psycopg waits with select(): open its connections before the sockets
    conns = (pg.connect(db), pg.connect("postgres"))
    clients = Clients(gw, n, "many", old)
    try:
        wait_until(lambda: sum(parked_per_worker(admin)) >= n, 60,
                   what="%d parked polls" % n)
        per_worker = parked_per_worker(admin)
        assert len([v for v in per_worker if v > 0]) == 2, per_worker

        conns[0].execute("TRUNCATE bus_bus RESTART IDENTITY")
        bus_id = pg.send(db, "many", "after the truncate", conns=conns)

        ok = clients.pump(
            lambda cs: all(bus_id in c["seen"] for c in cs), 90)
        got = sum(bus_id in c["seen"] for c in clients.clients)
        empty = sum(c["empty"] for c in clients.clients)
        print("clients that got id %d: %d of %d; empty answers: %d"
              % (bus_id, got, n, empty))
        assert ok, "%d of %d clients got the notification" % (got, n)
        assert warn_numbers(gw, db) == [(old, bus_id)]

        # their last is still the old one: re-polled, they wait (no loop
        # of the same rows), and the next notification reaches them all
        wait_until(lambda: sum(parked_per_worker(admin)) >= n, 60,
                   what="%d parked again" % n)
        assert sum(c["answers"] for c in clients.clients) == n
        next_id = pg.send(db, "many", "the next one", conns=conns)
        ok = clients.pump(
            lambda cs: all(next_id in c["seen"] for c in cs), 90)
        assert ok, "%d of %d clients got the next one" % (
            sum(next_id in c["seen"] for c in clients.clients), n)
        assert all(c["seen"] == [bus_id, next_id] for c in clients.clients)
        assert all(c["last"] == old for c in clients.clients)
        assert re.search(r"^lpgate_bus_resets_total 1$", metrics(admin),
                         re.M)
    finally:
        clients.close()
        conns[0].close()
        conns[1].close()


def metrics(admin):
    """The text of /metrics on the admin port."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def parked_per_worker(admin):
    """lpgate_parked_polls of each worker, from the admin port."""
    body = metrics(admin)
    return [int(v) for v in re.findall(
        r'^lpgate_parked_polls\{worker="\d+"\} (\d+)$', body, re.M)]


def test_last_above_the_largest_id_is_not_deaf(pg, scratch, gateway):
    """Beyond Odoo 8-15: a poll whose last is above the database's largest
    bus id (a browser that kept it across a restore) is served from what
    the master has published: it gets every later notification instead of
    waiting for ids that will not come for a long time.  Since an 8-15
    client keeps max(last, ids), its next poll has the same last: it must
    not get the same rows again (no loop); a last equal to the largest id
    is not reset."""
    db = scratch("lpgr_far")
    gw = start(gateway, db)
    a = pg.send(db, "tf", "recent")
    wait_until(lambda: gw.poll(["tf"], last=0, timeout=20)["result"], 10)
    far = 10**9

    peek = {"peek": True}
    for last in (a, far):
        assert gw.poll(["tf"], last=last, options=peek)["result"][
            "notifications"] == []

    n = parked(gw)
    f = gw.poll_async(["tf"], last=far, timeout=60)
    g = gw.poll_async(["tf"], last=a, timeout=60)
    wait_until(lambda: parked(gw) >= n + 2, 10)
    b = pg.send(db, "tf", "next")
    assert ids(f.result(60)) == [b]
    assert ids(g.result(60)) == [b]

    # the same far last again: waits for c, b is not sent twice
    n = parked(gw)
    f = gw.poll_async(["tf"], last=far, timeout=60)
    wait_until(lambda: parked(gw) > n, 10)
    assert not f.done()
    c = pg.send(db, "tf", "after")
    assert ids(f.result(60)) == [c]


def test_table_recreated_while_connected(pg, scratch, gateway):
    """DROP TABLE bus_bus and CREATE TABLE again (a restore with --clean):
    the master's connection survives it, and its next fetch sees another
    table (oid) and re-syncs."""
    db = scratch("lpgr_table")
    gw = start(gateway, db)
    old = [pg.send(db, "tt", i) for i in range(5)][-1]
    wait_until(lambda: gw.poll(["tt"], last=old - 1)["result"], 10)
    f = gw.poll_async(["tt"], last=old, timeout=60)
    wait_until(lambda: parked(gw) >= 1, 10)

    pg.sql("DROP TABLE bus_bus", dbname=db)
    pg.sql(BUS_BUS, dbname=db)
    bus_id = pg.send(db, "tt", "in the new table")
    assert bus_id == 1

    assert ids(f.result(60)) == [bus_id]
    gw.wait_log('database "%s": bus_bus was recreated' % db, 10)
    assert ids(gw.poll(["tt"], last=0, timeout=60)) == [bus_id]


def test_database_dropped_and_created_again(pg, scratch, gateway):
    """DROP DATABASE ... WITH (FORCE) and CREATE DATABASE (with bus_bus)
    under the same name while lpgate runs: the master reconnects, sees a
    new table, re-syncs, answers the parked poll, and delivery resumes
    for clients with their old last."""
    db = scratch("lpgr_recreated")
    gw = start(gateway, db)
    old = [pg.send(db, "td", i) for i in range(5)][-1]
    wait_until(lambda: gw.poll(["td"], last=old - 1)["result"], 10)
    f = gw.poll_async(["td"], last=old, timeout=90)
    wait_until(lambda: parked(gw) >= 1, 10)

    drop_db(pg, db)
    create_db(pg, db)
    gw.wait_log('database "%s": bus_bus was recreated' % db, 30)

    # the parked poll and a new one with the old last both get the row
    n = parked(gw)
    g = gw.poll_async(["td"], last=old, timeout=60)
    wait_until(lambda: parked(gw) > n, 10)
    bus_id = pg.send(db, "td", "in the new database")
    assert bus_id == 1
    assert ids(f.result(60)) == [bus_id]
    assert ids(g.result(60)) == [bus_id]
    assert ids(gw.poll(["td"], last=0, timeout=20)) == [bus_id]


def test_database_created_after_start(pg, scratch, gateway):
    """A database that does not exist when lpgate starts: lpgate keeps
    trying and serves it once it is created with Odoo's bus_bus."""
    db = scratch("lpgr_late", exists=False)
    gw = start(gateway, db, ready=False)
    gw.wait_ready()
    gw.wait_log('database "%s" does not exist' % db, 20)

    # while the database is missing a poll waits (parked, not refused)
    f = gw.poll_async(["tl"], last=0, timeout=90)
    wait_until(lambda: parked(gw) >= 1, 20, what="the poll to park")
    assert not f.done()

    create_db(pg, db)
    gw.wait_log('database "%s": Odoo 14 bus shapes' % db, 60)
    bus_id = pg.send(db, "tl", "first")
    result = f.result(60)["result"]
    if not result:
        # answered [] while the database came up: the client re-polls
        result = gw.poll(["tl"], last=0, timeout=60)["result"]
    assert [n["id"] for n in result] == [bus_id]
    assert ids(gw.poll(["tl"], last=0, timeout=20)) == [bus_id]
