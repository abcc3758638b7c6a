"""Odoo 16 and 17 sessions (issue 13 items 3, 4, 6), over the transports
that need no websocket: a poll's session_id / dgid cookie and its channel
strings, resolved by the stand-in Odoo (odoo_standin.py, real HTTP on the
real test database) through the lpgate_bus addon's /lpgate/session or
through get_session_info + lpgate's built-in SQL; and the HTTP routes under
/websocket/: health, peek_notifications, update_bus_presence (whose
im_status answer comes back as a bus notification).
"""

import json
import secrets
import time

import pytest

from conftest import wait_until
from odoo_standin import OdooStandin, create_database
from test_sessions import last_id, messages, parked, poll, poll_async


MODEL = {16: "mail.channel", 17: "discuss.channel"}


@pytest.fixture(params=[16, 17], ids=["odoo16", "odoo17"])
def odoo(pg, request):
    version = request.param
    db = "lpgtest%d" % version
    s = OdooStandin({db: (create_database(pg, db, version), version)})
    s.start()
    yield s, db, version
    s.stop()


def start(gateway, odoo, db, workers=1, ttl=30, presence=20, timeout=4):
    gw = gateway(workers=workers,
                 config="session_retry = 1;\n",
                 extra_args=["-d", db, "--odoo-url", odoo.url,
                             "--timeout", str(timeout),
                             "--session-ttl", str(ttl),
                             "--presence-interval", str(presence),
                             "--log-level", "debug"])
    gw.wait_log('database "%s": Odoo' % db)
    return gw


