"""Draining (issue 15): SIGQUIT makes /health answer 503 "draining" at
once, on the public port, /websocket/health and the admin port, while the
node goes on accepting and serving for drain_delay; then the graceful
stop answers the parked polls.  SIGHUP and a binary upgrade are not a
drain: /health stays 200 through them.
"""

import http.client
import json
import os
import signal
import threading

from conftest import alive, free_port, wait_until
from test_notify import read_pid

DRAINING = {"status": "fail", "reason": "draining"}


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def last_id(pg):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                  dbname="lpgtest")[0][0]


def test_sigquit_drains_then_stops(pg, gateway):
    admin = free_port()
    gw = gateway(workers=2, admin_port=admin,
                 extra_args=["--drain-delay", "3", "--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    parked = gw.poll_async(["dr"], last=last_id(pg), timeout=20)
    wait_until(lambda: gw.log().count("poll parked") >= 1, 10)

    gw.signal(signal.SIGQUIT)
    gw.wait_log("draining")
    # every health route says so, on new connections: it still accepts
    assert gw.health() == (503, DRAINING)
    assert get(gw.port, "/websocket/health") == (503, DRAINING)
    assert get(admin, "/health") == (503, DRAINING)

    # and serves: a poll is answered with what it asks for
    before = last_id(pg)
    f = gw.poll_async(["dr2"], last=before, timeout=20)
    wait_until(lambda: gw.log().count("poll parked") >= 2, 10)
    b = pg.send("lpgtest", "dr2", "while draining")
    assert [n["id"] for n in f.result(10)["result"]] == [b]
    assert gw.running()

    # then the graceful stop: the poll parked before is answered []
    assert parked.result(20)["result"] == []
    assert gw.wait(20) == 0
    assert gw.log_contains("drain_delay over, stopping gracefully")
    assert not gw.log_contains("shutdown timeout")


def test_second_sigquit_ends_the_drain(gateway):
    gw = gateway(workers=1, extra_args=["--drain-delay", "600"])
    gw.signal(signal.SIGQUIT)
    gw.wait_log("draining")
    assert gw.health() == (503, DRAINING)
    gw.signal(signal.SIGQUIT)
    assert gw.wait(15) == 0
    assert not gw.log_contains("drain_delay over")


def test_drain_delay_0_stops_at_once(gateway):
    gw = gateway(workers=1, config="drain_delay = 0;\n")
    gw.signal(signal.SIGQUIT)
    assert gw.wait(15) == 0
    assert gw.log_contains("SIGQUIT received, stopping gracefully")
    assert not gw.log_contains("draining")


class Hammer(threading.Thread):
    """Asks /health on port over and over until stopped; keeps every
    answer's status (None: no answer)."""

    def __init__(self, gw):
        super().__init__(daemon=True)
        self.gw, self.statuses, self.stop = gw, [], threading.Event()

    def run(self):
        import http.client as hc
        while not self.stop.is_set():
            try:
                s, _, body = self.gw.http("GET", "/longpolling/health",
                                          timeout=5)
                self.statuses.append(s if s == 200 else (s, body))
            except (OSError, hc.HTTPException) as e:
                self.statuses.append(repr(e))


def test_sighup_and_binary_upgrade_are_not_a_drain(gateway):
    gw = gateway(workers=2, extra_args=["--drain-delay", "5"])
    h = Hammer(gw)
    h.start()
    new_master = 0
    try:
        gw.signal(signal.SIGHUP)
        gw.wait_log("configuration reloaded")
        wait_until(lambda: gw.log().count("worker exiting") >= 2, 15,
                   what="the old generation to exit")

        # a binary upgrade, and SIGQUIT to the old master while its
        # workers still accept on the shared sockets: it does not drain
        gw.signal(signal.SIGUSR2)
        gw.wait_log("took over 2 listening socket(s)")
        new_master = wait_until(
            lambda: (read_pid(gw.pidfile) not in (0, gw.pid)
                     and read_pid(gw.pidfile)), 10, what="the new pidfile")
        wait_until(lambda: gw.log().count("LISTEN connection up") >= 2, 10)
        gw.signal(signal.SIGQUIT)
        assert gw.wait(20) == 0
        wait_until(lambda: len(h.statuses) > 50, 10)
        # (the new master writes to the same log file: read it first)
        assert not gw.log_contains("draining")
    finally:
        h.stop.set()
        h.join(10)
        if new_master:
            os.kill(new_master, signal.SIGQUIT)
            wait_until(lambda: not alive(new_master), 15)
    assert set(h.statuses) == {200}, sorted(set(map(str, h.statuses)))
