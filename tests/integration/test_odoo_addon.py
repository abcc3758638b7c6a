"""The lpgate_bus addon (contrib/odoo) against a stand-in of the few Odoo
APIs it touches: odoo.http.route, request, the bus controller's _poll
chain (14.0 and 15.0 shapes, with mail's override as a sibling subclass,
combined the way Odoo's routing_map does) and the module-level dispatch.
Odoo itself cannot run in CI; this checks the addon's own logic: the
chain's channel list is captured instead of waited on, in the form stored
in bus_bus, and the real dispatcher is untouched outside the route.
"""

import importlib
import os
import sys
import types

import pytest


SRC = os.environ.get("LPGATE_SRCDIR",
                     os.path.join(os.path.dirname(__file__), "..", ".."))


class Record:
    def __init__(self, model, id):
        self._name, self.id = model, id


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


def load_addon():
    sys.path.insert(0, os.path.join(SRC, "contrib", "odoo"))
    try:
        for name in list(sys.modules):
            if name.startswith("lpgate_bus"):
                del sys.modules[name]
        return importlib.import_module("lpgate_bus.controllers.main")
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
