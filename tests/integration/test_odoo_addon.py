"""The lpgate_bus addon (contrib/odoo) against a stand-in of the few Odoo
APIs it touches: odoo.http.route, request, the bus controller's _poll
chain (14.0 and 15.0 shapes, with mail's override as a sibling subclass,
combined the way Odoo's routing_map does) and the module-level dispatch;
on 16.0, 17.0 and 18.0 the ir.websocket model's channel list (bus's
method and mail's override combined as Odoo's registry does, with the
guest cookie dgid, discuss.channel_<id> strings, record-rule visibility,
(channel, "members") and, 18.0, groups and presence channels).
Odoo itself cannot run in CI; this checks the addon's own logic: the
chain's channel list is captured instead of waited on, in the form stored
in bus_bus, and the real dispatcher is untouched outside the route.
"""

import http.client
import importlib
import json
import os
import re
import secrets
import sys
import types

import pytest


SRC = os.environ.get("LPGATE_SRCDIR",
                     os.path.join(os.path.dirname(__file__), "..", ".."))


class Record:
    def __init__(self, model, id):
        self._name, self.id = model, id

    def __eq__(self, other):
        return (isinstance(other, Record)
                and (self._name, self.id) == (other._name, other.id))

    def __hash__(self):
        return hash((self._name, self.id))

    def __repr__(self):
        return "%s(%d,)" % (self._name, self.id)


def install_fake_odoo(version):
    """sys.modules entries for odoo, odoo.http, odoo.release and the bus
    addon, shaped like Odoo `version`; returns (bus_main, request, real)."""
    for name in list(sys.modules):
        if name == "odoo" or name.startswith("odoo."):
            del sys.modules[name]

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    request = types.SimpleNamespace()

    def route(*args, **kw):
        def deco(f):
            f.routing = kw
            return f
        return deco

    http = module("odoo.http", route=route, request=request,
                  Controller=object)
    release = module("odoo.release", version_info=(version, 0, 0, "final"))
    odoo = module("odoo", http=http, release=release)
    odoo.__path__ = []

    class RealDispatch:
        polls = []

        def poll(self, dbname, channels, last, options=None):
            self.polls.append(channels)
            return ["waited"]

    real = RealDispatch()

    def channel_with_db(db, c):
        if isinstance(c, Record):
            return (db, c._name, c.id)
        if isinstance(c, str):
            return (db, c)
        return c

    bus_models = {"dispatch": real}
    if version >= 15:
        bus_models["channel_with_db"] = channel_with_db
    module("odoo.addons").__path__ = []
    module("odoo.addons.bus").__path__ = []
    module("odoo.addons.bus.models").__path__ = []
    module("odoo.addons.bus.models.bus", **bus_models)
    module("odoo.addons.bus.controllers").__path__ = []
    bus_main = module("odoo.addons.bus.controllers.main", dispatch=real)

    class BusController:
        """bus's base _poll, as 14.0/15.0 write it."""

        def _poll(self, dbname, channels, last, options):
            channels = list(channels)
            if version >= 15:
                channels.append("broadcast")
            if request.session.uid and "bus_inactivity" in options:
                request.presence.append(options["bus_inactivity"])
            request.cr_closed = True
            return bus_main.dispatch.poll(dbname, channels, last, options)

    bus_main.BusController = BusController
    return bus_main, request, real, BusController


