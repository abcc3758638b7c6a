"""Odoo 16+'s /websocket through Debian's nginx (issue 13, item 7): the
shipped contrib/nginx/lpgate.conf (HTTP/1.1 upgrade, Connection from a
map of $http_upgrade) and Odoo's own documented block (no
proxy_http_version, so nginx sends the upgrade as HTTP/1.0), each in front
of a real lpgate, the stand-in Odoo 17 and a real WebSocket client.
"""

import asyncio
import json
import re

import websockets

from odoo_standin import OdooStandin, create_database
from test_proxy import app, nginx  # noqa: F401

import pytest


DB = "lpgtest17"

# Odoo's deployment docs (content/administration/on_premise/deploy.rst,
# 16+): the map and the location as they print them
ODOO_DOCS_BLOCK = """
    location /websocket {
        proxy_pass http://lpgate;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Real-IP $remote_addr;
    }
"""
ODOO_DOCS_MAP = """
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
"""


def odoo_docs(site):
    """The shipped file with its /websocket location replaced by Odoo's."""
    site, n = re.subn(r"\n    location /websocket \{.*?\n    \}\n",
                      ODOO_DOCS_BLOCK, site, count=1, flags=re.S)
    assert n == 1, "the shipped file has no /websocket location"
    return ODOO_DOCS_MAP + site


@pytest.fixture
def odoo(pg):
    s = OdooStandin({DB: (create_database(pg, DB, 17), 17)}).start()
    yield s
    s.stop()


@pytest.mark.parametrize("form", ["shipped", "odoo-docs"])
def test_websocket_through_nginx(pg, gateway, odoo, nginx, form):  # noqa
    gw = gateway(workers=2, extra_args=["-d", DB, "--odoo-url", odoo.url,
                                        "--log-level", "debug"])
    gw.wait_log('database "%s": Odoo' % DB)
    port = nginx(gw.port, odoo_docs if form == "odoo-docs" else None)

    uid, partner = odoo.user(DB, "alice")
    sid = odoo.login(DB, uid)

    last = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=DB)[0][0]

    async def go():
        async with websockets.connect(
                "ws://127.0.0.1:%d/websocket?version=17.0-1" % port,
                origin="http://127.0.0.1:%d" % port,
                extra_headers={"Cookie": "session_id=" + sid},
                ping_interval=None) as ws:
            await ws.send(json.dumps({"event_name": "subscribe",
                                      "data": {"channels": [], "last": last}}))
            await asyncio.sleep(0)
            gw.wait_log("websocket subscribed", timeout=10)
            bus_id = pg.send(DB, [DB, "res.partner", partner],
                             {"type": "via-nginx", "payload": {"form": form}})
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame == [{"id": bus_id, "message": {
                "type": "via-nginx", "payload": {"form": form}}}]
            await ws.close()

    asyncio.run(go())
