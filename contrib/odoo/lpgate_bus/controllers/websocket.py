# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
"""POST /lpgate/session on Odoo 16.0, 17.0 and 18.0: who the calling
session is and which bus channels Odoo's /websocket would subscribe it to.

lpgate (the C gateway in Odoo's /websocket slot) cannot run Odoo's Python,
so it asks this route once per session and session_ttl.  Odoo 16+ builds a
socket's channels in ir.websocket: the subscribe event runs
_build_bus_channel_list (16.0, 17.0) or _prepare_subscribe_data (18.0,
which adds the presence channels and then calls _build_bus_channel_list)
on the client's channel strings, every installed addon's override
included, and stores each channel as bus.models.bus.channel_with_db gives
it.  This route runs the same model method as the session's user (Odoo's
auth has checked the session_id cookie: an expired or forged one is the
public user here) and returns the list in the JSON form whose compact dump
bus_bus.channel holds.  The guest cookie dgid is read by mail's override
itself (16.0: _get_guest_from_request; 17.0+: add_guest_to_context).

Nothing else is written: the session store is left alone
(save_session=False) and presence is lpgate's own business.
"""

from odoo import http, release
from odoo.http import request

from odoo.addons.bus.models.bus import channel_with_db

from . import _major


def channel_json(value):
    """Tuples as lists, recursively: what json_dump stores."""
    if isinstance(value, (tuple, list)):
        return [channel_json(v) for v in value]
    return value


def subscription(ws, channels):
    """The channel set a subscribe of `channels` gives on this series."""
    if hasattr(ws, "_prepare_subscribe_data"):
        # 18.0: "odoo-presence-<model>_<id>" strings become presence
        # channels, the rest goes through _build_bus_channel_list
        return ws._prepare_subscribe_data(list(channels), 0)["channels"]
    return ws._build_bus_channel_list(list(channels))


class LpgateSessionController(http.Controller):

    # save_session=False: a lookup on behalf of the gateway leaves the
    # session store alone (no Set-Cookie, no new session file for a call
    # without a valid session, an expired session's file left for the
    # browser's own next request).  `channels`: the strings the client sent
    # in its subscribe; other parameters (options of the 14/15 route) are
    # accepted and ignored.
    @http.route("/lpgate/session", type="json", auth="public", csrf=False,
                save_session=False)
    def lpgate_session(self, channels=None, **kwargs):
        requested = [] if channels is None else channels
        if (not isinstance(requested, list)
                or not all(isinstance(c, str) for c in requested)):
            # what Odoo's subscribe says of the same input
            raise ValueError("bus.Bus only string channels are allowed.")
        db = request.db
        uid = request.session.uid or None
        partner_id = request.env.user.partner_id.id if uid else None

        built = subscription(request.env["ir.websocket"], requested)

        guest_id = None
        out, seen = [], set()
        for c in built:
            if (not uid and guest_id is None and not isinstance(c, tuple)
                    and getattr(c, "_name", None) == "mail.guest"):
                guest_id = c.id
            key = channel_json(channel_with_db(db, c))
            text = repr(key)
            if text not in seen:  # Odoo subscribes a set
                seen.add(text)
                out.append(key)

        return {
            "version": _major(release.version_info[0]),
            "db": db,
            "uid": uid,
            "partner_id": partner_id,
            "guest_id": guest_id,
            "channels": out,
        }