def load_addon(module="lpgate_bus.controllers.main"):
    sys.path.insert(0, os.path.join(SRC, "contrib", "odoo"))
    try:
        for name in list(sys.modules):
            if name.startswith("lpgate_bus"):
                del sys.modules[name]
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("version", [14, 15])
def test_addon_returns_the_chains_channels(version):
    bus_main, request, real, BusController = install_fake_odoo(version)
    addon = load_addon()

    class MailController(BusController):
        """mail's override, a sibling subclass as in Odoo."""

        def _poll(self, dbname, channels, last, options):
            channels = list(channels)
            if request.session.uid:
                if version >= 15:
                    channels += [Record("res.partner", 3),
                                 Record("mail.channel", 7)]
                else:
                    channels += [(dbname, "mail.channel", 7),
                                 (dbname, "res.partner", 3),
                                 (dbname, "ir.needaction", 3)]
            return super()._poll(dbname, channels, last, options)

    # Odoo's routing_map combines the leaf subclasses of BusController
    Combined = type("BusController (extended)",
                    (addon.LpgateBusController, MailController), {})
    ctl = Combined()

    class Env(types.SimpleNamespace):
        def __contains__(self, model):
            return False  # no mail.guest: nobody is a guest here

    request.db = "mydb"
    request.session = types.SimpleNamespace(uid=2)
    request.env = Env(user=types.SimpleNamespace(
        partner_id=types.SimpleNamespace(id=3)))
    request.presence = []

    out = ctl.lpgate_session(options={"bus_inactivity": 1500, "peek": True})
    assert out["uid"] == 2 and out["partner_id"] == 3 and out["db"] == "mydb"
    assert out["version"] == version
    if version >= 15:
        assert out["channels"] == [["mydb", "res.partner", 3],
                                   ["mydb", "mail.channel", 7],
                                   ["mydb", "broadcast"]]
    else:
        assert out["channels"] == [["mydb", "mail.channel", 7],
                                   ["mydb", "res.partner", 3],
                                   ["mydb", "ir.needaction", 3]]
    # presence refreshed as a poll does; nothing reached the real dispatch
    assert request.presence == [1500]
    assert real.polls == []

    # outside the route, polls go to Odoo's dispatcher as before
    assert bus_main.dispatch.poll("mydb", ["x"], 0, {}) == ["waited"]
    assert real.polls == [["x"]]
    assert bool(bus_main.dispatch)

    # an expired or forged session is the public user
    request.session = types.SimpleNamespace(uid=None)
    out = ctl.lpgate_session()
    assert out["uid"] is None and out["partner_id"] is None
    assert out["channels"] == ([["mydb", "broadcast"]] if version >= 15
                               else [])


def test_addon_keeps_a_missing_dispatcher_falsy():
    """8.0-14.0 prefork HTTP workers have no dispatcher: the public poll
    route's `if not dispatch` check must still see none."""
    bus_main, request, real, BusController = install_fake_odoo(14)
    bus_main.dispatch = None
    addon = load_addon()
    assert isinstance(bus_main.dispatch, addon.CapturingDispatch)
    assert not bus_main.dispatch
    # imported twice: not wrapped twice
    wrapped = bus_main.dispatch
    load_addon()
    assert bus_main.dispatch is wrapped


# -- 16.0, 17.0, 18.0: ir.websocket ---------------------------------------

class World:
    """The data mail's overrides read: users, guests, discuss channels."""

    PUBLIC_GROUP = 11

    def __init__(self):
        self.partner_of = {2: 3, 6: 7}              # uid -> partner id
        self.groups_of = {2: [1, 4], 6: [1]}        # uid -> group ids
        self.guests = {5: "tok5"}                   # guest id -> token
        # id -> (type, group_public_id, partner members, guest members)
        self.channels = {
            7: ("channel", None, {3}, {5}),
            8: ("chat", None, {3, 7}, set()),
            9: ("channel", None, {7}, set()),       # public, 3 not in it
            10: ("channel", 99, {3}, set()),        # group 99 only
            12: ("group", None, {7}, set()),        # private group
        }

    def guest_from_token(self, token):
        parts = (token or "").split("|")
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        gid = int(parts[0])
        if self.guests.get(gid) and self.guests[gid] == parts[1]:
            return Record("mail.guest", gid)
        return None

    def member_channels(self, partner=None, guest=None):
        return [c for c, (_, _, ps, gs) in sorted(self.channels.items())
                if (partner is not None and partner.id in ps)
                or (guest is not None and guest.id in gs)]

    def visible(self, cid, uid, is_member):
        """mail's ir.rule on discuss.channel for internal/portal/public."""
        ctype, group, _, _ = self.channels[cid]
        if ctype != "channel":
            return is_member
        groups = self.groups_of.get(uid, [self.PUBLIC_GROUP])
        return group is None or group in groups


