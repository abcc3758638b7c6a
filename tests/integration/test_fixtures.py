"""Self-tests of the integration harness (conftest.py): the PostgreSQL
cluster fixture and the small helpers.  None of them needs the lpgate
binary, so they also run (e.g. `LPGATE_BIN=/bin/false pytest -k fixture`)
before lpgate builds, and a failure here points at the harness, not at
lpgate.
"""

import os
import pwd
import socket

import pytest

from conftest import free_port, wait_until


def test_pg_fixture_sql(pg):
    """The session cluster answers SQL, has the test databases and
    pg_stat_statements loaded (the query-count tests read it)."""
    assert pg.sql("SELECT 1") == [(1,)]
    assert pg.host == "127.0.0.1" and pg.user == "postgres"
    assert "port=%d" % pg.port in pg.dsn()
    dbs = {name for (name,) in pg.sql("SELECT datname FROM pg_database")}
    assert {"postgres", "lpgtest"} <= dbs
    [(libs,)] = pg.sql("SHOW shared_preload_libraries")
    assert "pg_stat_statements" in libs
    [(n,)] = pg.sql("SELECT count(*) FROM pg_stat_statements")
    assert n >= 0
    [(n,)] = pg.sql("SELECT count(*) FROM bus_bus", dbname="lpgtest")
    assert n >= 0


def test_pg_fixture_runs_unprivileged(pg):
    """initdb refuses root: when the tests run as root, the cluster
    belongs to the user postgres."""
    owner = os.stat(pg.data).st_uid
    if os.geteuid() == 0:
        assert owner == pwd.getpwnam("postgres").pw_uid
    else:
        assert owner == os.geteuid()
    assert os.path.exists(pg.log_path)


def test_pg_fixture_set_conf_reload(pg):
    """set_conf goes through ALTER SYSTEM and a reload; a new session
    sees the value.  Reset afterwards: the cluster is shared."""
    try:
        pg.set_conf("work_mem", "7MB")
        wait_until(lambda: pg.sql("SHOW work_mem") == [("7MB",)], 5,
                   what="work_mem to be reloaded")
    finally:
        pg.sql("ALTER SYSTEM RESET work_mem")
        pg.sql("SELECT pg_reload_conf()")
    wait_until(lambda: pg.sql("SHOW work_mem") != [("7MB",)], 5,
               what="work_mem to be reset")


def test_pg_fixture_connect_is_autocommit(pg):
    with pg.connect("lpgtest") as conn:
        assert conn.autocommit
        assert conn.execute("SELECT current_database()").fetchall() == [
            ("lpgtest",)]


def test_free_port_is_free_and_below_ephemeral_range():
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    for port in ports:
        assert 10200 <= port < 32000
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_wait_until_returns_value_or_raises():
    calls = []

    def third_time():
        calls.append(1)
        return len(calls) >= 3 and "done"
    assert wait_until(third_time, 5, interval=0.001) == "done"
    with pytest.raises(AssertionError, match="never"):
        wait_until(lambda: False, 0.1, what="never")
