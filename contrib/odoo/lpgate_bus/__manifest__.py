# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
{
    "name": "lpgate bus sessions",
    # Odoo prefixes its series (14.0.1.0.0 ... 18.0.1.0.0); x.y.z is the
    # form 17.0's adapt_version requires and older series accept
    "version": "1.0.0",
    "summary": "Tells the lpgate gateway who a session is and which bus "
               "channels Odoo itself would give it",
    "description": """
One JSON route, POST /lpgate/session, for the lpgate gateway (which
replaces Odoo's gevent long-polling / websocket process). For the calling
session (cookies session_id and dgid) it returns the uid, the database and
the bus channels Odoo's own code builds for it, so every installed addon's
channels count: the BusController._poll chain on 14.0 and 15.0 (which also
refreshes presence as a poll does), ir.websocket's channel list for a
subscribe on 16.0, 17.0 and 18.0.
""",
    "author": "lpgate",
    # the code is MIT; Odoo's license field only accepts its own list
    # (ir.module.module.license), where "MIT" fails the module-list update
    "license": "Other OSI approved licence",
    "category": "Hidden",
    "depends": ["bus", "mail"],
    "installable": True,
    "auto_install": False,
}
