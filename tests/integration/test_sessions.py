"""Odoo sessions (issue 8): a poll's session_id cookie, resolved by Odoo
(the stand-in of odoo_standin.py, a real HTTP server on the real test
database), adds the user's own channels; presence is written in batches;
im_status is answered from the database with Odoo's rules.
"""

import concurrent.futures
import datetime
import json
import time

import pytest

from conftest import wait_until
from odoo_standin import OdooStandin


@pytest.fixture
def odoo(pg):
    s = OdooStandin({"lpgtest": (pg.dsn("lpgtest"), 14),
                     "lpgtest15": (pg.dsn("lpgtest15"), 15)}).start()
    yield s
    s.stop()


def start(gateway, odoo, workers=2, dbs="lpgtest", timeout=4, ttl=30,
          presence=20, config=""):
    gw = gateway(workers=workers,
                 config="session_retry = 1;\n" + config,
                 extra_args=["-d", dbs, "--odoo-url", odoo.url,
                             "--timeout", str(timeout),
                             "--session-ttl", str(ttl),
                             "--presence-interval", str(presence),
                             "--log-level", "debug"])
    for db in dbs.split(","):
        gw.wait_log('database "%s": Odoo' % db)
    return gw


def poll(gw, channels=(), last=None, sid=None, dgid=None, db=None,
         options=None, timeout=15):
    """One JSON-RPC poll with Odoo's cookies; the parsed answer."""
    cookie = "; ".join(x for x in (
        "frontend_lang=en_US",
        sid and "session_id=" + sid,
        dgid and "dgid=" + dgid) if x)
    body = {"jsonrpc": "2.0", "method": "call", "id": 7,
            "params": {"channels": list(channels), "last": last,
                       "options": options or {}}}
    path = "/longpolling/poll" + ("?db=" + db if db else "")
    status, _, data = gw.http("POST", path, body, {"Cookie": cookie},
                              timeout=timeout)
    assert status == 200, (status, data)
    answer = json.loads(data)
    assert "error" not in answer, answer
    return answer


def poll_async(gw, **kw):
    return pool.submit(poll, gw, **kw)


pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)


def last_id(pg, db):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=db)[0][0]


def parked(gw, n):
    wait_until(lambda: gw.log().count("poll parked") >= n, 10,
               what="%d parked polls" % n)


def messages(answer):
    return [n["message"] for n in answer["result"]]


