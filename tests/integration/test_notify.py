"""The notification path: NOTIFY -> master fetch -> shared ring -> parked
polls in every worker, with Odoo's poll protocol (8-14 and 15 shapes).

Messages are published as Odoo does it: a bus_bus row, committed, then
NOTIFY imbus on database postgres.
"""

import json
import os
import re
import selectors
import socket
import time

import psycopg

from conftest import alive, json_dump, wait_until


def parked(gw):
    return gw.log().count("poll parked")


def start(gateway, workers=2, timeout=None, extra=(),
          ready='database "lpgtest": Odoo 14 bus shapes'):
    args = ["--log-level", "debug"] + list(extra)
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    gw = gateway(workers=workers, extra_args=args)
    gw.wait_log(ready)
    return gw


def ids(answer):
    return [n["id"] for n in answer["result"]]


def test_notify_reaches_parked_polls_in_every_worker(pg, gateway):
    gw = start(gateway, workers=4)
    futures = [gw.poll_async(["room"], rpc_id=i) for i in range(40)]
    wait_until(lambda: parked(gw) >= 40, 10, what="40 parked polls")
    workers = set(re.findall(r"(worker#\d) \d+ debug: poll parked", gw.log()))
    assert len(workers) >= 3, workers

    bus_id = pg.send("lpgtest", "room", {"text": "hello"})
    for i, f in enumerate(futures):
        answer = f.result(10)
        assert answer["id"] == i
        assert answer["result"] == [{"id": bus_id, "channel": "room",
                                     "message": {"text": "hello"}}]


def test_odoo14_shape_and_private_channels(pg, gateway):
    gw = start(gateway)
    f = gw.poll_async(["c14"])
    wait_until(lambda: parked(gw) >= 1, 10)
    # a tuple channel as the server adds it never reaches a client's poll
    pg.send("lpgtest", ["lpgtest", "res.partner", 3], "private")
    bus_id = pg.send("lpgtest", "c14", ["a", 1])
    answer = f.result(10)
    assert answer == {"jsonrpc": "2.0", "id": 1,
                      "result": [{"id": bus_id, "channel": "c14",
                                  "message": ["a", 1]}]}


def test_odoo15_shape_and_broadcast(pg, gateway):
    gw = start(gateway, extra=["-d", "lpgtest,lpgtest15"])
    gw.wait_log('database "lpgtest15": Odoo 15 bus shapes')
    f = gw.poll_async(["c15"], db="lpgtest15")
    wait_until(lambda: parked(gw) >= 1, 10)
    bus_id = pg.send("lpgtest15", ["lpgtest15", "c15"],
                     {"type": "t", "payload": {"x": 1}})
    assert f.result(10)["result"] == [
        {"id": bus_id, "message": {"type": "t", "payload": {"x": 1}}}]

    # the implicit broadcast channel, with no channel asked for
    f = gw.poll_async([], db="lpgtest15", last=bus_id)
    wait_until(lambda: parked(gw) >= 2, 10)
    b_id = pg.send("lpgtest15", ["lpgtest15", "broadcast"],
                   {"type": "b", "payload": None})
    assert ids(f.result(10)) == [b_id]

    # the 8-14 database on the same gateway keeps its shape
    n_id = pg.send("lpgtest", "c15", 1)
    answer = gw.poll(["c15"], last=n_id - 1, db="lpgtest")
    assert answer["result"] == [{"id": n_id, "channel": "c15", "message": 1}]


def test_last_semantics_and_peek(pg, gateway):
    gw = start(gateway, timeout=1)
    a = pg.send("lpgtest", "lst", 1)
    b = pg.send("lpgtest", "lst", 2)
    c = pg.send("lpgtest", "lst", 3)
    wait_until(lambda: gw.poll(["lst"], last=c - 1)["result"], 10)

    assert ids(gw.poll(["lst"], last=0)) == [a, b, c]
    assert ids(gw.poll(["lst"], last=a)) == [b, c]
    assert ids(gw.poll(["lst", "other"], last=b)) == [c]

    # nothing newer than last: held until the timeout, then []
    assert gw.poll(["lst"], last=c, timeout=10)["result"] == []

    peek = gw.poll(["lst"], last=a, options={"peek": True})
    assert peek["result"]["notifications"][0]["id"] == b
    assert peek["result"]["channels"] == ["lst"]


