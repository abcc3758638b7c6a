"""lpgate-bench's transports of issue 14 (--proto=ws, sse, socketio) and
its nchan peers (--peer=nchan: nchan's websocket and EventSource
subscribers): every socket or stream subscribes, gets every message once
and in order, and keeps up with the server's pings, heartbeats and closes.
Against a real lpgate (each test probes its route first and is skipped,
saying so, while this lpgate does not serve it yet) and a real nginx with
Debian's nchan module, started as scripts/bench.py starts it."""

import importlib.util
import os
import re
import signal
import threading

import pytest

from test_bench import bench

TOP = os.path.join(os.path.dirname(__file__), "..", "..")
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"


def bench_py():
    spec = importlib.util.spec_from_file_location(
        "bench_py", os.path.join(TOP, "scripts", "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# short pings, heartbeats and lifetimes, so a small run meets them all
QUICK_TIMERS = {
    "ws": "websocket_ping_interval = 1;\nwebsocket_pong_timeout = 1;\n",
    "sse": "sse_heartbeat = 1;\nsse_retry = 100;\n",
    "socketio": "socketio_ping_interval = 1;\nsocketio_ping_timeout = 1;\n",
}


@pytest.fixture
def lpgate(gateway):
    """Factory: lpgate(proto, config) starts lpgate with config (two
    workers).  The route is probed on a default lpgate first (the keys of
    config are unknown to an lpgate without the transport): while proto is
    not in bench.py's REQUIRED the test is skipped without it, once it is
    the test fails."""
    b = bench_py()

    def start(proto, config=""):
        gw = gateway(workers=2).wait_ready()
        why = b.PROBES[proto](gw.port)
        gw.stop()
        if why is not None and proto in b.REQUIRED:
            pytest.fail("the transport is missing: " + why)
        if why is not None:
            pytest.skip("the transport is not in this lpgate yet: " + why)
        return gateway(workers=2, config=config).wait_ready()

    return start


def args(gw, pg, *extra):
    return ["--port=%d" % gw.port, "--dsn=" + pg.dsn("lpgtest"),
            "--pid=%d" % gw.pid, "--procs=2"] + list(extra)


def reconnects(out):
    m = re.search(r"reconnects (\d+)", out)
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("proto", ["ws", "sse", "socketio"])
@pytest.mark.parametrize("mode,extra,expected", [
    ("fanout", ["--polls=300", "--rounds=3"], 900),
    ("private", ["--polls=200", "--rounds=2"], 400),
])
def test_transport_counts_every_delivery(pg, lpgate, proto, mode, extra,
                                         expected):
    """Every socket or stream parks for 3 s first (--idle-seconds), long
    enough for the server's 1 s pings (ws, socketio: a client that does not
    answer is cut, then counted as a reconnect or an error) and heartbeat
    comments and the retry line (sse: any of them taken for an event would
    be an error)."""
    gw = lpgate(proto, QUICK_TIMERS[proto])
    r, s = bench("--proto=" + proto, "--mode=" + mode, "--idle-seconds=3",
                 *args(gw, pg, *extra))
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["proto"] == proto and s["complete"] is True
    assert s["expected"] == s["received"] == expected
    assert s["errors"] == 0 and s["duplicates"] == 0
    assert reconnects(r.stdout) == 0, r.stdout
    assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["read_p50_ms"] <= s["read_p99_ms"] <= s["read_max_ms"]
    assert s["rss_kib_after"] > 0


@pytest.mark.parametrize("proto", ["ws", "sse", "socketio"])
def test_transport_throughput_accounts_for_every_message(pg, lpgate, proto):
    gw = lpgate(proto)
    r, s = bench("--proto=" + proto, "--mode=throughput", "--polls=100",
                 "--channels=5", "--seconds=2", "--publishers=2",
                 *args(gw, pg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["published"] > 0
    assert s["expected"] == s["published"] * 100 // 5
    assert s["received"] == s["expected"]
    assert s["errors"] == 0 and s["duplicates"] == 0


@pytest.mark.parametrize("proto", ["ws", "sse", "socketio"])
def test_transport_resumes_with_last_after_reload(pg, lpgate, proto):
    """A SIGHUP while every socket or stream is parked: the retiring
    workers close them all (a trickle over shutdown_timeout); each
    reconnects to the new workers and subscribes again with the largest id
    it saw (ws, socketio: in the subscribe; sse: ?last), so the rounds that
    follow lose and repeat nothing.  A close the server means as a
    reconnect (ws: 1001/4002, socketio: 1000, sse: the end of the stream)
    counts as one, not as an error; a reconnect refused during the reload
    (a 503 from a retiring worker, whose listener still held it) is an
    error, retried 100 ms later: reported, not judged here."""
    gw = lpgate(proto, "shutdown_timeout = 1;\n")
    timer = threading.Timer(1.5, gw.signal, [signal.SIGHUP])
    timer.start()
    try:
        r, s = bench("--proto=" + proto, "--mode=fanout", "--idle-seconds=5",
                     "--rounds=3", *args(gw, pg, "--polls=200"))
    finally:
        timer.cancel()
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["expected"] == s["received"] == 600
    assert s["duplicates"] == 0
    assert reconnects(r.stdout) >= 200, r.stdout + r.stderr


@pytest.mark.parametrize("proto", ["ws", "sse", "socketio"])
def test_transport_fails_without_route(pg, gateway, proto):
    """A path where lpgate serves nothing (404): no socket or stream
    subscribes, so the run must fail, not report success."""
    gw = gateway(workers=1).wait_ready()
    r, s = bench("--proto=" + proto, "--mode=fanout", "--polls=5",
                 "--rounds=1", "--path=/nowhere", "--timeout=3",
                 "--port=%d" % gw.port, "--dsn=" + pg.dsn("lpgtest"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "got their polls out" in r.stderr


@pytest.fixture
def nchan(tmp_path):
    """nginx + nchan as scripts/bench.py runs it (one worker, not pinned):
    long-poll, websocket and EventSource subscribers, publisher /pub."""
    if not os.path.exists(NCHAN_MODULE):
        pytest.skip("libnginx-mod-nchan is not installed (scripts/deps.sh)")
    os.chmod(str(tmp_path), 0o755)
    ng = bench_py().Nginx(str(tmp_path), 1, False)
    yield ng
    ng.stop()


@pytest.mark.parametrize("proto", ["ws", "sse"])
@pytest.mark.parametrize("mode,extra,expected", [
    ("fanout", ["--polls=300", "--rounds=3"], 900),
    ("private", ["--polls=200", "--rounds=2"], 400),
])
def test_nchan_peer_counts_every_delivery(nchan, proto, mode, extra,
                                          expected):
    """nchan's websocket subscriber sends each message's raw body as one
    TEXT frame; its EventSource sends id: and data: lines in a chunked
    answer: both read right, every message once."""
    r, s = bench("--proto=" + proto, "--peer=nchan", "--mode=" + mode,
                 "--port=%d" % nchan.port, "--pid=%d" % nchan.pid,
                 "--procs=2", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["proto"] == proto and s["peer"] == "nchan"
    assert s["complete"] is True
    assert s["expected"] == s["received"] == expected
    assert s["errors"] == 0 and s["duplicates"] == 0
    assert reconnects(r.stdout) == 0, r.stdout


@pytest.mark.parametrize("proto", ["ws", "sse"])
def test_nchan_peer_throughput_accounts_for_every_message(nchan, proto):
    r, s = bench("--proto=" + proto, "--peer=nchan", "--mode=throughput",
                 "--polls=100", "--channels=5", "--seconds=2",
                 "--publishers=2", "--port=%d" % nchan.port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["published"] > 0
    assert s["expected"] == s["published"] * 100 // 5
    assert s["received"] == s["expected"]
    assert s["errors"] == 0 and s["duplicates"] == 0


def test_bench_rejects_transports_nchan_lacks():
    for proto in ("odoo-ws", "socketio"):
        r, _ = bench("--proto=" + proto, "--peer=nchan")
        assert r.returncode == 2 and "--peer=nchan speaks" in r.stderr
    r, _ = bench("--peer=mqtt")
    assert r.returncode == 2 and "unknown --peer" in r.stderr


def test_bench_transport_probes(gateway):
    """bench.py's probes say why a route is missing: a websocket path that
    does not upgrade, an SSE path that is no event stream."""
    bench_py()  # puts scripts/ on sys.path
    import bench_probes as b
    gw = gateway(workers=1).wait_ready()
    why = b.ws_probe(gw.port, "/nowhere")
    assert why and "not 101" in why
    why = b.sse_probe(gw.port, "/nowhere")
    assert why and "not 200" in why
