"""lpgate --check (issue 17): it connects to each configured database and
to odoo_url as the gateway would, prints per database Odoo's version, the
session source, and whether LISTEN works, with the connection budget, and
exits 2 with the reason when something would not work.  Against the real
test PostgreSQL and the stand-in Odoo of odoo_standin.py (a real HTTP
server; `addon` switches its /lpgate/session route).
"""

import pytest

from conftest import free_port, run_lpgate
from odoo_standin import OdooStandin


VERSIONS = {"lpgtest": 14, "lpgtest15": 15}


def check(pg, *args, db="lpgtest", workers=2):
    r = run_lpgate(["--check", "--db-host", pg.host, "--db-port",
                    str(pg.port), "--db-user", pg.user, "-d", db,
                    "--workers", str(workers)] + list(args))
    print(r.stdout, r.stderr)
    return r


def block(out, db):
    """The lines of one database's block."""
    lines = out.split('database "%s"\n' % db, 1)[1].split("\n\n", 1)[0]
    return lines


def server_budget(pg):
    [(maxconn, reserved)] = pg.sql(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int")
    return maxconn, reserved


@pytest.fixture
def odoo(pg, request):
    db = getattr(request, "param", "lpgtest")
    s = OdooStandin({db: (pg.dsn(db), VERSIONS[db])}).start()
    yield s
    s.stop()


@pytest.mark.parametrize("odoo", ["lpgtest", "lpgtest15"], indirect=True,
                         ids=["odoo14", "odoo15"])
@pytest.mark.parametrize("addon", [True, False], ids=["addon", "builtin-sql"])
def test_check_against_standin(pg, odoo, addon):
    db = odoo.default_db
    odoo.addon = addon
    r = check(pg, "--odoo-url", odoo.url, db=db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("check: ok")

    b = block(r.stdout, db)
    assert "  Odoo version:    %d (" % VERSIONS[db] in b
    assert "LISTEN:          works" in b
    # the LISTEN connection (database postgres) works too
    assert r.stdout.count("LISTEN:          works") == 2
    if addon:
        assert "session source:  the lpgate_bus addon" in b
        assert odoo.count("/lpgate/session") == 1
        assert odoo.count("/web/session/get_session_info") == 0
    else:
        assert "session source:  built-in SQL" in b
        assert odoo.count("/lpgate/session") == 1
        assert odoo.count("/web/session/get_session_info") == 1

    maxconn, reserved = server_budget(pg)
    assert ("connection budget: (1 + workers 2 + max_cron_threads 1) * "
            "db_maxconn 8 = 32 < max_connections %d - "
            "superuser_reserved_connections %d = %d: fits"
            % (maxconn, reserved, maxconn - reserved)) in r.stdout


def test_check_several_databases(pg, odoo):
    r = check(pg, "--odoo-url", odoo.url, db="lpgtest,lpgtest15")
    assert r.returncode == 0, r.stdout
    assert "Odoo version:    14" in block(r.stdout, "lpgtest")
    assert "Odoo version:    15" in block(r.stdout, "lpgtest15")
    # the stand-in serves lpgtest to a request without session: said
    assert 'Odoo answered for database "lpgtest"' in block(r.stdout,
                                                          "lpgtest15")
    assert "master connections: LISTEN + 2 database(s) = 3" in r.stdout


def test_check_database_without_odoo_tables(pg, odoo):
    if not pg.sql("SELECT 1 FROM pg_database WHERE datname = 'lpgplain'"):
        pg.sql("CREATE DATABASE lpgplain")
    r = check(pg, "--odoo-url", odoo.url, db="lpgplain")
    assert r.returncode == 2, r.stdout
    assert "no bus_bus table" in block(r.stdout, "lpgplain")
    assert r.stdout.rstrip().splitlines()[-1] == (
        'check: FAILED: database "lpgplain" has no bus_bus table')


def test_check_missing_database(pg, odoo):
    r = check(pg, "--odoo-url", odoo.url, db="lpgtest,lpgnosuchdb")
    assert r.returncode == 2, r.stdout
    assert "connection:      FAILED" in block(r.stdout, "lpgnosuchdb")
    assert "Odoo version:    14" in block(r.stdout, "lpgtest")
    last = r.stdout.rstrip().splitlines()[-1]
    assert last.startswith('check: FAILED: database "lpgnosuchdb": ')
    assert "does not exist" in last


def test_check_unreachable_odoo_url(pg):
    url = "http://127.0.0.1:%d" % free_port()   # nothing listens there
    r = check(pg, "--odoo-url", url)
    assert r.returncode == 2, r.stdout
    assert "odoo_url:          %s: FAILED" % url in r.stdout
    assert "session source:  FAILED: odoo_url unreachable" in block(
        r.stdout, "lpgtest")
    # the database itself was still checked
    assert "LISTEN:          works" in block(r.stdout, "lpgtest")
    last = r.stdout.rstrip().splitlines()[-1]
    assert last.startswith("check: FAILED: odoo_url %s unreachable: " % url)


def test_check_odoo_url_not_odoo(pg):
    # something answers, but not as Odoo: a 500 on every route
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        r = check(pg, "--odoo-url", url)
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.returncode == 2, r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == (
        "check: FAILED: odoo_url %s answered HTTP 500" % url)


def test_check_budget_broken(pg, odoo):
    maxconn, reserved = server_budget(pg)
    r = check(pg, "--odoo-url", odoo.url, "--db-maxconn", "40",
              "--max-cron-threads", "1")
    assert r.returncode == 2, r.stdout
    need = (1 + 2 + 1) * 40
    assert need >= maxconn - reserved
    assert ("db_maxconn 40 = %d >= max_connections %d - "
            "superuser_reserved_connections %d = %d: DOES NOT FIT"
            % (need, maxconn, reserved, maxconn - reserved)) in r.stdout
    assert "Change one of:" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == (
        "check: FAILED: connection budget: (1 + 2 + 1) * 40 = %d is not "
        "below %d - %d = %d" % (need, maxconn, reserved, maxconn - reserved))


def test_check_sessions_off(pg):
    r = check(pg, "--odoo-url", "")
    assert r.returncode == 0, r.stdout
    assert "session source:  none: odoo_url is \"\"" in block(r.stdout,
                                                              "lpgtest")
    assert r.stdout.rstrip().endswith("check: ok")


def test_check_database_server_down(pg):
    # nothing listens on this port: every connection fails, exit 2
    r = run_lpgate(["--check", "--db-host", "127.0.0.1", "--db-port",
                    str(free_port()), "--db-user", pg.user, "-d", "lpgtest",
                    "--odoo-url", ""])
    print(r.stdout)
    assert r.returncode == 2
    assert "listen connection: FAILED" in r.stdout
    assert "connection:      FAILED" in block(r.stdout, "lpgtest")
    assert r.stdout.rstrip().splitlines()[-1].startswith(
        "check: FAILED: the LISTEN connection failed: ")