def test_timeout_answers_empty(gateway):
    gw = start(gateway, timeout=1)
    t0 = time.monotonic()
    assert gw.poll(["quiet"], timeout=10)["result"] == []
    assert time.monotonic() - t0 < 8   # answered by lpgate, not the client


def test_non_string_channel_error(gateway):
    gw = start(gateway)
    answer = gw.poll([["lpgtest", "res.partner", 3]])
    assert "result" not in answer
    err = answer["error"]
    assert err["code"] == 200
    assert err["message"] == "Odoo Server Error"
    assert err["data"]["message"] == "bus.Bus only string channels are allowed."
    assert err["data"]["name"] == "builtins.Exception"


def test_bad_requests_are_jsonrpc_errors(gateway):
    gw = start(gateway)
    status, _, data = gw.http("POST", "/longpolling/poll", "{not json")
    assert status == 200 and "error" in json.loads(data)
    status, _, data = gw.http("POST", "/longpolling/poll",
                              {"params": {"channels": "x", "last": 0}})
    assert "channels" in json.loads(data)["error"]["data"]["message"]
    status, _, data = gw.http("POST", "/longpolling/poll",
                              {"params": {"channels": [], "last": "x"}})
    assert "last" in json.loads(data)["error"]["data"]["message"]
    status, _, data = gw.http("POST", "/longpolling/poll?db=nope",
                              {"params": {"channels": [], "last": 0}})
    assert "error" in json.loads(data)
    assert gw.health()[0] == 200


