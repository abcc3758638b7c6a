"""GET <path>/sse: Server-Sent Events against real PostgreSQL (issue 14,
item 1): what lpgate_send() publishes arrives as events, a stream resumes
with Last-Event-ID or ?last from the history or the database with nothing
lost or repeated, retry and heartbeat lines, every bad input a 400, the
limits (fd limit, a client that never reads), nginx with the shipped
contrib/nginx/lpgate.conf, two workers, SIGQUIT, a lapped ring."""

import json
import os
import resource
import signal
import socket
import time
import urllib.parse

import pytest

from conftest import SRCDIR, free_port, wait_until
from test_proxy import app, nginx  # noqa: F401 (fixtures)


class Stream:
    """An SSE client on a raw socket: the head, then events as parsed by
    the EventSource rules (id, data, retry, comments)."""

    def __init__(self, port, path, headers=None, timeout=15, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
        req += "Accept: text/event-stream\r\n"
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        self.eof = False
        self.comments = []
        self.retry = None

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
        self.buf += chunk

    def head(self):
        while b"\r\n\r\n" not in self.buf and not self.eof:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs

    def block(self):
        """The next block up to a blank line (None at EOF)."""
        while b"\n\n" not in self.buf:
            if self.eof:
                return None
            self._more()
        block, _, self.buf = self.buf.partition(b"\n\n")
        return block.decode()

    def event(self):
        """The next event (id, parsed data), comments and retry noted;
        None at EOF."""
        while True:
            block = self.block()
            if block is None:
                return None
            ev_id, data = None, []
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "id":
                    ev_id = int(value)
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)
            if data:
                return ev_id, json.loads("\n".join(data))

    def events(self, n):
        out = []
        while len(out) < n:
            ev = self.event()
            assert ev is not None, "stream ended after %r" % out
            out.append(ev)
        return out

    def rest(self):
        """Every event up to the end of the stream."""
        out = []
        while True:
            ev = self.event()
            if ev is None:
                return out
            out.append(ev)

    def close(self):
        self.sock.close()


def at_eof(s):
    """Reads what s has now without waiting: True once the server closed."""
    timeout = s.sock.gettimeout()
    s.sock.settimeout(0)
    try:
        while not s.eof:
            chunk = s.sock.recv(65536)
            s.eof = not chunk
            s.buf += chunk
    except BlockingIOError:
        pass
    finally:
        s.sock.settimeout(timeout)
    return s.eof


def load_sql(pg, db="lpgtest"):
    with open(os.path.join(SRCDIR, "contrib", "sql", "lpgate.sql")) as f:
        pg.sql(f.read(), dbname=db)


def send(pg, channel, message, db="lpgtest"):
    [(bus_id,)] = pg.sql("SELECT lpgate_send(%s, %s)",
                         (channel, json.dumps(message)), dbname=db)
    return bus_id


def top(pg, db="lpgtest"):
    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=db)
    return last


def ready(gw):
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')


def sse_path(channels, **q):
    q = dict(q, channels=",".join(channels))
    return "/longpolling/sse?" + urllib.parse.urlencode(q)


def attached(gw, n=1):
    """n streams attached (the debug log line comes at the start)."""
    wait_until(lambda: gw.log().count("sse stream open") >= n, 10)
    time.sleep(0.2)


def test_events_from_lpgate_send(pg, gateway):
    load_sql(pg)
    gw = gateway(workers=1, extra_args=["--log-level", "debug"])
    ready(gw)
    last = top(pg)
    s = Stream(gw.port, sse_path(["sse-a", "sse-\u00e9"], last=last))
    status, hdrs = s.head()
    assert status == 200
    assert hdrs["content-type"] == "text/event-stream"
    assert hdrs["cache-control"] == "no-store"
    assert hdrs["x-accel-buffering"] == "no"
    assert hdrs["access-control-allow-origin"] == "*"
    assert "content-length" not in hdrs
    assert s.block() == "retry: 3000"
    attached(gw)

    a = send(pg, "sse-a", {"n": 1})
    send(pg, "sse-other", {"n": 2})
    b = send(pg, "sse-\u00e9", {"text": "caf\u00e9"})
    # JSON whitespace with raw newlines stays one data line
    [(c,)] = pg.sql("SELECT lpgate_send('sse-a', '{\"multi\":\n  \"line\"}')",
                    dbname="lpgtest")
    assert s.events(3) == [
        (a, {"channel": "sse-a", "message": {"n": 1}}),
        (b, {"channel": "sse-\u00e9", "message": {"text": "caf\u00e9"}}),
        (c, {"channel": "sse-a", "message": {"multi": "line"}})]
    s.close()