def rpc(gw, path, params, sid=None, dgid=None, rpc_id=3):
    cookie = "; ".join(x for x in ("tz=UTC", sid and "session_id=" + sid,
                                   dgid and "dgid=" + dgid) if x)
    status, headers, data = gw.http(
        "POST", path, {"jsonrpc": "2.0", "method": "call", "id": rpc_id,
                       "params": params}, {"Cookie": cookie}, timeout=15)
    return status, headers, json.loads(data) if status == 200 else data


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_logged_in_poll_gets_partner_and_discuss_channels(pg, gateway, odoo,
                                                          addon):
    odoo, db, version = odoo
    odoo.addon = addon
    tag = secrets.token_hex(3)
    uid_a, pid_a = odoo.user(db, "alice" + tag)
    uid_b, pid_b = odoo.user(db, "bob" + tag)
    cid = odoo.discuss_channel(db, "general" + tag, partners=[pid_a])
    sid_a, sid_b = odoo.login(db, uid_a), odoo.login(db, uid_b)
    gw = start(gateway, odoo, db)
    last = last_id(pg, db)

    # 16+'s poll answers have 15's shape ({"id", "message"})
    fa = poll_async(gw, last=last, sid=sid_a)
    fb = poll_async(gw, last=last, sid=sid_b)
    parked(gw, 2)
    t = pg.send(db, [db, "res.partner", pid_a], {"to": "alice"})
    assert fa.result()["result"] == [{"id": t, "message": {"to": "alice"}}]
    assert fb.result()["result"] == []

    # her discuss channel (17: and its members sub-channel)
    fa = poll_async(gw, last=t, sid=sid_a)
    fb = poll_async(gw, last=t, sid=sid_b)
    parked(gw, 4)
    want = []
    if version >= 17:
        # one batch: the first row waits for the second's NOTIFY
        pg.send(db, [db, MODEL[version], cid, "members"], {"members": 1},
                notify=False)
        want.append({"members": 1})
    c = pg.send(db, [db, MODEL[version], cid], {"in": "general"})
    want.append({"in": "general"})
    assert messages(fa.result()) == want
    assert fb.result()["result"] == []

    # broadcast reaches everybody, logged in or not
    f = poll_async(gw, last=c, sid=sid_b)
    parked(gw, 5)
    pg.send(db, [db, "broadcast"], {"all": 1})
    assert {"all": 1} in messages(f.result())

    if addon:
        assert odoo.count("/lpgate/session") >= 2
        assert odoo.count("/web/session/get_session_info") == 0
        # 16+: the addon gets the client's strings as params.channels
        assert all(json.loads(body)["params"] == {"channels": []}
                   for body in odoo.bodies("/lpgate/session"))
    else:
        assert odoo.count("/web/session/get_session_info") >= 2
        gw.wait_log("no /lpgate/session")


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_guest_dgid_cookie(pg, gateway, odoo, addon):
    odoo, db, version = odoo
    odoo.addon = addon
    tag = secrets.token_hex(3)
    gid, dgid = odoo.guest(db, "visitor" + tag, channels=["livechat" + tag])
    cid = odoo.channel(db, "livechat" + tag)
    gw = start(gateway, odoo, db)
    last = last_id(pg, db)
    odoo.reset_counts()

    f = poll_async(gw, last=last, dgid=dgid)
    bad = poll_async(gw, last=last, dgid="%d|%s" % (gid, "0" * 32))
    parked(gw, 2)
    pg.send(db, [db, "mail.guest", gid], {"guest": 1}, notify=False)
    t = pg.send(db, [db, MODEL[version], cid], {"chat": 1})
    assert messages(f.result()) == [{"guest": 1}, {"chat": 1}]
    assert bad.result()["result"] == []

    # the guest cookie goes to Odoo (16+ reads it in ir.websocket)
    cookies = [c for (_, c, _) in odoo.requests]
    assert any(c == "dgid=" + dgid for c in cookies), cookies
    assert t


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_17_requested_discuss_channel(pg, gateway, addon):
    db = "lpgtest17"
    odoo = OdooStandin({db: (create_database(pg, db, 17), 17)}).start()
    try:
        odoo.addon = addon
        tag = secrets.token_hex(3)
        uid, pid = odoo.user(db, "alice" + tag, groups=[42])
        _, bob = odoo.user(db, "bob" + tag)
        # a public channel of her group she is not a member of, and a
        # private group chat of bob's
        staff = odoo.discuss_channel(db, "staff" + tag, group_public_id=42)
        priv = odoo.discuss_channel(db, "priv" + tag, partners=[bob],
                                    channel_type="group")
        sid = odoo.login(db, uid)
        gw = start(gateway, odoo, db)
        last = last_id(pg, db)
        odoo.reset_counts()

        asked = ["discuss.channel_%d" % staff, "discuss.channel_%d" % priv]
        f = poll_async(gw, last=last, sid=sid, channels=asked)
        plain = poll_async(gw, last=last, sid=sid)
        parked(gw, 2)
        pg.send(db, [db, "discuss.channel", priv], {"priv": 1})
        t = pg.send(db, [db, "discuss.channel", staff], {"staff": 1})
        # asked for and readable: subscribed; the private one is not hers
        assert messages(f.result()) == [{"staff": 1}]
        assert plain.result()["result"] == []
        # the selector strings are not channels themselves
        f = poll_async(gw, last=t, sid=sid, channels=asked)
        parked(gw, 3)
        pg.send(db, [db, "discuss.channel_%d" % staff], {"string": 1},
                notify=False)
        s = pg.send(db, [db, "discuss.channel", staff], {"staff": 2})
        assert messages(f.result()) == [{"staff": 2}]

        # one session, two sets of strings: two cached answers
        if addon:
            bodies = [json.loads(b)["params"]["channels"]
                      for b in odoo.bodies("/lpgate/session")]
            assert sorted(asked) in bodies and [] in bodies, bodies
            assert odoo.count("/lpgate/session") == 2
        else:
            assert odoo.count("/web/session/get_session_info") == 2

        # a public client (no cookie) asking for a public channel gets it
        # (a lookup runs for the strings), not staff (restricted to group
        # 42) nor the private one
        lobby = odoo.discuss_channel(db, "lobby" + tag)
        f = poll_async(gw, last=s, channels=asked + [
            "discuss.channel_%d" % lobby])
        parked(gw, 4)
        pg.send(db, [db, "discuss.channel", priv], {"priv": 2}, notify=False)
        pg.send(db, [db, "discuss.channel", staff], {"staff": 3},
                notify=False)
        pg.send(db, [db, "discuss.channel", lobby], {"lobby": 1})
        assert messages(f.result()) == [{"lobby": 1}]
    finally:
        odoo.stop()


# -- the routes under /websocket/ -------------------------------------------