def test_out_of_order_commits_are_not_lost(pg, gateway):
    gw = start(gateway)
    early = gw.poll_async(["ooo"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)

    t1 = psycopg.connect(pg.dsn("lpgtest"))
    t2 = psycopg.connect(pg.dsn("lpgtest"))
    # t1 takes the smaller id but commits last
    [(a,)] = t1.execute("INSERT INTO bus_bus (channel, message) VALUES "
                        "('\"ooo\"', '1') RETURNING id").fetchall()
    [(b,)] = t2.execute("INSERT INTO bus_bus (channel, message) VALUES "
                        "('\"ooo\"', '2') RETURNING id").fetchall()
    assert a < b
    t2.commit()
    pg.sql("SELECT pg_notify('imbus', '[\"ooo\"]')")
    # a poll that arrives between the two commits
    time.sleep(0.3)
    between = gw.poll_async(["ooo"], last=0)
    wait_until(lambda: parked(gw) >= 2 or between.done(), 10)
    t1.commit()
    pg.sql("SELECT pg_notify('imbus', '[\"ooo\"]')")

    for f in (early, between):
        seen = ids(f.result(10))
        last = max(seen)
        while len(set(seen)) < 2:
            seen += ids(gw.poll(["ooo"], last=last))
            last = max(seen)
        assert sorted(set(seen)) == [a, b]
    t1.close()
    t2.close()


def test_rolled_back_gap_does_not_block(pg, gateway):
    gw = start(gateway)
    with psycopg.connect(pg.dsn("lpgtest")) as t1:
        t1.execute("INSERT INTO bus_bus (channel, message) VALUES "
                   "('\"gap\"', '1')")
        t1.rollback()
    f = gw.poll_async(["gap"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)
    b = pg.send("lpgtest", "gap", 2)
    assert ids(f.result(10)) == [b]
    gw.wait_log("never committed (rolled back)")


def listen_pid(pg):
    rows = pg.sql("SELECT pid FROM pg_stat_activity WHERE query ILIKE "
                  "'%LISTEN%' AND application_name LIKE 'lpgate:%'")
    return rows[0][0] if rows else None


def test_listen_connection_killed(pg, gateway):
    gw = start(gateway)
    f = gw.poll_async(["lk"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)
    pid = wait_until(lambda: listen_pid(pg), 10)
    pg.sql("SELECT pg_terminate_backend(%s)", (pid,))
    # committed (and notified) while the listener is probably down
    bus_id = pg.send("lpgtest", "lk", "during")
    assert ids(f.result(10)) == [bus_id]
    gw.wait_log("LISTEN connection: read failed")
    assert gw.log_contains("retrying in 0.1 s")
    wait_until(lambda: gw.log().count("LISTEN connection up") >= 2, 10)


def test_postgres_restart_with_polls_parked(pg, gateway):
    gw = start(gateway)
    futures = [gw.poll_async(["rs"], last=0, timeout=30) for _ in range(5)]
    wait_until(lambda: parked(gw) >= 5, 10)
    pg.restart()
    wait_until(lambda: gw.health()[0] == 200, 15, what="/health to pass")
    bus_id = pg.send("lpgtest", "rs", "after restart")
    for f in futures:
        assert ids(f.result(20)) == [bus_id]


def test_queries_do_not_grow_with_waiting_polls(pg, gateway):
    """2,000 parked polls, 100 notifications: the database work is a small
    constant per notification, and lpgate's connections stay within
    (1 + workers) * db_maxconn."""
    workers, maxconn = 2, 4
    gw = start(gateway, workers=workers, extra=["--db-maxconn", str(maxconn),
                                                "--log-level", "info"])
    pg.sql("SELECT pg_stat_statements_reset()")
    # psycopg waits with select(): open its connections before the sockets
    conns = (pg.connect("lpgtest"), pg.connect("postgres"))
    base = pg.send("lpgtest", "many", "warm-up", conns=conns)
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1,
                       "params": {"channels": ["many"], "last": base}})
    req = ("POST /longpolling/poll HTTP/1.1\r\nHost: x\r\n"
           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode()

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(2000):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    time.sleep(1)

    sent = [pg.send("lpgtest", "many", i, conns=conns) for i in range(100)]

    answered = 0
    deadline = time.monotonic() + 30
    while answered < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            chunk = key.fileobj.recv(65536)
            key.data.extend(chunk)
            if b"\r\n\r\n" in key.data and key.data.endswith(b"}"):
                sel.unregister(key.fileobj)
                answered += 1
    for s in socks:
        s.close()
    conns[0].close()
    conns[1].close()
    assert answered == 2000

    wait_until(lambda: gw.poll(["many"], last=sent[-1] - 1)["result"], 10)
    rows = pg.sql("SELECT query, calls FROM pg_stat_statements WHERE "
                  "dbid = (SELECT oid FROM pg_database WHERE datname = "
                  "'lpgtest') AND query ILIKE '%bus_bus%' "
                  "AND query NOT ILIKE 'INSERT%'")
    calls = sum(c for _, c in rows)
    print("bus_bus queries by lpgate for 101 notifications:", calls, rows)
    assert calls <= 2 * 101 + 10

    conns = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                   "application_name LIKE 'lpgate%'")[0][0]
    assert conns <= (1 + workers) * maxconn


def test_backfill_answers_from_the_database(pg, gateway):
    """Rows older than a worker's history come from one shared query."""
    old = [pg.send("lpgtest", "bf", i, notify=False) for i in range(3)]
    gw = start(gateway, workers=1, extra=["--db-maxconn", "2"])
    pg.sql("SELECT pg_stat_statements_reset()")

    # Odoo's last=0: the notifications of the last 50 s, from the database
    assert ids(gw.poll(["bf"], last=0)) == old
    # a last older than what the gateway saw at start
    assert ids(gw.poll(["bf"], last=old[0])) == old[1:]

    futures = [gw.poll_async(["bf"], last=old[0]) for _ in range(40)]
    for f in futures:
        assert ids(f.result(10)) == old[1:]
    rows = pg.sql("SELECT calls FROM pg_stat_statements WHERE query ILIKE "
                  "'%channel = ANY%'")
    calls = sum(c for (c,) in rows)
    print("backfill queries for 42 polls:", calls)
    assert 1 <= calls < 42
    conns = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                   "application_name = 'lpgate worker'")[0][0]
    assert conns <= 2


