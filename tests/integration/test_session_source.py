"""Which source serves a database's sessions (issue 17): lpgate says it
once at notice, whichever worker learns it first, and again when the
lpgate_bus addon is installed or removed while lpgate runs.  Against the
stand-in Odoo of odoo_standin.py (`addon` switches its /lpgate/session
route) and the real test PostgreSQL.
"""

import concurrent.futures
import json
import re

import pytest

from conftest import wait_until
from odoo_standin import OdooStandin


ADDON = 'database "lpgtest": sessions from the lpgate_bus addon'
BUILTIN = ('database "lpgtest": sessions from get_session_info and '
           'built-in SQL')

pool = concurrent.futures.ThreadPoolExecutor(max_workers=16)


@pytest.fixture
def odoo(pg):
    s = OdooStandin({"lpgtest": (pg.dsn("lpgtest"), 14)}).start()
    yield s
    s.stop()


def poll(gw, sid):
    """A poll of a fresh session; Odoo is asked who it is."""
    body = {"jsonrpc": "2.0", "method": "call", "id": 1,
            "params": {"channels": [], "last": 0}}
    status, _, data = gw.http("POST", "/longpolling/poll", body,
                              {"Cookie": "session_id=" + sid}, timeout=15)
    assert status == 200, (status, data)
    assert "error" not in json.loads(data)


def lookup_workers(log):
    """The worker pids whose own lookups were answered, in log order."""
    return [m.group(1) for m in re.finditer(
        r"worker#\d+ (\d+) debug: session \S+: answered, uid", log)]


def lookups_in_every_worker(gw, odoo, uid, workers=2):
    """Polls with fresh sessions until each worker has asked Odoo itself
    at least once since now."""
    start = len(lookup_workers(gw.log()))

    def spread():
        sids = [odoo.login("lpgtest", uid) for _ in range(8)]
        for f in [pool.submit(poll, gw, s) for s in sids]:
            f.result(30)
        return len(set(lookup_workers(gw.log())[start:])) >= workers

    wait_until(spread, 60, interval=0, what="lookups in both workers")


def test_session_source_logged_once_per_change(pg, gateway, odoo):
    uid, _ = odoo.user("lpgtest", "ada")
    odoo.addon = True
    # session_ttl 2: a worker that met a 404 asks the addon again after
    # 2 s (60 s at most), so a later install is seen within the test
    gw = gateway(workers=2,
                 extra_args=["--odoo-url", odoo.url, "--timeout", "1",
                             "--session-ttl", "2", "--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo')

    lookups_in_every_worker(gw, odoo, uid)
    gw.wait_log(ADDON)
    assert odoo.count("/lpgate/session") >= 2
    assert gw.log().count(ADDON) == 1, gw.log()
    assert BUILTIN not in gw.log()
    line = [x for x in gw.log().splitlines() if ADDON in x][0]
    assert " notice: " in line and "worker#" in line

    # the addon is uninstalled: /lpgate/session answers 404
    odoo.addon = False
    odoo.reset_counts()
    lookups_in_every_worker(gw, odoo, uid)
    gw.wait_log(BUILTIN)
    assert odoo.count("/web/session/get_session_info") >= 2
    assert gw.log().count(BUILTIN) == 1, gw.log()
    assert gw.log().count(ADDON) == 1

    # installed again: said once more when a worker asks the route again
    odoo.addon = True

    def addon_again():
        sids = [odoo.login("lpgtest", uid) for _ in range(4)]
        for f in [pool.submit(poll, gw, s) for s in sids]:
            f.result(30)
        return gw.log().count(ADDON) >= 2

    wait_until(addon_again, 60, interval=0.5, what="the addon seen again")
    lookups_in_every_worker(gw, odoo, uid)
    log = gw.log()
    assert log.count(ADDON) == 2, log
    assert log.count(BUILTIN) == 1, log
    assert log.index(BUILTIN) < log.rindex(ADDON)