def install_fake_odoo_ws(version, world):
    """odoo, odoo.http, odoo.release and the bus addon shaped like Odoo
    `version` (16, 17 or 18), with the ir.websocket model of bus and mail
    combined in one class as the registry combines _inherit overrides;
    returns (request, bus_models)."""
    for name in list(sys.modules):
        if name == "odoo" or name.startswith("odoo."):
            del sys.modules[name]

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    request = types.SimpleNamespace()

    def route(*args, **kw):
        def deco(f):
            f.routing = dict(kw, routes=list(args))
            return f
        return deco

    class Controller:
        pass

    http = module("odoo.http", route=route, request=request,
                  Controller=Controller)
    release = module("odoo.release", version_info=(version, 0, 0, "final"))
    odoo = module("odoo", http=http, release=release)
    odoo.__path__ = []

    def channel_with_db(db, c):
        if isinstance(c, Record):
            return (db, c._name, c.id)
        if (version >= 17 and isinstance(c, tuple) and len(c) == 2
                and isinstance(c[0], Record)):
            return (db, c[0]._name, c[0].id, c[1])
        if isinstance(c, str):
            return (db, c)
        return c

    dispatch = object()  # 16+: ImDispatch lives in bus.models.bus
    module("odoo.addons").__path__ = []
    module("odoo.addons.bus").__path__ = []
    module("odoo.addons.bus.models").__path__ = []
    bus_models = module("odoo.addons.bus.models.bus",
                        channel_with_db=channel_with_db, dispatch=dispatch)
    module("odoo.addons.bus.controllers").__path__ = []

    class BusController(Controller):
        """16.0+ bus.controllers.main: no _poll, no dispatch any more."""

    module("odoo.addons.bus.controllers.main", BusController=BusController)

    class Env:
        def __init__(self, context=None):
            self.context = dict(context or {})
            uid = request.session.uid
            self.uid = uid
            self.user = types.SimpleNamespace(
                partner_id=Record("res.partner", world.partner_of[uid])
                if uid else Record("res.partner", 4),  # the public partner
                groups_id=[Record("res.groups", g) for g in
                           world.groups_of.get(uid, [World.PUBLIC_GROUP])],
                _is_internal=lambda: bool(uid))

        def __getitem__(self, model):
            assert model == "ir.websocket"
            return IrWebsocket(self)

    class Model:
        def __init__(self, env):
            self.env = env

        def with_context(self, **kw):
            return type(self)(Env(dict(self.env.context, **kw)))

    def guest_from_request(req):
        return world.guest_from_token(req.httprequest.cookies.get("dgid"))

    class BusWs(Model):
        def _build_bus_channel_list(self, channels):
            channels.append("broadcast")
            if version >= 18:
                channels.extend(self.env.user.groups_id)
            if version >= 17 and request.session.uid:
                channels.append(self.env.user.partner_id)
            return channels

    class MailWs16(BusWs):
        def _build_bus_channel_list(self, channels):
            channels = list(channels)
            guest = guest_from_request(request)
            if request.session.uid:
                partner = self.env.user.partner_id
                channels.append(partner)
                channels += [Record("mail.channel", c)
                             for c in world.member_channels(partner=partner)]
            elif guest:
                channels.append(guest)
                channels += [Record("mail.channel", c)
                             for c in world.member_channels(guest=guest)]
            return super()._build_bus_channel_list(channels)

    def add_guest_to_context(func):
        def wrapper(self, *args, **kwargs):
            guest = guest_from_request(request)
            if guest:
                self.env.context = dict(self.env.context, guest=guest)
            return func(self, *args, **kwargs)
        return wrapper

    class MailWs17(BusWs):
        @add_guest_to_context
        def _build_bus_channel_list(self, channels):
            channels = list(channels)
            wanted = []
            for c in list(channels):
                if c.startswith("mail.guest_"):
                    channels.remove(c)
                    guest = world.guest_from_token(c.split("_")[1])
                    if guest:
                        self = self.with_context(guest=guest)
                m = re.findall(r"discuss\.channel_(\d+)", c)
                if m:
                    channels.remove(c)
                    wanted.append(int(m[0]))
            guest = self.env.context.get("guest")
            if guest:
                channels.append(guest)
            uid = request.session.uid
            mine = world.member_channels(
                partner=self.env.user.partner_id if uid else None,
                guest=None if uid else guest)
            found = [Record("discuss.channel", c)
                     for c in sorted(world.channels)
                     if (c in mine or c in wanted)
                     and world.visible(c, uid, c in mine)]
            channels += found
            channels += [(c, "members") for c in found if c.id not in wanted]
            return super()._build_bus_channel_list(channels)

    class MailWs18(MailWs17):
        def _prepare_subscribe_data(self, channels, last):
            if not all(isinstance(c, str) for c in channels):
                raise ValueError("bus.Bus only string channels are allowed.")
            presence = [c for c in channels if c.startswith("odoo-presence-")]
            out = []
            if request.session.uid:
                for c in presence:
                    model, rid = c[len("odoo-presence-"):].split("_")
                    if model == "res.partner":
                        out.append((Record(model, int(rid)), "presence"))
            out += self._build_bus_channel_list(
                [c for c in channels if c not in presence])
            return {"channels": out, "last": last, "missed_presences": []}

    mail = {16: MailWs16, 17: MailWs17, 18: MailWs18}[version]
    IrWebsocket = type("ir.websocket", (mail,), {})

    def session(uid=None, dgid=None):
        request.db = "mydb"
        request.session = types.SimpleNamespace(uid=uid)
        request.httprequest = types.SimpleNamespace(
            cookies={"dgid": dgid} if dgid else {})
        request.env = Env()

    request.login = session
    return request, bus_models