@pytest.mark.parametrize("db,version", [("lpgtest", 14), ("lpgtest15", 15)])
@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_logged_in_session_gets_its_own_channels(pg, gateway, odoo, db,
                                                 version, addon):
    odoo.addon = addon
    uid_a, pid_a = odoo.user(db, "alice", channels=["general-%d" % version])
    uid_b, pid_b = odoo.user(db, "bob")
    cid = odoo.channel(db, "general-%d" % version)
    sid_a, sid_b = odoo.login(db, uid_a), odoo.login(db, uid_b)
    gw = start(gateway, odoo, dbs=db)
    last = last_id(pg, db)

    # the browser names no channel (15) or only its own strings (14)
    fa = poll_async(gw, last=last, sid=sid_a)
    fb = poll_async(gw, last=last, sid=sid_b, channels=["bundle_changed"])
    parked(gw, 2)
    t = pg.send(db, [db, "res.partner", pid_a], {"to": "alice"})
    assert [n["id"] for n in fa.result()["result"]] == [t]
    assert messages(fa.result()) == [{"to": "alice"}]
    # bob is another user: nothing of alice's reaches him
    assert fb.result()["result"] == []

    # a discussion channel alice belongs to, bob does not
    fa = poll_async(gw, last=t, sid=sid_a)
    fb = poll_async(gw, last=t, sid=sid_b)
    parked(gw, 4)
    c = pg.send(db, [db, "mail.channel", cid], {"in": "general"})
    assert messages(fa.result()) == [{"in": "general"}]
    assert fb.result()["result"] == []

    # a client string channel still goes through beside the session's
    f = poll_async(gw, last=c, sid=sid_b, channels=["bundle_changed"])
    parked(gw, 5)
    key = [db, "bundle_changed"] if version >= 15 else "bundle_changed"
    pg.send(db, key, {"bundle": 1})
    assert messages(f.result()) == [{"bundle": 1}]

    if version < 15:
        # 14's mail also listens on ir.needaction for the partner
        f = poll_async(gw, last=c, sid=sid_a)
        parked(gw, 6)
        pg.send(db, [db, "ir.needaction", pid_a], {"needaction": 1})
        assert {"needaction": 1} in messages(f.result())

    # what was asked: the addon's route, or Odoo's own route + SQL
    if addon:
        assert odoo.count("/lpgate/session") >= 2
        assert odoo.count("/web/session/get_session_info") == 0
    else:
        assert odoo.count("/web/session/get_session_info") >= 2
        gw.wait_log("no /lpgate/session")


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_forged_and_expired_cookies_get_nothing_private(pg, gateway, odoo,
                                                        addon):
    db = "lpgtest15"
    odoo.addon = addon
    uid, pid = odoo.user(db, "carol")
    sid = odoo.login(db, uid)
    gw = start(gateway, odoo, dbs=db, ttl=1)
    last = last_id(pg, db)

    good = poll_async(gw, last=last, sid=sid)
    forged = poll_async(gw, last=last, sid="f" * 40)
    # a cookie with a header-smuggling attempt is not even sent to Odoo
    parked(gw, 2)
    t = pg.send(db, [db, "res.partner", pid], {"secret": 1})
    assert messages(good.result()) == [{"secret": 1}]
    assert forged.result()["result"] == []

    # Odoo forgets the session (logout, expiry): once lpgate's cached word
    # is older than session_ttl, the cookie is worth nothing
    odoo.expire(sid)
    time.sleep(1.5)
    f = poll_async(gw, last=t, sid=sid)
    parked(gw, 3)
    pg.send(db, [db, "res.partner", pid], {"secret": 2})
    assert f.result()["result"] == []


def test_guest_cookie_15(pg, gateway, odoo):
    db = "lpgtest15"
    odoo.default_db = db
    for addon in (True, False):
        odoo.addon = addon
        gid, dgid = odoo.guest(db, "visitor", channels=["livechat-%s" % addon])
        cid = odoo.channel(db, "livechat-%s" % addon)
        gw = start(gateway, odoo, dbs=db)
        last = last_id(pg, db)
        f = poll_async(gw, last=last, dgid=dgid)
        bad = poll_async(gw, last=last, dgid="%d|%s" % (gid, "0" * 32))
        parked(gw, 2)
        pg.send(db, [db, "mail.channel", cid], {"chat": addon})
        assert messages(f.result()) == [{"chat": addon}]
        assert bad.result()["result"] == []
        gw.stop()


def test_many_polls_of_one_session_share_one_lookup_per_ttl(pg, gateway,
                                                            odoo):
    db = "lpgtest15"
    uid, pid = odoo.user(db, "dave")
    sid = odoo.login(db, uid)
    # a slow Odoo: the first polls all wait on the same lookup
    odoo.delay = 0.3
    # a TTL the 1,000 polls cannot outlast, however loaded the machine
    gw = start(gateway, odoo, dbs=db, workers=2, ttl=300)
    # (last = t - 1 must not be 0, Odoo's "the last timeout seconds")
    pg.send(db, [db, "nobody"], {})
    t = pg.send(db, [db, "res.partner", pid], {"for": "dave"})
    odoo.reset_counts()

    # every poll is answered at once with dave's message: each one did
    # get the session's channels
    futures = [poll_async(gw, sid=sid, last=t - 1) for _ in range(1000)]
    for f in futures:
        assert [n["id"] for n in f.result()["result"]] == [t]
    # one lookup for both workers: the other used the shared answer
    assert odoo.count("/lpgate/session") == 1
    assert gw.log_contains("answered by another worker's lookup")
    gw.stop()

    # the TTL passes: a gateway with a short one; each burst of polls
    # after an expiry costs one new lookup, counted at Odoo
    gw = start(gateway, odoo, dbs=db, workers=2, ttl=2)
    odoo.reset_counts()
    for burst in (1, 2, 3):
        futures = [poll_async(gw, sid=sid, last=t - 1) for _ in range(50)]
        for f in futures:
            assert [n["id"] for n in f.result()["result"]] == [t]
        assert odoo.count("/lpgate/session") == burst
        time.sleep(2.5)