def test_resume_from_the_history(pg, gateway):
    """Last-Event-ID (which wins over ?last) and ?last after a disconnect:
    exactly the events after it, from the worker's history."""
    load_sql(pg)
    gw = gateway(workers=1, admin_port=free_port(),
                 extra_args=["--log-level", "debug"])
    ready(gw)
    base = top(pg)
    s = Stream(gw.port, sse_path(["res"], last=base))
    s.head()
    attached(gw)
    first = [send(pg, "res", i) for i in range(3)]
    assert [e[0] for e in s.events(3)] == first
    s.close()

    later = [send(pg, "res", i) for i in range(3, 6)]
    queries = backfills(gw)
    # ?last=base would replay everything: the header wins
    s = Stream(gw.port, sse_path(["res"], last=base),
               headers={"Last-Event-ID": str(first[-1])})
    assert s.head()[0] == 200
    assert s.events(3) == [(i, {"channel": "res", "message": n})
                           for n, i in enumerate(later, 3)]
    more = send(pg, "res", 6)
    assert s.event() == (more, {"channel": "res", "message": 6})
    s.close()

    s = Stream(gw.port, sse_path(["res"], last=later[0]))
    s.head()
    assert [e[0] for e in s.events(3)] == later[1:] + [more]
    s.close()
    # the history answered both resumes: no query
    assert backfills(gw) == queries


def test_resume_from_the_database(pg, gateway):
    """A last older than the worker's history (lpgate restarted in
    between): the missed rows come from bus_bus, then live events, none
    twice."""
    load_sql(pg)
    gw = gateway(workers=1, extra_args=["--log-level", "debug"])
    ready(gw)
    base = top(pg)
    s = Stream(gw.port, sse_path(["bf"], last=base))
    s.head()
    attached(gw)
    sent = [send(pg, "bf", i) for i in range(2)]
    got = s.events(2)
    assert [e[0] for e in got] == sent
    s.close()
    gw.stop()

    missed = [send(pg, "bf", i) for i in range(2, 5)]
    gw = gateway(workers=1, admin_port=free_port(),
                 extra_args=["--log-level", "debug"])
    ready(gw)
    queries = backfills(gw)
    s = Stream(gw.port, sse_path(["bf"]),
               headers={"Last-Event-ID": str(got[-1][0])})
    assert s.head()[0] == 200
    assert [e[0] for e in s.events(3)] == missed
    assert backfills(gw) == queries + 1
    live = send(pg, "bf", 5)
    assert s.event()[0] == live
    s.close()


def test_retry_and_heartbeat(pg, gateway):
    gw = gateway(workers=1, config="sse_retry = 1234;\nsse_heartbeat = 1;\n")
    ready(gw)
    s = Stream(gw.port, sse_path(["hb"], last=top(pg)))
    assert s.head()[0] == 200
    assert s.block() == "retry: 1234"
    # nothing is published: the next blocks are heartbeat comments
    assert s.block() == ": hb"
    assert s.block() == ": hb"
    s.close()


def test_bad_input_is_a_400(pg, gateway):
    gw = gateway(workers=1, config="max_channels_per_poll = 3;\n")
    ready(gw)

    def error(path, headers=None, method="GET"):
        status, hdrs, body = gw.http(method, path, headers=headers)
        assert status == 400, (path, status, body)
        assert hdrs["access-control-allow-origin"] == "*"
        return json.loads(body)["error"]

    assert "channels" in error("/longpolling/sse")
    assert "channels" in error("/longpolling/sse?channels=,")
    assert "last" in error("/longpolling/sse?channels=a&last=z")
    assert "last" in error("/longpolling/sse?channels=a&last=-1")
    for bad in ("abc", "-1", "1.5", "7x", "+7", "99999999999999999999999"):
        assert "Last-Event-ID" in error("/longpolling/sse?channels=a",
                                        {"Last-Event-ID": bad})
    assert "database" in error("/longpolling/sse?channels=a&db=nope")
    assert "max_channels_per_poll" in error(
        "/longpolling/sse?channels=a,b,c,d")
    assert "UTF-8" in error("/longpolling/sse?channels=%FF")
    assert "too long" in error("/longpolling/sse?channels=" + "x" * 5000)
    status, hdrs, _ = gw.http("POST", "/longpolling/sse?channels=a", b"")
    assert status == 405 and hdrs["allow"] == "GET"
    # and a good one still streams
    s = Stream(gw.port, "/longpolling/sse?channels=a,b,c")
    assert s.head()[0] == 200
    s.close()