def ws_addon(version, world=None):
    request, bus_models = install_fake_odoo_ws(version, world or World())
    addon = load_addon("lpgate_bus.controllers.websocket")
    return request, bus_models, addon, addon.LpgateSessionController()


@pytest.mark.parametrize("version", [16, 17, 18])
def test_ws_addon_user_channels(version):
    """A logged-in user: Odoo's ir.websocket list in bus_bus form."""
    request, bus_models, addon, ctl = ws_addon(version)
    routing = ctl.lpgate_session.routing
    assert routing["routes"] == ["/lpgate/session"]
    assert (routing["type"], routing["auth"], routing["save_session"]) == \
        ("json", "public", False)

    request.login(uid=2)
    out = ctl.lpgate_session(channels=["my_string"])
    assert (out["version"], out["db"], out["uid"], out["partner_id"],
            out["guest_id"]) == (version, "mydb", 2, 3, None)
    if version == 16:
        assert out["channels"] == [
            ["mydb", "my_string"], ["mydb", "res.partner", 3],
            ["mydb", "mail.channel", 7], ["mydb", "mail.channel", 8],
            ["mydb", "mail.channel", 10], ["mydb", "broadcast"]]
    else:
        # channel 10 is restricted to a group user 2 is not in: the
        # record rule hides it although 2 is a member
        expect = [
            ["mydb", "my_string"],
            ["mydb", "discuss.channel", 7], ["mydb", "discuss.channel", 8],
            ["mydb", "discuss.channel", 7, "members"],
            ["mydb", "discuss.channel", 8, "members"],
            ["mydb", "broadcast"]]
        if version >= 18:
            expect += [["mydb", "res.groups", 1], ["mydb", "res.groups", 4]]
        expect.append(["mydb", "res.partner", 3])
        assert out["channels"] == expect
    # the compact dumps are what bus_bus.channel holds
    assert json.dumps(out["channels"][1], separators=(",", ":")) in (
        '["mydb","res.partner",3]', '["mydb","discuss.channel",7]')


