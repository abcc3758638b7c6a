# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
{
    "name": "lpgate bus sessions",
    # Odoo prefixes its series: 14.0.1.0.0 on 14.0, 15.0.1.0.0 on 15.0
    "version": "1.0.0",
    "summary": "Tells the lpgate long-polling gateway who a session is and "
               "which bus channels Odoo's own _poll chain gives it",
    "description": """
One JSON route, POST /lpgate/session, for the lpgate long-polling gateway
(which replaces Odoo's gevent long-polling process). For the calling
session (cookies session_id and, 15.0, dgid) it returns the uid, the
database and the channel list that Odoo's own BusController._poll chain
builds for a poll, so every installed addon's channels count, and it
refreshes presence as a poll does. Works on 14.0 and 15.0.
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