def test_bad_notify_payload_is_not_fatal(pg, gateway):
    gw = start(gateway)
    f = gw.poll_async(["bp"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)
    bus_id = pg.send("lpgtest", "bp", 1, notify=False)
    pg.sql("NOTIFY imbus, 'this is not json'")
    # the master fetched every database anyway
    assert ids(f.result(10)) == [bus_id]
    gw.wait_log("NOTIFY payload is not a JSON array")
    assert gw.health()[0] == 200


def test_rows_that_are_not_json_are_skipped_with_a_reason(pg, gateway):
    """The master checks every row's channel and message (lpg_json_check):
    a row that is not JSON is logged with jansson's reason and skipped,
    the rows around it are delivered, and so is a row whose JSON is only
    unusual (escapes, a surrogate pair, deep nesting, a big integer)."""
    gw = start(gateway)
    f = gw.poll_async(["nj"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)
    before = pg.send("lpgtest", "nj", 1, notify=False)
    bad = [("\"nj\"", '{"a": 1'),
           ("\"nj\"", "[1, 2,]"),
           ("\"nj\"", '"\\ud800"'),
           ("\"nj\"", "9223372036854775808"),
           ("nj", "1")]
    bad_ids = [pg.sql("INSERT INTO bus_bus (channel, message) VALUES "
                      "(%s, %s) RETURNING id", (c, m), dbname="lpgtest")[0][0]
               for c, m in bad]
    odd = '{"t": "\\u00e9\\ud83d\\ude00", "n": 9223372036854775807, ' \
          '"d": ' + "[" * 100 + "]" * 100 + "}"
    [(good,)] = pg.sql("INSERT INTO bus_bus (channel, message) VALUES "
                       "('\"nj\"', %s) RETURNING id", (odd,),
                       dbname="lpgtest")
    pg.sql("SELECT pg_notify('imbus', '[\"nj\"]')")
    answer = f.result(10)
    got = ids(answer)
    if got == [before]:
        got += ids(gw.poll(["nj"], last=before))
    assert got == [before, good]
    assert answer["result"][0]["message"] == 1
    last = gw.poll(["nj"], last=before)["result"][-1]["message"]
    assert last["t"] == "\u00e9\U0001F600"
    assert last["n"] == 9223372036854775807
    for bus_id in bad_ids:
        gw.wait_log("bus id %d skipped, its channel or message is not JSON ("
                    % bus_id)
    assert "refused by lpg_json_check" not in gw.log()


def test_cors_for_odoo13_and_later(gateway):
    gw = start(gateway, extra=["-d", "lpgtest15"],
               ready='database "lpgtest15": Odoo 15 bus shapes')
    status, headers, _ = gw.http("OPTIONS", "/longpolling/poll")
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    status, headers, _ = gw.http("POST", "/longpolling/poll",
                                 {"params": {"channels": [], "last": 1,
                                             "options": {"peek": True}}})
    assert headers["access-control-allow-origin"] == "*"


def test_closed_client_is_freed_at_once(gateway):
    gw = start(gateway, workers=1)
    body = json.dumps({"params": {"channels": ["gone"], "last": 1}})
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(("POST /longpolling/poll HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
               "%s" % (len(body), body)).encode())
    wait_until(lambda: parked(gw) >= 1, 10)
    s.close()
    gw.wait_log("poll freed: client closed", 5)


def test_database_from_query_dbfilter_or_single(pg, gateway):
    gw = start(gateway, extra=["-d", "lpgtest,lpgtest15",
                               "--db-filter", "%d$"])
    gw.wait_log('database "lpgtest15": Odoo 15 bus shapes')
    a = pg.send("lpgtest", "sel", "in lpgtest")
    b = pg.send("lpgtest15", ["lpgtest15", "sel"],
                {"type": "t", "payload": "in 15"})

    def poll_host(host, last, path="/longpolling/poll"):
        body = {"params": {"channels": ["sel"], "last": last}}
        status, _, data = gw.http("POST", path, body,
                                  headers={"Host": host})
        return json.loads(data)

    assert ids(poll_host("lpgtest.example.com:8069", a - 1)) == [a]
    assert ids(poll_host("www.lpgtest15.example.com", b - 1)) == [b]
    # ?db= wins over the Host header
    assert ids(poll_host("lpgtest15.example.com", a - 1,
                         "/longpolling/poll?db=lpgtest")) == [a]
    # no match and several databases: an error, not a guess
    answer = poll_host("other.example.com", 0)
    assert "error" in answer and "result" not in answer


def test_send_is_off_by_default(gateway):
    gw = start(gateway)
    status, _, _ = gw.http("POST", "/longpolling/send",
                           {"params": {"channel": "x", "message": 1}})
    assert status == 404


def test_send_when_allowed(pg, gateway):
    gw = gateway(workers=2, config='allow_send = true;\n'
                 'send_channels = "chat-*, public";\nsend_max_bytes = 100;\n',
                 extra_args=["--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    f = gw.poll_async(["chat-1"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)

    def send(channel, message):
        status, _, data = gw.http("POST", "/longpolling/send",
                                  {"id": 5, "params": {"channel": channel,
                                                       "message": message}})
        assert status == 200
        return json.loads(data)

    assert send("chat-1", {"text": "hi"}) == {"jsonrpc": "2.0", "id": 5,
                                              "result": None}
    answer = f.result(10)
    assert [(n["channel"], n["message"]) for n in answer["result"]] == \
        [("chat-1", {"text": "hi"})]
    row = pg.sql("SELECT channel, message FROM bus_bus ORDER BY id DESC "
                 "LIMIT 1", dbname="lpgtest")
    assert row == [('"chat-1"', '{"text":"hi"}')]

    assert "not open" in send("secret", 1)["error"]["data"]["message"]
    assert send(["lpgtest", "res.partner", 3], 1)["error"]["data"][
        "message"] == "bus.Bus only string channels are allowed."
    assert "send_max_bytes" in send("public", "x" * 200)["error"]["data"][
        "message"]


def test_odoo_version_override(pg, gateway):
    gw = gateway(workers=1, config="odoo_version = 15;\n",
                 extra_args=["--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo 15 bus shapes')
    f = gw.poll_async(["ov"], last=0)
    wait_until(lambda: parked(gw) >= 1, 10)
    bus_id = pg.send("lpgtest", ["lpgtest", "ov"], {"type": "x",
                                                    "payload": 1})
    assert f.result(10)["result"] == [
        {"id": bus_id, "message": {"type": "x", "payload": 1}}]


def test_too_many_databases_for_db_maxconn(pg):
    from conftest import free_port, run_lpgate
    r = run_lpgate(["--db-host", pg.host, "--db-port", str(pg.port),
                    "--db-user", pg.user, "-d", "lpgtest,lpgtest15",
                    "--db-maxconn", "2", "-p", str(free_port())])
    assert r.returncode == 2
    assert "raise db_maxconn" in r.stderr


def test_sigquit_answers_parked_polls(gateway):
    """SIGQUIT: every one of 5,000 parked polls is answered [] (so its
    client re-polls at once) before the process exits 0."""
    import signal
    gw = start(gateway, workers=2)
    body = json.dumps({"params": {"channels": ["q"], "last": 1}})
    req = ("POST /longpolling/poll HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode()
    sel = selectors.DefaultSelector()
    for _ in range(5000):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    wait_until(lambda: parked(gw) >= 5000, 20)
    gw.signal(signal.SIGQUIT)
    empty = 0
    deadline = time.monotonic() + 20
    while empty < 5000 and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            chunk = key.fileobj.recv(65536)
            key.data.extend(chunk)
            if not chunk or key.data.endswith(b"}"):
                head, _, payload = bytes(key.data).partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert json.loads(payload)["result"] == []
                sel.unregister(key.fileobj)
                key.fileobj.close()
                empty += 1
    assert empty == 5000
    assert gw.wait(10) == 0


def test_plain_get_api_and_sql_send(pg, gateway):
    """Non-Odoo applications: GET <path>/poll?channels=&last= answers a bare
    JSON array; contrib/sql/lpgate.sql publishes from SQL (NOTIFY in the
    served database itself)."""
    import urllib.parse
    from conftest import SRCDIR
    with open(os.path.join(SRCDIR, "contrib", "sql", "lpgate.sql")) as f:
        pg.sql(f.read(), dbname="lpgtest")
    gw = start(gateway)
    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")
    path = "/longpolling/poll?" + urllib.parse.urlencode(
        {"channels": "plain-\u00e9,other", "last": last})
    f = gw.executor.submit(gw.http, "GET", path, None, None, 15)
    wait_until(lambda: parked(gw) >= 1, 10)
    [(bus_id,)] = pg.sql("SELECT lpgate_send('plain-\u00e9', "
                         "'{\"a\": 1}')", dbname="lpgtest")
    status, headers, body = f.result(15)
    assert status == 200
    assert json.loads(body) == [{"id": bus_id, "channel": "plain-\u00e9",
                                 "message": {"a": 1}}]
    # stored exactly as Odoo's json_dump would
    [(chan,)] = pg.sql("SELECT channel FROM bus_bus WHERE id = %s",
                       (bus_id,), dbname="lpgtest")
    assert chan == json_dump("plain-\u00e9") == '"plain-\\u00e9"'

    status, _, body = gw.http("GET", "/longpolling/poll?channels=x&last=z")
    assert status == 400 and "last" in json.loads(body)["error"]


def test_reload_cuts_no_parked_poll(pg, gateway):
    """SIGHUP with a valid new configuration: the old workers retire (no
    new connections, parked polls answered as usual), so 5,000 parked
    polls all get the notification sent right after the change."""
    import selectors
    import signal
    gw = gateway(workers=None, config="workers = 2;\ntimeout = 50;\n",
                 extra_args=["--log-level", "info"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    conns = (pg.connect("lpgtest"), pg.connect("postgres"))
    [(last,)] = conns[0].execute(
        "SELECT coalesce(max(id), 0) FROM bus_bus").fetchall()
    body = json.dumps({"params": {"channels": ["reload"], "last": last}})
    req = ("POST /longpolling/poll HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode()
    old = set(gw.worker_pids())

    sel = selectors.DefaultSelector()
    for _ in range(5000):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    time.sleep(1.5)

    gw.write_config("workers = 2;\ntimeout = 45;\n")
    gw.signal(signal.SIGHUP)
    gw.wait_log("configuration reloaded")
    wait_until(lambda: len(set(gw.worker_pids()) - old) == 2, 10)
    assert old <= set(gw.worker_pids())    # retiring, still serving

    bus_id = pg.send("lpgtest", "reload", "after the reload", conns=conns)
    got = 0
    deadline = time.monotonic() + 30
    while got < 5000 and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            key.data.extend(key.fileobj.recv(65536))
            if key.data.endswith(b"]}"):
                head, _, payload = bytes(key.data).partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert [n["id"] for n in json.loads(payload)["result"]] == \
                    [bus_id]
                sel.unregister(key.fileobj)
                key.fileobj.close()
                got += 1
    conns[0].close()
    conns[1].close()
    assert got == 5000
    # with nothing left to serve, the old generation exits
    wait_until(lambda: not (old & set(gw.worker_pids())), 10)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def test_binary_upgrade_drops_no_poll(pg, gateway):
    """SIGUSR2 starts a new master on the inherited listening sockets; the
    old one's workers retire on SIGWINCH, still answering their parked
    polls; SIGQUIT ends the old master.  5,000 polls parked before the
    upgrade all get the notification sent after it; new requests meet the
    new master's workers."""
    import signal
    gw = gateway(workers=2, extra_args=["--log-level", "info"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    conns = (pg.connect("lpgtest"), pg.connect("postgres"))
    [(last,)] = conns[0].execute(
        "SELECT coalesce(max(id), 0) FROM bus_bus").fetchall()
    body = json.dumps({"params": {"channels": ["upgrade"], "last": last}})
    req = ("POST /longpolling/poll HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode()
    old_workers = set(gw.worker_pids())

    sel = selectors.DefaultSelector()
    for _ in range(5000):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    time.sleep(1.5)

    new_master = 0
    try:
        gw.signal(signal.SIGUSR2)
        gw.wait_log("took over 2 listening socket(s)")
        new_master = wait_until(
            lambda: (read_pid(gw.pidfile) not in (0, gw.pid)
                     and read_pid(gw.pidfile)), 10, what="the new pidfile")
        assert read_pid(gw.pidfile + ".oldbin") == gw.pid
        wait_until(lambda: gw.log().count("LISTEN connection up") >= 2, 10)

        gw.signal(signal.SIGWINCH)
        gw.wait_log("SIGWINCH: retiring the workers")

        bus_id = pg.send("lpgtest", "upgrade", "after the upgrade",
                         conns=conns)
        got = 0
        deadline = time.monotonic() + 30
        while got < 5000 and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                key.data.extend(key.fileobj.recv(65536))
                if key.data.endswith(b"]}"):
                    head, _, payload = bytes(key.data).partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head
                    assert [n["id"] for n in
                            json.loads(payload)["result"]] == [bus_id]
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    got += 1
        assert got == 5000

        # the old master ends; the new one serves on the same port
        gw.signal(signal.SIGQUIT)
        assert gw.wait(20) == 0
        assert not any(os.path.exists("/proc/%d" % p) for p in old_workers)
        assert read_pid(gw.pidfile) == new_master
        wait_until(lambda: gw.health()[0] == 200, 10)
        f = gw.poll_async(["upgrade"], last=bus_id)
        time.sleep(0.5)
        b2 = pg.send("lpgtest", "upgrade", "served by the new master",
                     conns=conns)
        assert [n["id"] for n in f.result(10)["result"]] == [b2]
    finally:
        conns[0].close()
        conns[1].close()
        if new_master:
            os.kill(new_master, signal.SIGQUIT)
            wait_until(lambda: not alive(new_master), 15)


def test_killed_worker_costs_only_its_own_polls(pg, gateway):
    import signal
    gw = start(gateway, workers=2)
    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")
    futures = [gw.poll_async(["k9"], last=last, timeout=20)
               for _ in range(30)]
    wait_until(lambda: parked(gw) >= 30, 10)
    per_worker = {}
    for m in re.finditer(r"worker#(\d) (\d+) debug: poll parked", gw.log()):
        per_worker[int(m.group(2))] = per_worker.get(int(m.group(2)), 0) + 1
    victim = max(per_worker, key=per_worker.get)
    survivors = 30 - per_worker[victim]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in gw.worker_pids()
               and len(gw.worker_pids()) == 2, 5)
    bus_id = pg.send("lpgtest", "k9", "after the crash")
    ok = cut = 0
    for f in futures:
        try:
            assert [n["id"] for n in f.result(15)["result"]] == [bus_id]
            ok += 1
        except (OSError, AssertionError, Exception):
            cut += 1
    assert ok == survivors and cut == 30 - survivors


def test_any_lpgate_connection_killed_loses_nothing(pg, gateway):
    """pg_terminate_backend of every lpgate connection (LISTEN, the
    master's fetch connection, worker pools): a message committed right
    then still reaches the parked poll."""
    gw = start(gateway)
    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")
    gw.poll(["warm"], last=0, options={"peek": True})  # a pool connection
    f = gw.poll_async(["tb"], last=last, timeout=20)
    wait_until(lambda: parked(gw) >= 1, 10)
    killed = pg.sql("SELECT count(pg_terminate_backend(pid)) FROM "
                    "pg_stat_activity WHERE application_name LIKE "
                    "'lpgate%'")[0][0]
    assert killed >= 3
    bus_id = pg.send("lpgtest", "tb", "while reconnecting")
    assert ids(f.result(15)) == [bus_id]