@pytest.mark.parametrize("version", [17, 18])
def test_ws_addon_requested_discuss_channels(version):
    """discuss.channel_<id> strings are resolved by Odoo: a visible one is
    added without its members sub-channel, an invisible one not at all,
    and the strings themselves are gone."""
    request, _, _, ctl = ws_addon(version)
    request.login(uid=2)
    out = ctl.lpgate_session(channels=["discuss.channel_9",
                                       "discuss.channel_12",
                                       "discuss.channel_7"])
    chans = out["channels"]
    assert ["mydb", "discuss.channel", 9] in chans
    assert ["mydb", "discuss.channel", 9, "members"] not in chans
    assert ["mydb", "discuss.channel", 7] in chans
    assert ["mydb", "discuss.channel", 7, "members"] not in chans  # asked
    assert ["mydb", "discuss.channel", 8, "members"] in chans
    assert ("discuss.channel", 12) not in [tuple(c[1:3]) for c in chans]
    assert not any(isinstance(c[1], str) and c[1].startswith("discuss.")
                   and len(c) == 2 for c in chans)


@pytest.mark.parametrize("version", [16, 17, 18])
def test_ws_addon_guest_and_public(version):
    """A public session with a valid dgid cookie is the guest with its
    channels; a forged dgid or none gives the public channels only."""
    request, _, _, ctl = ws_addon(version)
    model = "mail.channel" if version == 16 else "discuss.channel"

    request.login(uid=None, dgid="5|tok5")
    out = ctl.lpgate_session(channels=[])
    assert out["uid"] is None and out["partner_id"] is None
    assert out["guest_id"] == 5
    assert ["mydb", "mail.guest", 5] in out["channels"]
    assert ["mydb", model, 7] in out["channels"]
    assert ["mydb", "broadcast"] in out["channels"]
    if version >= 17:
        assert ["mydb", model, 7, "members"] in out["channels"]

    public = [["mydb", "broadcast"]]
    if version >= 18:
        public.append(["mydb", "res.groups", World.PUBLIC_GROUP])
    for dgid in ("5|wrong", "x|tok5", "5", None):
        request.login(uid=None, dgid=dgid)
        out = ctl.lpgate_session()
        assert (out["uid"], out["guest_id"], out["channels"]) == \
            (None, None, public), dgid
    # a public socket asking for a private channel does not get it
    if version >= 17:
        request.login(uid=None)
        out = ctl.lpgate_session(channels=["discuss.channel_12",
                                           "discuss.channel_9"])
        assert out["channels"] == [["mydb", "discuss.channel", 9]] + public


@pytest.mark.parametrize("version", [17, 18])
def test_ws_addon_guest_token_string(version):
    """17+: a mail.guest_<token> channel string selects the guest."""
    request, _, _, ctl = ws_addon(version)
    request.login(uid=None)
    out = ctl.lpgate_session(channels=["mail.guest_5|tok5"])
    assert out["guest_id"] == 5
    assert out["channels"][:3] == [["mydb", "mail.guest", 5],
                                   ["mydb", "discuss.channel", 7],
                                   ["mydb", "discuss.channel", 7, "members"]]
    assert not any("mail.guest_" in str(c) for c in out["channels"])
    out = ctl.lpgate_session(channels=["mail.guest_5|nope"])
    assert out["guest_id"] is None
    assert ["mydb", "mail.guest", 5] not in out["channels"]


