# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
# One route, two implementations: 14.0/15.0 run bus's /longpolling/poll
# chain (main), 16.0+ run ir.websocket's channel list (websocket).  Only
# the one for the running series is imported: main wraps the 14/15 bus
# dispatcher, which 16.0+ no longer has in bus.controllers.main.
from odoo import release


def _major(info):
    """version_info[0]: 16 on a release, 'saas~17' on an online series."""
    if isinstance(info, int):
        return info
    return int(str(info).rsplit("~", 1)[-1].split(".")[0])


if _major(release.version_info[0]) >= 16:
    from . import websocket
else:
    from . import main
