"""lpgate-bench, the load generator (bench/): it must count every delivery
right, or the benchmark numbers mean nothing.  Small runs against a real
lpgate; a run whose messages cannot arrive must fail."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import free_port

BENCH = os.environ.get("LPGATE_BENCH_BIN",
                       os.path.join(os.path.dirname(
                           os.environ.get("LPGATE_BIN", "lpgate")),
                           "lpgate-bench"))


def bench(*args, timeout=120):
    r = subprocess.run([BENCH] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    summary = None
    for line in r.stdout.splitlines():
        if line.startswith("SUMMARY "):
            summary = json.loads(line[len("SUMMARY "):])
    return r, summary


@pytest.fixture
def gw(gateway):
    return gateway(workers=2).wait_ready()


@pytest.mark.parametrize("mode,extra,expected", [
    ("fanout", ["--polls=300", "--rounds=3"], 900),
    ("fanout", ["--polls=300", "--channels=3", "--rounds=2"], 600),
    ("private", ["--polls=200", "--rounds=2"], 400),
])
def test_bench_counts_every_delivery(pg, gw, mode, extra, expected):
    r, s = bench("--mode=" + mode, "--port=%d" % gw.port,
                 "--dsn=" + pg.dsn("lpgtest"), "--pid=%d" % gw.pid,
                 "--procs=2", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["complete"] is True
    assert s["expected"] == s["received"] == expected
    assert s["errors"] == 0 and s["duplicates"] == 0
    assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    # the server's processes were found and measured (CPU time of so small
    # a run may be under one clock tick, so only RSS is sure to be > 0)
    assert s["rss_kib_after"] > 0 and s["cpu_ms"] >= 0


def test_bench_throughput_accounts_for_every_message(pg, gw):
    r, s = bench("--mode=throughput", "--polls=100", "--channels=5",
                 "--seconds=2", "--publishers=2", "--port=%d" % gw.port,
                 "--dsn=" + pg.dsn("lpgtest"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["published"] > 0
    # every poll of a channel gets every message of that channel
    assert s["expected"] == s["published"] * 100 // 5
    assert s["received"] == s["expected"]


def test_bench_fails_when_deliveries_are_missing(pg, gw):
    """Published where lpgate does not look (another database): every
    delivery is missing, so the run must fail, not report success."""
    pg.sql("DROP DATABASE IF EXISTS elsewhere")
    pg.sql("CREATE DATABASE elsewhere")
    pg.sql("CREATE TABLE bus_bus (id serial PRIMARY KEY, channel varchar, "
           "message varchar, create_date timestamp, write_date timestamp)",
           dbname="elsewhere")
    # polls start from elsewhere's largest id, above anything in lpgtest
    pg.sql("SELECT setval('bus_bus_id_seq', 1000000000); "
           "INSERT INTO bus_bus (channel, message) VALUES ('\"x\"', '1')",
           dbname="elsewhere")
    r, s = bench("--mode=fanout", "--polls=50", "--rounds=1", "--timeout=3",
                 "--port=%d" % gw.port, "--dsn=" + pg.dsn("elsewhere"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert s["complete"] is False
    assert s["received"] < s["expected"]
    assert "clients complete" in r.stderr


@pytest.fixture
def ws_standin(pg):
    """Factory: a ws_standin.py (Odoo 16+'s /websocket bus in Python over
    the test PostgreSQL) on a free port; stopped at the end."""
    if importlib.util.find_spec("websockets") is None:
        pytest.skip("python3-websockets is not installed "
                    "(apt-get install python3-websockets): no WebSocket "
                    "server to run lpgate-bench --proto=odoo-ws against")
    procs = []

    def start(*args):
        port = free_port()
        p = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__),
                                          "ws_standin.py"),
             "--port=%d" % port, "--dsn=" + pg.dsn("lpgtest")] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.startswith("listening"), line + p.stderr.read()
        p.port = port
        return p

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("mode,extra,expected", [
    ("fanout", ["--polls=300", "--rounds=3"], 900),
    ("private", ["--polls=200", "--rounds=2"], 400),
])
def test_bench_odoo_ws_counts_every_delivery(pg, ws_standin, mode, extra,
                                             expected):
    """--proto=odoo-ws against the Python stand-in of Odoo's /websocket:
    every socket upgrades, subscribes and gets every message once.  The
    stand-in PINGs before every batch and sends it only after the PONG, so
    a client that did not answer PINGs would miss every delivery."""
    srv = ws_standin("--ping")
    r, s = bench("--proto=odoo-ws", "--mode=" + mode,
                 "--port=%d" % srv.port, "--dsn=" + pg.dsn("lpgtest"),
                 "--pid=%d" % srv.pid, "--procs=2", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["proto"] == "odoo-ws" and s["complete"] is True
    assert s["expected"] == s["received"] == expected
    assert s["errors"] == 0 and s["duplicates"] == 0
    assert "reconnects 0," in r.stdout, r.stdout
    assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["rss_kib_after"] > 0


def test_bench_odoo_ws_throughput_accounts_for_every_message(pg, ws_standin):
    srv = ws_standin()
    r, s = bench("--proto=odoo-ws", "--mode=throughput", "--polls=50",
                 "--channels=5", "--seconds=2", "--publishers=2",
                 "--port=%d" % srv.port, "--dsn=" + pg.dsn("lpgtest"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["published"] > 0
    assert s["expected"] == s["published"] * 50 // 5
    assert s["received"] == s["expected"]
    assert s["errors"] == 0 and s["duplicates"] == 0


def test_bench_odoo_ws_resubscribes_after_close(pg, ws_standin):
    """The stand-in closes every socket with 4002 after each 2 frames;
    the client reconnects and resubscribes with its last id (no error),
    and still gets every message once."""
    srv = ws_standin("--kick=2")
    r, s = bench("--proto=odoo-ws", "--mode=fanout", "--polls=50",
                 "--rounds=5", "--port=%d" % srv.port,
                 "--dsn=" + pg.dsn("lpgtest"), "--procs=1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["expected"] == s["received"] == 250
    assert s["errors"] == 0 and s["duplicates"] == 0
    m = re.search(r"reconnects (\d+)", r.stdout)
    assert m and int(m.group(1)) >= 50, r.stdout


def test_bench_odoo_ws_fails_without_websocket(pg, ws_standin):
    """Upgrades refused (a wrong path: 404): no socket subscribes, so the
    run must fail, not report success."""
    srv = ws_standin()
    r, s = bench("--proto=odoo-ws", "--mode=fanout", "--polls=5",
                 "--rounds=1", "--path=/nowhere", "--timeout=3",
                 "--port=%d" % srv.port, "--dsn=" + pg.dsn("lpgtest"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "got their polls out" in r.stderr


def test_bench_rejects_bad_options():
    r, _ = bench("--mode=private", "--polls=10", "--channels=3")
    assert r.returncode == 2 and "one channel per poll" in r.stderr
    r, _ = bench("--proto=mqtt")
    assert r.returncode == 2 and "unknown --proto" in r.stderr


def test_man_page_matches_help():
    """Every option of lpgate-bench --help is in lpgate-bench(1), and the
    other way round."""
    r, _ = bench("--help")
    assert r.returncode == 0
    help_opts = set(re.findall(r"--[a-z][a-z-]+", r.stdout))
    srcdir = os.environ.get("LPGATE_SRCDIR", os.path.join(
        os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(srcdir, "doc", "lpgate-bench.1")) as f:
        man = f.read().replace("\\-", "-")
    assert help_opts == set(re.findall(r"--[a-z][a-z-]+", man))