def test_ws_addon_presence_channels_18():
    """18.0: odoo-presence-* strings are presence sub-channels, as its
    subscribe makes them, not string channels."""
    request, _, _, ctl = ws_addon(18)
    request.login(uid=2)
    out = ctl.lpgate_session(channels=["odoo-presence-res.partner_7"])
    assert out["channels"][0] == ["mydb", "res.partner", 7, "presence"]
    assert ["mydb", "odoo-presence-res.partner_7"] not in out["channels"]


@pytest.mark.parametrize("version", [16, 17, 18])
def test_ws_addon_rejects_non_strings_and_dedups(version):
    request, _, _, ctl = ws_addon(version)
    request.login(uid=2)
    for bad in ([1], [["mydb", "x"]], "broadcast", {"a": 1}):
        with pytest.raises(ValueError):
            ctl.lpgate_session(channels=bad)
    # "broadcast" asked for and added by bus: one entry; options ignored
    out = ctl.lpgate_session(channels=["broadcast", "broadcast"],
                             options={"bus_inactivity": 5})
    assert out["channels"].count(["mydb", "broadcast"]) == 1


@pytest.mark.parametrize("version", [16, 17, 18])
def test_ws_addon_leaves_bus_alone_and_imports_twice(version):
    """On 16+ the package imports the websocket controller only (14/15's
    main.py would fail: bus.controllers.main has no dispatch any more),
    touches nothing of bus, and importing it again changes nothing."""
    request, bus_models = install_fake_odoo_ws(version, World())
    dispatch = bus_models.dispatch
    pkg = load_addon("lpgate_bus")
    assert "lpgate_bus.controllers.websocket" in sys.modules
    assert "lpgate_bus.controllers.main" not in sys.modules
    assert not hasattr(sys.modules["odoo.addons.bus.controllers.main"],
                       "dispatch")
    load_addon("lpgate_bus")
    assert bus_models.dispatch is dispatch
    assert pkg.controllers.websocket.LpgateSessionController


def test_addon_series_of_an_online_release():
    """version_info[0] is 'saas~17' on an online series."""
    install_fake_odoo_ws(17, World())
    sys.modules["odoo.release"].version_info = ("saas~17", 2, 0, "final")
    addon = load_addon("lpgate_bus.controllers.websocket")
    request = sys.modules["odoo.http"].request
    request.login(uid=2)
    out = addon.LpgateSessionController().lpgate_session()
    assert out["version"] == 17


# -- the stand-in Odoo (odoo_standin.py) on 16 and 17 ----------------------
# lpgate's session and websocket tests run against it: its /lpgate/session
# must give what the addon gives on the same data, from the real tables
# lpgate's SQL fallback reads, and lpgate must detect the series.

def rpc(odoo, path, params, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", odoo.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request("POST", path, json.dumps(
            {"jsonrpc": "2.0", "id": 1, "params": params}), headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


@pytest.fixture(params=[16, 17], ids=["odoo16", "odoo17"])
def odoo_ws(pg, request):
    from odoo_standin import OdooStandin, create_database
    version = request.param
    db = "lpgtest%d" % version
    s = OdooStandin({db: (create_database(pg, db, version), version)})
    s.start()
    yield s, db, version
    s.stop()


def test_standin_series_detected(pg, odoo_ws):
    """lpgate reads the series from base's row as it does for 15."""
    from conftest import run_lpgate
    odoo, db, version = odoo_ws
    r = run_lpgate(["--check", "--db-host", pg.host, "--db-port",
                    str(pg.port), "--db-user", pg.user, "-d", db,
                    "--odoo-url", odoo.url])
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("Odoo version:    %d (base's latest_version" % version
            in r.stdout)
    tables = {t for (t,) in pg.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        dbname=db)}
    if version == 16:
        assert {"mail_channel", "mail_channel_member"} <= tables
        assert "discuss_channel" not in tables
    else:
        assert {"discuss_channel", "discuss_channel_member",
                "res_groups_users_rel"} <= tables
        assert "mail_channel" not in tables
    assert "mail_channel_partner" not in tables


