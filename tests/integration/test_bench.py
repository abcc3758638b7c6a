"""lpgate-bench, the load generator (bench/): it must count every delivery
right, or the benchmark numbers mean nothing.  Small runs against a real
lpgate; a run whose messages cannot arrive must fail."""

import json
import os
import re
import subprocess

import pytest

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
