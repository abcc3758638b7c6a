# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
"""POST /lpgate/session: who the calling session is, for lpgate.

lpgate (the C long-polling gateway) cannot run Odoo's Python _poll
overrides, so it asks this route once per session and TTL.  The route runs
the real chain, self._poll(db, [], 0, options), with the bus module's
dispatcher wrapped so that, inside this route only, dispatch.poll() hands
back the channel list instead of waiting.  Everything else (the public
/longpolling/poll route, Odoo's own gevent process) goes to the real
dispatcher untouched.
"""

import threading

from odoo import http, release
from odoo.http import request

from odoo.addons.bus.controllers import main as bus_main
from odoo.addons.bus.controllers.main import BusController

try:  # 15.0: channels are records and strings, stored per database
    from odoo.addons.bus.models.bus import channel_with_db
except ImportError:  # 14.0: tuples and strings, stored as they are
    channel_with_db = None


_capture = threading.local()


class CapturingDispatch(object):
    """Delegates to Odoo's dispatcher, except inside /lpgate/session."""

    _lpgate_capture = True

    def __init__(self, real):
        self._real = real

    def __bool__(self):
        # 8.0-14.0 prefork HTTP workers have no dispatcher (None): keep the
        # public poll route's "bus.Bus unavailable" check working
        return bool(self._real)

    __nonzero__ = __bool__

    def poll(self, dbname, channels, last, options=None, *args, **kwargs):
        if getattr(_capture, "on", False):
            _capture.channels = list(channels)
            return []
        return self._real.poll(dbname, channels, last, options, *args,
                               **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


if not getattr(bus_main.dispatch, "_lpgate_capture", False):
    bus_main.dispatch = CapturingDispatch(bus_main.dispatch)


def channel_json(db, channel):
    """The JSON value whose compact dump is what bus_bus.channel holds."""
    if channel_with_db is not None:
        channel = channel_with_db(db, channel)
    if isinstance(channel, tuple):
        channel = list(channel)
    return channel


class LpgateBusController(BusController):

    # save_session=False: a lookup on behalf of the gateway leaves the
    # session store alone (Odoo would otherwise write a new session file and
    # send a Set-Cookie for every call without a valid session, and delete
    # an expired session's file); a release without the flag ignores it.
    # The rule Odoo serves for this URL is the one of bus's BusController
    # combined with all its installed subclasses (mail's, every other
    # addon's and this one), so self._poll below is the whole chain.
    @http.route("/lpgate/session", type="json", auth="public", csrf=False,
                save_session=False)
    def lpgate_session(self, options=None, **kwargs):
        options = dict(options or {})
        options.pop("peek", None)
        db = request.db
        # Odoo's auth has checked the session already: an expired or
        # forged one is the public user here (uid None)
        uid = request.session.uid or None
        partner_id = request.env.user.partner_id.id if uid else None
        guest_id = None
        if not uid and "mail.guest" in request.env:
            guest = request.env["mail.guest"]._get_guest_from_request(request)
            guest_id = guest.id or None

        # the chain closes the request cursor before dispatch.poll(): read
        # everything needed before this call
        _capture.on = True
        _capture.channels = None
        try:
            self._poll(db, [], 0, options)
        finally:
            _capture.on = False
        channels = _capture.channels or []
        _capture.channels = None

        return {
            "version": release.version_info[0],
            "db": db,
            "uid": uid,
            "partner_id": partner_id,
            "guest_id": guest_id,
            "channels": [channel_json(db, c) for c in channels],
        }