def test_standin_websocket_channels(pg, odoo_ws):
    odoo, db, version = odoo_ws
    tag = secrets.token_hex(3)
    model = "mail.channel" if version == 16 else "discuss.channel"
    uid, pid = odoo.user(db, "alice" + tag, groups=[42] if version > 16
                         else ())
    _, bob = odoo.user(db, "bob" + tag)
    general = odoo.discuss_channel(db, "general" + tag, partners=[pid])
    dm = odoo.discuss_channel(db, "dm" + tag, partners=[pid, bob],
                              channel_type="chat")
    secret = odoo.discuss_channel(db, "secret" + tag, partners=[pid],
                                  group_public_id=99)
    staff = odoo.discuss_channel(db, "staff" + tag, group_public_id=42)
    priv = odoo.discuss_channel(db, "priv" + tag, partners=[bob],
                                channel_type="group")
    gid, dgid = odoo.guest(db, "guest" + tag, channels=["general" + tag])
    sid = odoo.login(db, uid)

    status, r = rpc(odoo, "/lpgate/session", {"channels": [
        "x", "discuss.channel_%d" % staff, "discuss.channel_%d" % priv,
        "discuss.channel_%d" % general]}, "session_id=" + sid)
    assert status == 200
    out = r["result"]
    assert (out["version"], out["db"], out["uid"], out["partner_id"],
            out["guest_id"]) == (version, db, uid, pid, None)
    if version == 16:
        # the strings stay strings; the partner's channel_ids, all of them
        assert out["channels"] == [
            [db, "x"], [db, "discuss.channel_%d" % staff],
            [db, "discuss.channel_%d" % priv],
            [db, "discuss.channel_%d" % general],
            [db, "res.partner", pid], [db, model, general], [db, model, dm],
            [db, model, secret], [db, "broadcast"]]
    else:
        # secret: member, but the record rule hides a channel of a group
        # alice is not in; staff: her group's, asked for; priv: neither
        found = sorted([general, dm, staff])
        assert out["channels"] == (
            [[db, "x"]] + [[db, model, c] for c in found]
            + [[db, model, dm, "members"]]
            + [[db, "broadcast"], [db, "res.partner", pid]])

    # a guest: its dgid cookie, public session
    status, r = rpc(odoo, "/lpgate/session", {}, "dgid=" + dgid)
    out = r["result"]
    assert (out["uid"], out["guest_id"]) == (None, gid)
    expect = [[db, "mail.guest", gid], [db, model, general]]
    if version > 16:
        expect.append([db, model, general, "members"])
    assert out["channels"] == expect + [[db, "broadcast"]]
    if version > 16:
        # 17: the guest named by a mail.guest_<token> string
        status, r = rpc(odoo, "/lpgate/session",
                        {"channels": ["mail.guest_" + dgid]})
        assert r["result"]["guest_id"] == gid
        assert r["result"]["channels"] == expect + [[db, "broadcast"]]

    # forged guest, no session, a logged-out session: public channels only
    for cookie in ("dgid=%d|nope" % gid, None, "session_id=" + sid):
        if cookie and cookie.startswith("session_id"):
            odoo.logout(sid)
        status, r = rpc(odoo, "/lpgate/session",
                        {"channels": ["discuss.channel_%d" % priv]}, cookie)
        out = r["result"]
        assert (out["uid"], out["guest_id"]) == (None, None)
        assert out["channels"] == (
            [[db, "discuss.channel_%d" % priv], [db, "broadcast"]]
            if version == 16 else [[db, "broadcast"]])
    status, r = rpc(odoo, "/web/session/get_session_info", {},
                    "session_id=" + sid)
    assert r["error"]["code"] == 100

    # what Odoo's subscribe refuses
    status, r = rpc(odoo, "/lpgate/session", {"channels": [1]})
    assert "ValueError" in r["error"]["data"]["name"]