def test_websocket_health(pg, gateway, odoo):
    odoo, db, version = odoo
    gw = start(gateway, odoo, db)
    status, headers, data = gw.http("GET", "/websocket/health")
    assert (status, json.loads(data)) == (200, {"status": "pass"})
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    status, _, _ = gw.http("POST", "/websocket/health", "x")
    assert status == 405
    status, _, _ = gw.http("GET", "/websocket/nothing")
    assert status == 404

    # lpgate's own rules: the database gone, the route fails
    try:
        pg.stop()
        status, body = wait_until(
            lambda: (lambda r: r[0] == 503 and (r[0], json.loads(r[2])))(
                gw.http("GET", "/websocket/health")),
            10, what="/websocket/health to fail")
        assert body["status"] == "fail" and "database" in body["reason"]
    finally:
        pg.start()
    wait_until(lambda: gw.http("GET", "/websocket/health")[0] == 200, 15,
               what="/websocket/health to pass")


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_peek_notifications(pg, gateway, odoo, addon):
    odoo, db, version = odoo
    odoo.addon = addon
    tag = secrets.token_hex(3)
    uid, pid = odoo.user(db, "alice" + tag)
    _, bob = odoo.user(db, "bob" + tag)
    cid = odoo.discuss_channel(db, "general" + tag, partners=[pid])
    sid = odoo.login(db, uid)
    # (timeout: the "last timeout seconds" of last = 0)
    gw = start(gateway, odoo, db, timeout=50)

    a = pg.send(db, [db, "res.partner", pid], {"n": 1})
    pg.send(db, [db, "res.partner", bob], {"bob": 1})
    b = pg.send(db, [db, "x" + tag], {"n": 2})
    c = pg.send(db, [db, MODEL[version], cid], {"n": 3})
    # the worker has them all once a poll of alice's sees the last
    assert messages(poll(gw, last=c - 1, sid=sid)) == [{"n": 3}]

    status, headers, r = rpc(gw, "/websocket/peek_notifications",
                             {"channels": ["x" + tag], "last": a - 1,
                              "is_first_poll": True}, sid=sid)
    assert status == 200 and r["id"] == 3, r
    assert headers["access-control-allow-origin"] == "*"
    out = r["result"]
    assert out["notifications"] == [
        {"id": a, "message": {"n": 1}}, {"id": b, "message": {"n": 2}},
        {"id": c, "message": {"n": 3}}]
    chans = out["channels"]
    assert [db, "broadcast"] in chans and [db, "x" + tag] in chans
    assert [db, "res.partner", pid] in chans
    assert [db, MODEL[version], cid] in chans
    assert [db, "res.partner", bob] not in chans

    # without is_first_poll too (lpgate keeps no is_websocket_session)
    status, _, r = rpc(gw, "/websocket/peek_notifications",
                       {"channels": [], "last": b}, sid=sid)
    assert [n["id"] for n in r["result"]["notifications"]] == [c]

    # last above the largest bus id: reset to 0, the last timeout seconds
    status, _, r = rpc(gw, "/websocket/peek_notifications",
                       {"channels": [], "last": c + 1000}, sid=sid)
    ids = [n["id"] for n in r["result"]["notifications"]]
    assert a in ids and c in ids, ids
    gw.wait_log("reset to 0")

    # the public user: broadcast and its own strings only
    status, _, r = rpc(gw, "/websocket/peek_notifications",
                       {"channels": ["y"], "last": c})
    assert sorted(r["result"]["channels"]) == [[db, "broadcast"], [db, "y"]]
    assert r["result"]["notifications"] == []

    # bad input: Odoo's errors, never a crash
    status, _, r = rpc(gw, "/websocket/peek_notifications",
                       {"channels": [1], "last": 0}, sid=sid)
    assert r["error"]["data"]["name"] == "builtins.ValueError"
    assert "string channels" in r["error"]["data"]["message"]
    status, _, r = rpc(gw, "/websocket/peek_notifications",
                       {"channels": []}, sid=sid)
    assert "error" in r
    status, _, data = gw.http("POST", "/websocket/peek_notifications", "{x")
    assert status == 200 and "error" in json.loads(data)
    status, _, _ = gw.http("GET", "/websocket/peek_notifications")
    assert status == 405
    assert gw.health()[0] == 200