def test_fd_limit_is_a_503(pg, gateway):
    """Streams count as open connections: near the fd limit a new one gets
    503 with Retry-After, /health still answers, open streams still get
    their events."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    load_sql(pg)
    gw = gateway(workers=1, preexec_fn=limit,
                 extra_args=["--log-level", "debug"])
    ready(gw)
    last = top(pg)
    # past the margin (128 - 32 - 8 = 88), below the hard limit
    streams = []
    for _ in range(88):
        s = Stream(gw.port, sse_path(["fd"], last=last))
        assert s.head()[0] == 200
        streams.append(s)
    over = Stream(gw.port, sse_path(["fd"], last=last))
    status, hdrs = over.head()
    assert status == 503 and "retry-after" in hdrs
    over.close()
    assert gw.health()[0] == 200
    bus_id = send(pg, "fd", "still delivered")
    for s in streams:
        assert s.event() == (bus_id, {"channel": "fd",
                                      "message": "still delivered"})
    for s in streams:
        s.close()
    wait_until(lambda: "sse stream open" in gw.log(), 10)
    assert gw.health()[0] == 200


def test_client_that_never_reads_is_cut_by_max_answer_size(pg, gateway):
    load_sql(pg)
    gw = gateway(workers=1, config='max_answer_size = "1M";\n'
                 "send_timeout = 3600;\n")
    ready(gw)
    s = Stream(gw.port, sse_path(["slow"], last=top(pg)), rcvbuf=4096)
    s.head()
    # each event ~200 kB: the socket buffers fill, the queue passes 1 MB
    for i in range(200):
        send(pg, "slow", "x" * 200000)
        if "client too slow" in gw.log():
            break
    gw.wait_log("sse: client too slow", 10)
    assert "client stopped reading" not in gw.log()
    s.close()
    assert gw.health()[0] == 200


def test_client_that_never_reads_is_cut_by_send_timeout(pg, gateway):
    load_sql(pg)
    gw = gateway(workers=1, config="send_timeout = 1;\n")
    ready(gw)
    s = Stream(gw.port, sse_path(["stall"], last=top(pg)), rcvbuf=4096)
    s.head()
    # below max_answer_size (8M) in all, but more than the socket buffers
    for i in range(100):
        send(pg, "stall", "y" * 60000)
        if "client stopped reading" in gw.log():
            break
    gw.wait_log("sse: client stopped reading", 10)
    assert "client too slow" not in gw.log()
    s.close()


def test_through_nginx_unbuffered(pg, gateway, nginx):  # noqa: F811
    """contrib/nginx/lpgate.conf as shipped: each event arrives before the
    next is published (nothing waits in nginx's buffers)."""
    load_sql(pg)
    gw = gateway(workers=1, extra_args=["--log-level", "debug"])
    ready(gw)
    port = nginx(gw.port)
    last = top(pg)
    s = Stream(port, sse_path(["via-nginx"], last=last))
    status, hdrs = s.head()
    assert status == 200 and hdrs["content-type"] == "text/event-stream"
    attached(gw)
    for i in range(3):
        bus_id = send(pg, "via-nginx", {"i": i})
        assert s.event() == (bus_id, {"channel": "via-nginx",
                                      "message": {"i": i}})
    s.close()

    # resume through nginx with Last-Event-ID
    more = send(pg, "via-nginx", {"i": 3})
    s = Stream(port, sse_path(["via-nginx"]),
               headers={"Last-Event-ID": str(bus_id)})
    s.head()
    assert s.event() == (more, {"channel": "via-nginx", "message": {"i": 3}})
    s.close()


def test_two_workers(pg, gateway):
    """Streams spread over both workers; each gets every event once; the
    per-transport metrics count them."""
    load_sql(pg)
    gw = gateway(workers=2, admin_port=free_port(),
                 extra_args=["--log-level", "debug"])
    ready(gw)
    last = top(pg)
    streams = [Stream(gw.port, sse_path(["two"], last=last))
               for _ in range(16)]
    for s in streams:
        assert s.head()[0] == 200
    attached(gw, 16)
    ids = [send(pg, "two", i) for i in range(3)]
    for s in streams:
        assert [e[0] for e in s.events(3)] == ids

    text = _metrics(gw)
    opened = _rows(text, "lpgate_transport_connections_open", "sse")
    sent = _rows(text, "lpgate_transport_deliveries_total", "sse")
    assert sum(opened.values()) == 16 and len(opened) == 2
    assert all(v > 0 for v in opened.values()), opened
    assert sum(sent.values()) == 48
    for s in streams:
        s.close()
    wait_until(lambda: sum(_rows(_metrics(gw),
                                 "lpgate_transport_connections_open",
                                 "sse").values()) == 0, 10)


def _metrics(gw):
    port = int(gw.args[gw.args.index("--admin-port") + 1])
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    return c.getresponse().read().decode()


def backfills(gw):
    return sum(int(line.rsplit(" ", 1)[1])
               for line in _metrics(gw).splitlines()
               if line.startswith("lpgate_backfill_queries_total{"))


def _rows(text, name, transport):
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and \
                'transport="%s"' % transport in line:
            worker = line.split('worker="')[1].split('"')[0]
            out[worker] = int(line.rsplit(" ", 1)[1])
    return out


def test_sigquit_closes_after_the_last_event(pg, gateway):
    """SIGQUIT: a stream gets what was published before, then the end of
    the stream; a client resuming with its Last-Event-ID after a restart
    gets the rest, nothing twice."""
    load_sql(pg)
    gw = gateway(workers=1, extra_args=["--log-level", "debug"])
    ready(gw)
    s = Stream(gw.port, sse_path(["quit"], last=top(pg)))
    s.head()
    attached(gw)
    first = send(pg, "quit", 1)
    assert s.event()[0] == first
    sent = [send(pg, "quit", i) for i in range(2, 5)]
    gw.signal(signal.SIGQUIT)
    got = [e[0] for e in s.rest()]       # up to the end of the stream
    assert s.eof
    assert got == sent[:len(got)]
    assert gw.wait(10) == 0

    gw = gateway(workers=1)
    ready(gw)
    s = Stream(gw.port, sse_path(["quit"]),
               headers={"Last-Event-ID": str(got[-1] if got else first)})
    s.head()
    rest = sent[len(got):]
    assert [e[0] for e in s.events(len(rest))] == rest
    s.close()


def test_lapped_ring_refills_from_the_database(pg, gateway):
    """The worker stopped while more than its ring passes: the stream is
    filled again from bus_bus, every event once, in order."""
    load_sql(pg)
    gw = gateway(workers=1, config='ring_size = "64k";\n',
                 extra_args=["--log-level", "debug"])
    ready(gw)
    s = Stream(gw.port, sse_path(["lap"], last=top(pg)))
    s.head()
    attached(gw)
    first = send(pg, "lap", 0)
    assert s.event()[0] == first
    [worker] = gw.worker_pids()
    os.kill(worker, signal.SIGSTOP)
    try:
        sent = [send(pg, "lap", "z" * 2000) for _ in range(100)]
        time.sleep(1)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert [e[0] for e in s.events(100)] == sent
    gw.wait_log("sse: the ring lapped the worker", 10)
    after = send(pg, "lap", "after")
    assert s.event()[0] == after
    s.close()


def test_reload_closes_streams_as_a_trickle(pg, gateway):
    """SIGHUP: the old workers retire and end their streams spread over
    shutdown_timeout (not all at once); every client resuming with its
    Last-Event-ID on the new workers gets what was published meanwhile,
    nothing twice."""
    load_sql(pg)
    gw = gateway(workers=None, config="workers = 1;\nshutdown_timeout = 8;\n",
                 extra_args=["--log-level", "info"])
    ready(gw)
    old = set(gw.worker_pids())
    base = top(pg)
    streams = [Stream(gw.port, sse_path(["hup"], last=base))
               for _ in range(40)]
    for s in streams:
        assert s.head()[0] == 200
    first = send(pg, "hup", 0)
    for s in streams:
        assert s.event()[0] == first

    gw.write_config("workers = 1;\nshutdown_timeout = 8;\n")
    gw.signal(signal.SIGHUP)
    gw.wait_log("configuration reloaded")
    gw.wait_log("retiring: 40 sse stream(s) closed over", 10)

    # a trickle: when the first stream has ended, others are still open,
    # not all cut in one go (whatever the order)
    wait_until(lambda: any(at_eof(s) for s in streams), 10,
               what="a first stream ended")
    assert sum(not at_eof(s) for s in streams) > 0
    during = [send(pg, "hup", i) for i in range(1, 4)]
    ends = []
    for s in streams:
        got = [e[0] for e in s.rest()]
        assert got == during[:len(got)]
        ends.append(got[-1] if got else first)
    for s in streams:
        s.close()
    wait_until(lambda: not (old & set(gw.worker_pids())), 15)

    after = send(pg, "hup", 4)
    for last in ends:
        s = Stream(gw.port, sse_path(["hup"]),
                   headers={"Last-Event-ID": str(last)})
        assert s.head()[0] == 200
        want = [i for i in during + [after] if i > last]
        assert [e[0] for e in s.events(len(want))] == want
        s.close()
