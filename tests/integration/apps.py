"""Helpers of the transports for applications other than Odoo (SSE aside):
the lpgate_send() SQL loaded into the test database, a gateway started
with debug logs and ready for it, and a publish through lpgate_send().
Shared by test_wsapi.py and test_socketio.py."""

import json
import os

import pytest

from conftest import SRCDIR

DB = "lpgtest"


@pytest.fixture
def sql(pg):
    with open(os.path.join(SRCDIR, "contrib", "sql", "lpgate.sql")) as f:
        pg.sql(f.read(), dbname=DB)


def start(gateway, workers=1, config="", args=()):
    gw = gateway(workers=workers, config=config or None,
                 extra_args=["--log-level", "debug"] + list(args))
    gw.wait_log('database "%s": Odoo' % DB)
    return gw


def publish(pg, channel, message):
    return pg.sql("SELECT lpgate_send(%s, %s::json)",
                  (channel, json.dumps(message)), dbname=DB)[0][0]
