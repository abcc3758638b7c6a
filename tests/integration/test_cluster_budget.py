"""The connection budget across nodes (issue 15, item 4).

Several lpgate nodes on one PostgreSQL each claim (1 + workers +
max_cron_threads) * db_maxconn connections, announced in the
application_name of their LISTEN connection ("lpgate:<node>:<claim>").  A
starting node adds the other nodes' live claims to its own and refuses to
start (exit 2, the arithmetic printed) when the sum does not stay below
max_connections - superuser_reserved_connections; --sizing and --check show
the cluster.

Against a dedicated PostgreSQL with max_connections = 30 (27 usable): each
node here claims (1 + 1 + 1) * 4 = 12, so two fit (24) and a third (36)
does not.  Nodes are separate lpgate masters on separate ports, started
directly (conftest.Gateway).
"""

import os
import shutil
import signal
import socket
import tempfile
import threading

import pytest

from conftest import (BUS_BUS, Gateway, Postgres, free_port, run_lpgate,
                      wait_until)

MAX_CONNECTIONS = 30
NODE_ARGS = ["--max-cron-threads", "1", "--db-maxconn", "4"]


@pytest.fixture(scope="module")
def small_pg():
    base = tempfile.mkdtemp(prefix="lpgate-pg-small-")
    os.chmod(base, 0o755)
    cluster = Postgres(base)
    cluster.init()
    with open(os.path.join(cluster.data, "postgresql.conf"), "a") as f:
        f.write("max_connections = %d\n" % MAX_CONNECTIONS)
    cluster.start()
    cluster.sql("CREATE DATABASE lpgtest")
    cluster.sql(BUS_BUS, dbname="lpgtest")
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def node(small_pg, tmp_path):
    """Factory: node(name, ready=True, **kw) starts one lpgate node with one
    worker and a claim of 12 on the small server."""
    started = []

    def start(name, ready=True, workers=1, extra=(), **kw):
        d = tmp_path / ("%s-%d" % (name, len(started)))
        d.mkdir()
        gw = Gateway(small_pg, d, workers=workers,
                     extra_args=NODE_ARGS + ["--node-name", name,
                                             "--odoo-url", ""] + list(extra),
                     **kw)
        started.append(gw)
        if ready:
            gw.wait_ready()
        return gw

    yield start
    for gw in started:
        gw.stop()
        print("---- lpgate %s\n%s" % (gw.port, gw.output()))