def test_several_cookie_headers_are_read_as_one(pg, gateway, odoo):
    """nginx 1.22 passes an HTTP/2 request's cookies as several Cookie
    headers: session_id in the second one still names the session."""
    db = "lpgtest15"
    uid, pid = odoo.user(db, "ivan")
    sid = odoo.login(db, uid)
    gw = start(gateway, odoo, dbs=db, workers=1)
    pg.send(db, [db, "nobody"], {})
    t = pg.send(db, [db, "res.partner", pid], {"for": "ivan"})
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 5,
                       "params": {"channels": [], "last": t - 1}}).encode()
    raw = (b"POST /longpolling/poll HTTP/1.1\r\nHost: x\r\n"
           b"Cookie: frontend_lang=en_US; tz=UTC\r\n"
           b"Content-Type: application/json\r\n"
           b"Cookie: session_id=" + sid.encode() + b"\r\n"
           b"Cookie: cids=1\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    out = gw.raw(raw, timeout=10)
    head, _, data = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out
    answer = json.loads(data)
    assert [(n["id"], n["message"]) for n in answer["result"]] == [
        (t, {"for": "ivan"})]
    # Odoo was asked with the session found in the second header
    assert odoo.requests[-1][1] == "session_id=" + sid


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_session_of_another_database_is_served_from_it(pg, gateway, odoo,
                                                       addon):
    """Odoo takes request.db from the session, whatever the Host or ?db=
    chose: a poll for lpgtest with a session of lpgtest15 is served from
    lpgtest15 (its private channels, its namespaced string channels);
    a session of a database lpgate does not serve is served public."""
    odoo.addon = addon
    uid, pid = odoo.user("lpgtest15", "judy")
    sid = odoo.login("lpgtest15", uid)
    gw = start(gateway, odoo, dbs="lpgtest,lpgtest15")
    last = last_id(pg, "lpgtest15")

    f = poll_async(gw, last=last, sid=sid, db="lpgtest",
                   channels=["bundle_changed"])
    parked(gw, 1)
    gw.wait_log('session of database "lpgtest15" polled for "lpgtest": '
                'served from "lpgtest15"')
    t = pg.send("lpgtest15", ["lpgtest15", "res.partner", pid], {"to": "judy"})
    assert [(n["id"], n["message"]) for n in f.result()["result"]] == [
        (t, {"to": "judy"})]

    # the client's string channel is lpgtest15's now, as Odoo 15 names it
    f = poll_async(gw, last=t, sid=sid, db="lpgtest",
                   channels=["bundle_changed"])
    parked(gw, 2)
    pg.send("lpgtest", "bundle_changed", {"wrong": "database"})
    b = pg.send("lpgtest15", ["lpgtest15", "bundle_changed"], {"bundle": 15})
    assert [(n["id"], n["message"]) for n in f.result()["result"]] == [
        (b, {"bundle": 15})]
    gw.stop()

    # lpgate does not serve lpgtest15: public, as before
    gw = start(gateway, odoo, dbs="lpgtest")
    last = last_id(pg, "lpgtest")
    f = poll_async(gw, last=last, sid=sid, channels=["public"])
    parked(gw, 1)
    gw.wait_log('session of database "lpgtest15" polled for "lpgtest", a '
                'database lpgate does not serve: served public')
    n = pg.send("lpgtest", "public", {"public": 1})
    assert messages(f.result()) == [{"public": 1}]


def test_odoo_down_means_public_service_then_recovery(pg, gateway, odoo):
    db = "lpgtest15"
    uid, pid = odoo.user(db, "erin")
    sid = odoo.login(db, uid)
    gw = start(gateway, odoo, dbs=db, timeout=30)
    last = last_id(pg, db)
    odoo.stop()

    # no error: the poll is served as the public user, with its own string
    # channels, and held only session_retry (1 s) so it comes back soon
    f = poll_async(gw, last=last, sid=sid, channels=["public-news"])
    parked(gw, 1)
    n = pg.send(db, [db, "public-news"], {"news": 1})
    assert messages(f.result()) == [{"news": 1}]
    gw.wait_log("connect() to odoo_url")
    p = pg.send(db, [db, "res.partner", pid], {"private": 1})
    assert poll(gw, last=n, sid=sid, timeout=60)["result"] == []
    # held session_retry (1 s), on that deadline list, not the 30 s
    # timeout's (which the polls of known sessions are on)
    degraded = [line for line in gw.log().splitlines()
                if "poll parked" in line]
    assert degraded and all("held 1000 ms (list 1)" in line
                            for line in degraded), degraded

    # Odoo is back: the next lookup names the user, and the message sent
    # while Odoo was down is delivered from bus_bus
    odoo.start()
    time.sleep(1.2)
    got = poll(gw, last=n, sid=sid)
    assert [m["id"] for m in got["result"]] == [p]
    assert gw.health()[0] == 200
    # a known session's poll is on the timeout's list again
    f = poll_async(gw, last=p, sid=sid)
    wait_until(lambda: "held 30000 ms (list 0)" in gw.log(), 10,
               what="a poll on the timeout's list")
    q = pg.send(db, [db, "res.partner", pid], {"private": 2})
    assert [m["id"] for m in f.result()["result"]] == [q]


def test_presence_is_written_in_batches(pg, gateway, odoo):
    db = "lpgtest15"
    users = [odoo.user(db, "p%d" % i) for i in range(50)]
    sids = [odoo.login(db, u) for u, _ in users]
    uids = [u for u, _ in users]
    pg.sql("DELETE FROM presence_log", dbname=db)
    pg.sql("DELETE FROM bus_presence", dbname=db)
    workers = 2
    interval = 2
    gw = start(gateway, odoo, dbs=db, workers=workers, timeout=2,
               presence=interval)
    last = last_id(pg, db)

    # 50 users poll for 6 s, one poll after another, each with
    # bus_inactivity: Odoo would write and commit once per poll
    stop = time.monotonic() + 6
    polls = [0]
    # (UTC wall clock, as bus_presence holds it: when each user's last
    # poll began)
    began = {}

    def user_loop(sid, inactivity):
        while time.monotonic() < stop:
            began[sid] = datetime.datetime.utcnow()
            poll(gw, sid=sid, last=last,
                 options={"bus_inactivity": inactivity})
            polls[0] += 1

    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    loops = [pool.submit(user_loop, sid, 60000 * i)
             for i, sid in enumerate(sids)]
    # (generous: 50 first session lookups on a loaded machine)
    wait_until(lambda: pg.sql(
        "SELECT count(*) FROM bus_presence WHERE user_id = ANY(%s)",
        (uids,), dbname=db)[0][0] == 50, 30, what="50 presence rows")
    for f in loops:
        f.result()
    elapsed = time.monotonic() - t0

    # every user's last poll is written: last_poll is the time of a
    # presence statement that ran after that poll began
    last_began = {uid: began[sid] for uid, sid in zip(uids, sids)}

    def presence():
        return pg.sql("SELECT user_id, last_poll, last_presence FROM "
                      "bus_presence WHERE user_id = ANY(%s)", (uids,),
                      dbname=db)
    wait_until(lambda: len(presence()) == 50 and all(
        last_poll >= last_began[u] for u, last_poll, _ in presence()), 30,
        what="every user's last poll in bus_presence")
    read = datetime.datetime.utcnow()
    rows = presence()
    for user_id, last_poll, last_presence in rows:
        # last activity = a poll's time - its bus_inactivity (60 i s): one
        # of the polls made between the start and the read (ms rounding)
        i = uids.index(user_id)
        activity = last_presence + datetime.timedelta(seconds=60 * i)
        ms = datetime.timedelta(milliseconds=5)
        assert started - ms <= activity <= read + ms, (i, rows)

    stmts = pg.sql("SELECT backend, count(DISTINCT txid) FROM presence_log "
                   "WHERE app = 'lpgate presence' GROUP BY backend",
                   dbname=db)
    total = sum(n for _, n in stmts)
    print("presence: %d statements for %d polls in %.1f s, %d workers, "
          "interval %d s" % (total, polls[0], elapsed, workers, interval))
    # one statement per worker per interval at most
    assert 1 <= total <= workers * (elapsed / interval + 1), (total, elapsed)
    assert total < polls[0] / 4, (total, polls[0])
    assert pg.sql("SELECT count(*) FROM presence_log WHERE app <> "
                  "'lpgate presence'", dbname=db)[0][0] == 0


def im_status(gw, ids, sid=None, db=None):
    body = {"jsonrpc": "2.0", "method": "call", "id": 3,
            "params": {"partner_ids": ids}}
    headers = {"Cookie": "session_id=" + sid} if sid else {}
    path = "/longpolling/im_status" + ("?db=" + db if db else "")
    status, _, data = gw.http("POST", path, body, headers)
    assert status == 200
    return json.loads(data)


@pytest.mark.parametrize("db", ["lpgtest", "lpgtest15"])
def test_im_status(pg, gateway, odoo, db):
    online, p_online = odoo.user(db, "online")
    away, p_away = odoo.user(db, "away")
    offline, p_offline = odoo.user(db, "offline")
    gone, p_gone = odoo.user(db, "gone")
    p_partner = pg.sql("INSERT INTO res_partner (name, display_name) VALUES "
                       "('customer', 'customer') RETURNING id",
                       dbname=db)[0][0]
    p_bot = pg.sql("INSERT INTO res_partner (name, display_name) VALUES "
                   "('OdooBot', 'OdooBot') RETURNING id", dbname=db)[0][0]
    pg.sql("DELETE FROM ir_model_data WHERE module = 'base' AND name = "
           "'partner_root'", dbname=db)
    pg.sql("INSERT INTO ir_model_data (module, name, model, res_id) VALUES "
           "('base', 'partner_root', 'res.partner', %s)", (p_bot,), dbname=db)
    pg.sql("INSERT INTO bus_presence (user_id, last_poll, last_presence, "
           "status) VALUES "
           "(%s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', 'x'), "
           "(%s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' - "
           "interval '2 hours', 'x'), "
           "(%s, now() AT TIME ZONE 'UTC' - interval '2 minutes', "
           "now() AT TIME ZONE 'UTC' - interval '2 minutes', 'x')",
           (online, away, gone), dbname=db)
    sid = odoo.login(db, online)
    gw = start(gateway, odoo, dbs=db)

    ids = [p_online, p_away, p_offline, p_gone, p_partner, p_bot, 999999]
    answer = im_status(gw, ids, sid)
    assert answer["id"] == 3
    got = {r["id"]: r["im_status"] for r in answer["result"]}
    assert got == {p_online: "online", p_away: "away", p_offline: "offline",
                   p_gone: "offline", p_partner: "im_partner",
                   p_bot: "bot"}

    # auth="user": no session, or one Odoo does not know
    for cookie in (None, "0" * 40):
        err = im_status(gw, ids, cookie)["error"]
        assert err["code"] == 100
        assert err["message"] == "Odoo Session Expired"

    err = im_status(gw, "3", sid)["error"]
    assert "partner_ids" in err["data"]["message"]


def test_sessions_off_without_odoo_url(pg, gateway, odoo):
    db = "lpgtest15"
    uid, pid = odoo.user(db, "frank")
    sid = odoo.login(db, uid)
    gw = gateway(workers=1, extra_args=["-d", db, "--odoo-url", "",
                                        "--timeout", "2"])
    last = last_id(pg, db)
    f = poll_async(gw, last=last, sid=sid)
    time.sleep(0.5)
    pg.send(db, [db, "res.partner", pid], {"private": 1})
    assert f.result()["result"] == []
    assert odoo.count("/lpgate/session") == 0


def test_no_cron_slot_means_no_presence_writes(pg, gateway, odoo):
    """Presence writes need a cron slot of the budget: with
    max_cron_threads = 0 there is none, and the log says what that means."""
    db = "lpgtest15"
    uid, pid = odoo.user(db, "grace")
    sid = odoo.login(db, uid)
    pg.sql("DELETE FROM presence_log", dbname=db)
    gw = start(gateway, odoo, dbs=db, workers=1, timeout=1, presence=1,
               config="max_cron_threads = 0;\n")
    gw.wait_log("max_cron_threads = 0: no cron slot")
    for _ in range(3):
        poll(gw, sid=sid, last=1, options={"bus_inactivity": 0})
    time.sleep(1.5)
    assert pg.sql("SELECT count(*) FROM bus_presence WHERE user_id = %s",
                  (uid,), dbname=db)[0][0] == 0
    assert pg.sql("SELECT count(*) FROM presence_log", dbname=db)[0][0] == 0


# the shipped nginx and Apache configs (contrib/nginx, contrib/apache) in
# front, the stand-in Odoo as their "8069" side: test_proxy's nginx and
# test_apache's apache fixtures over this module's app
from test_apache import apache  # noqa: E402,F401
from test_proxy import nginx  # noqa: E402,F401


@pytest.fixture
def app(odoo):
    return odoo.port


def test_session_through_nginx(pg, gateway, odoo, nginx):
    session_through_proxy(pg, gateway, odoo, nginx, "nginx")


def test_session_through_apache(pg, gateway, odoo, apache):
    session_through_proxy(pg, gateway, odoo, apache, "apache")


def session_through_proxy(pg, gateway, odoo, proxy, name):
    import http.client

    db = "lpgtest15"
    uid, pid = odoo.user(db, "henry")
    sid = odoo.login(db, uid)
    gw = start(gateway, odoo, dbs=db)
    port = proxy(gw.port)
    last = last_id(pg, db)
    odoo.reset_counts()

    def request(path, body):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request("POST", path, body=json.dumps(body), headers={
            "Content-Type": "application/json", "Host": "erp.example",
            "Cookie": "session_id=%s; frontend_lang=en_US" % sid})
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    f = pool.submit(request, "/longpolling/poll", {
        "jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"channels": [], "last": last,
                   "options": {"bus_inactivity": 0}}})
    parked(gw, 1)
    t = pg.send(db, [db, "res.partner", pid], {"via": name})
    status, answer = f.result()
    assert status == 200
    assert answer["result"] == [{"id": t, "message": {"via": name}}]

    status, answer = request("/longpolling/im_status", {
        "jsonrpc": "2.0", "method": "call", "id": 2,
        "params": {"partner_ids": [pid]}})
    assert status == 200
    assert answer["result"] == [{"id": pid, "im_status": "online"}]

    # lpgate asked Odoo with the browser's Host (dbfilter) and only the
    # cookies that name the session
    path, cookie, host = odoo.requests[0]
    assert path == "/lpgate/session"
    assert host == "erp.example"
    assert cookie == "session_id=" + sid