def persona(version, answer):
    """The im_status notification's statuses, {(type, id): status}."""
    out = {}
    for m in messages(answer):
        if version >= 17:
            assert m["type"] == "mail.record/insert"
            for p in m["payload"]["Persona"]:
                out[(p["type"], p["id"])] = p["im_status"]
        else:
            assert m["type"] == "bus/im_status"
            for p in m["payload"].get("partners", []):
                out[("partner", p["id"])] = p["im_status"]
            for p in m["payload"].get("guests", []):
                out[("guest", p["id"])] = p["im_status"]
    return out


@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_update_bus_presence_answers_on_the_bus(pg, gateway, odoo, addon):
    odoo, db, version = odoo
    odoo.addon = addon
    tag = secrets.token_hex(3)
    uid, pid = odoo.user(db, "alice" + tag)
    uid_b, bob = odoo.user(db, "bob" + tag)
    _, lonely = odoo.user(db, "carol" + tag)
    nouser = odoo.sql(db, "INSERT INTO res_partner (name) "
                          "VALUES ('x') RETURNING id")[0][0]
    gid, dgid = odoo.guest(db, "visitor" + tag)
    sid, sid_b = odoo.login(db, uid), odoo.login(db, uid_b)
    # bob polled a minute ago: offline; carol never
    odoo.sql(db, "INSERT INTO bus_presence (user_id, last_poll, "
                 "last_presence, status) VALUES (%s, now() AT TIME ZONE 'UTC' "
                 "- interval '60 s', now() AT TIME ZONE 'UTC' - interval "
                 "'60 s', 'offline')", (uid_b,))
    gw = start(gateway, odoo, db, presence=1)
    last = last_id(pg, db)

    # alice's other tab and bob wait on the bus
    tab = poll_async(gw, last=last, sid=sid)
    other = poll_async(gw, last=last, sid=sid_b)
    parked(gw, 2)
    status, headers, r = rpc(gw, "/websocket/update_bus_presence", {
        "inactivity_period": 1000,
        "im_status_ids_by_model": {"res.partner": [pid, bob, lonely, nouser],
                                   "mail.guest": [gid]}}, sid=sid)
    assert status == 200 and r == {"jsonrpc": "2.0", "id": 3, "result": {}}
    assert headers["access-control-allow-origin"] == "*"
    got = persona(version, tab.result())
    assert got == {("partner", pid): "online", ("partner", bob): "offline",
                   ("partner", lonely): "offline",
                   ("partner", nouser): "im_partner",
                   ("guest", gid): "offline"}, got
    assert other.result()["result"] == []
    gw.wait_log("im_status notification sent to user %d" % uid)

    # the presence went through the batched writes (one statement)
    wait_until(lambda: odoo.sql(
        db, "SELECT count(*) FROM bus_presence WHERE user_id = %s",
        (uid,))[0][0] == 1, 10, what="alice's bus_presence row")

    # a guest: its own channel, its own fresh status
    last = last_id(pg, db)
    f = poll_async(gw, last=last, dgid=dgid)
    parked(gw, 3)
    status, _, r = rpc(gw, "/websocket/update_bus_presence", {
        "inactivity_period": 2000 * 1000,
        "im_status_ids_by_model": {"mail.guest": [gid]}}, dgid=dgid)
    assert r["result"] == {}
    assert persona(version, f.result()) == {("guest", gid): "away"}

    # the public user: {} and nothing sent; bad input: an error
    n = last_id(pg, db)
    status, _, r = rpc(gw, "/websocket/update_bus_presence", {
        "inactivity_period": 0,
        "im_status_ids_by_model": {"res.partner": [pid]}})
    assert r["result"] == {}
    for bad in ({"inactivity_period": "x", "im_status_ids_by_model": {}},
                {"inactivity_period": 0,
                 "im_status_ids_by_model": {"res.partner": ["1"]}},
                {"inactivity_period": 0, "im_status_ids_by_model": [1]}):
        status, _, r = rpc(gw, "/websocket/update_bus_presence", bad, sid=sid)
        assert status == 200 and "error" in r, (bad, r)
    time.sleep(0.5)
    assert last_id(pg, db) == n
    assert gw.health()[0] == 200