def claims(pg):
    return sorted(r[0] for r in pg.sql(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE application_name LIKE 'lpgate:%'"))


def cli_args(pg, name):
    return ["--db-host", pg.host, "--db-port", str(pg.port), "--db-user",
            pg.user, "-d", "lpgtest", "--workers", "1", "--node-name", name,
            "--odoo-url", ""] + NODE_ARGS


REFUSAL = ("(1 + 1 + 1) * 4 = 12, plus 24 claimed by 2 other node(s) "
           "(%s 12, %s 12) = 36, but 30 - 3 = 27.")


def test_third_node_refused_until_one_stops(small_pg, node):
    a = node("a")
    b = node("b")
    wait_until(lambda: claims(small_pg) == ["lpgate:a:12", "lpgate:b:12"],
               10, what="the claims of a and b")
    assert a.log_contains('node "a", 0 other node(s) claim 0')
    assert b.log_contains('node "b", 1 other node(s) claim 12')

    c = node("c", ready=False)
    assert c.wait(20) == 2
    err = c.output()
    assert "connection budget exceeded" in err
    assert (REFUSAL % ("a", "b")) in err or (REFUSAL % ("b", "a")) in err
    # what to change, beside the others: 27 - 24 - 1 = 2 connections left
    assert "stop another node or shrink its claim" in err
    assert "raise max_connections in postgresql.conf to 40 or more" in err
    assert claims(small_pg) == ["lpgate:a:12", "lpgate:b:12"]

    # a stops (gracefully): its LISTEN connection, and its claim, go away
    a.stop()
    wait_until(lambda: claims(small_pg) == ["lpgate:b:12"], 10,
               what="a's claim to go")
    c = node("c")
    wait_until(lambda: claims(small_pg) == ["lpgate:b:12", "lpgate:c:12"],
               10, what="c's claim")
    assert c.log_contains('node "c", 1 other node(s) claim 12')


def test_sizing_and_check_show_the_cluster(small_pg, node):
    node("a")
    node("b")
    wait_until(lambda: len(claims(small_pg)) == 2, 10, what="two claims")

    r = run_lpgate(["--sizing"] + cli_args(small_pg, "c"))
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert ('cluster:        this node "c" claims 12; 2 other node(s) '
            "claim 24:") in r.stdout
    assert '"a" 12' in r.stdout and '"b" 12' in r.stdout
    assert "12 + 24 = 36 >= 30 - 3 = 27: DOES NOT FIT" in r.stdout
    assert "connection budget exceeded" in r.stdout

    # a node's own running claim is not counted twice (a --sizing beside
    # the running node, or a binary upgrade's new master)
    r = run_lpgate(["--sizing"] + cli_args(small_pg, "a"))
    assert r.returncode == 0, r.stderr
    assert ('cluster:        this node "a" claims 12; 1 other node(s) '
            'claim 12: "b" 12') in r.stdout
    assert ("12 + 12 = 24 < 30 - 3 = 27: fits; a further node may claim up "
            "to 2") in r.stdout
    assert "a claim under this node's name is live" in r.stdout

    r = run_lpgate(["--check"] + cli_args(small_pg, "c"))
    print(r.stdout, r.stderr)
    assert r.returncode == 2, r.stdout
    assert "  cluster:        this node \"c\" claims 12; 2 other" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == (
        "check: FAILED: connection budget: (1 + 1 + 1) * 4 = 12 plus 24 "
        "claimed by 2 other node(s) = 36 is not below 30 - 3 = 27")

    # a smaller claim fits beside them: (1 + 1 + 0) * 1 = 2, 24 + 2 < 27
    r = run_lpgate(["--sizing"] + cli_args(small_pg, "c")
                   + ["--db-maxconn", "1", "--max-cron-threads", "0"])
    assert r.returncode == 0, r.stdout
    assert "2 + 24 = 26 < 30 - 3 = 27: fits" in r.stdout
    assert "connection budget exceeded" not in r.stdout


def test_claim_wins_over_the_listen_dsn_and_follows_a_reload(small_pg, node):
    """application_name in listen_dsn does not hide the claim; a reload
    that changes workers announces the new claim."""
    pg = small_pg
    dsn = ("host=%s port=%d user=%s dbname=postgres application_name=mine"
           % (pg.host, pg.port, pg.user))
    a = node("a", workers=None, config="workers = 1;\n",
             extra=["--listen-dsn", dsn])
    wait_until(lambda: claims(pg) == ["lpgate:a:12"], 10, what="a's claim")
    backend = listen_backend(pg)

    a.write_config("workers = 2;\n")
    a.signal(signal.SIGHUP)
    # (1 + 2 + 1) * 4, announced on the same connection (SET
    # application_name): a reload is no LISTEN outage, /health stays 200
    # all along
    seen = []

    def renamed():
        seen.append(a.health())
        return claims(pg) == ["lpgate:a:16"]

    wait_until(renamed, 15, what="the reloaded claim")
    assert listen_backend(pg) == backend
    assert {s for s, _ in seen} == {200}, seen
    # and while the new workers come up (workers 1 -> 2)
    wait_until(lambda: len(a.worker_pids()) >= 2, 10, what="two workers")
    assert a.health()[0] == 200
    a.wait_log('connection claim now "lpgate:a:16"')
    assert "reconnecting the LISTEN connection" not in a.output()


def listen_backend(pg):
    rows = pg.sql("SELECT pid FROM pg_stat_activity "
                  "WHERE application_name LIKE 'lpgate:%'")
    assert len(rows) == 1, rows
    return rows[0][0]


class Forwarder:
    """A TCP relay from port to the server, started later: until then
    nothing listens on port (the database looks down to whoever uses it)."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.sock = None

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        if self.sock is not None:
            self.sock.close()


def test_claims_checked_when_the_database_comes_back(small_pg, node):
    """A node that could not ask at start checks its claim beside the
    others' on its LISTEN connection's first setup, and stops (exit 2)."""
    pg = small_pg
    node("a")
    fwd = Forwarder(free_port(), (pg.host, pg.port))
    dsn = "host=127.0.0.1 port=%d user=%s dbname=postgres" % (fwd.port,
                                                             pg.user)
    try:
        # (1 + 1 + 1) * 6 = 18; 12 + 18 = 30 >= 27
        c = node("c", ready=False, extra=["--listen-dsn", dsn,
                                          "--db-maxconn", "6"])
        c.wait_log("could not check the connection budget now")
        assert c.running()
        fwd.start()
        assert c.wait(20) == 2
    finally:
        fwd.stop()
    log = c.log()
    assert "(1 + 1 + 1) * 6 = 18, plus 12 claimed by 1 other node(s) " \
        "(a 12) = 30, but 30 - 3 = 27." in log
    assert claims(pg) == ["lpgate:a:12"]


def test_node_name_is_checked():
    r = run_lpgate(["--check-config", "--node-name", "a b"])
    assert r.returncode == 2
    assert "node_name" in r.stderr
    r = run_lpgate(["--check-config", "--node-name", "x" * 49])
    assert r.returncode == 2
    r = run_lpgate(["--check-config", "--node-name", "web-1.example:8072"])
    assert r.returncode == 0, r.stderr
