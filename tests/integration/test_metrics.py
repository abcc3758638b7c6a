"""The admin listener's /metrics, parsed with the real Prometheus text
parser (Debian's python3-prometheus-client)."""

import contextlib
import fcntl
import http.client
import os
import socket
import tempfile

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, wait_until


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return families


def value(families, name, **labels):
    total = 0
    for fam in families.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v
                                      for k, v in labels.items()):
                total += s.value
    return total


def test_metrics(pg, gateway):
    admin = free_port()
    gw = gateway(workers=2, extra_args=["--admin-port", str(admin),
                                        "--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')

    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")
    futures = [gw.poll_async(["m"], last=last) for _ in range(4)]
    wait_until(lambda: gw.log().count("poll parked") >= 4, 10)

    fams = scrape(admin)
    assert value(fams, "lpgate_parked_polls") == 4
    assert value(fams, "lpgate_workers") == 2
    assert value(fams, "lpgate_database_up") == 1

    pg.send("lpgtest", "m", "metric me")
    for f in futures:
        assert f.result(10)["result"]
    gw.poll([["not", "a", "string"]])

    fams = wait_until(lambda: (lambda f: value(
        f, "lpgate_delivery_seconds_count") >= 4 and f)(scrape(admin)), 10)
    assert value(fams, "lpgate_parked_polls") == 0
    assert value(fams, "lpgate_polls_answered_total", outcome="message") == 4
    assert value(fams, "lpgate_polls_answered_total", outcome="error") == 1
    assert value(fams, "lpgate_notifications_total") >= 1
    assert value(fams, "lpgate_ring_records_total") >= 1
    assert value(fams, "lpgate_fetches_total") >= 1
    assert value(fams, "lpgate_worker_ring_lag") == 0
    assert fams["lpgate_delivery_seconds"].type == "histogram"
    assert value(fams, "lpgate_delivery_seconds_bucket", le="+Inf") == 4
    assert "lpgate_gaps_closed" in fams or \
        "lpgate_gaps_closed_total" in fams

    # metrics are not on the public port
    assert gw.http("GET", "/metrics")[0] == 404
    assert gw.http("GET", "/longpolling/metrics")[0] == 404


# the admin listener's default (issue 17): clear of Odoo's ports
DEFAULT_ADMIN = 9072


@contextlib.contextmanager
def default_admin_port():
    """Holds the lock free_port() would take on 9072 so that two runs on
    one machine take turns; skips when something else listens there."""
    lockdir = os.path.join(tempfile.gettempdir(), "lpgate-test-ports")
    os.makedirs(lockdir, exist_ok=True)
    with open(os.path.join(lockdir, "%d.lock" % DEFAULT_ADMIN), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", DEFAULT_ADMIN))
            except OSError:
                pytest.skip("port %d is taken on this machine" % DEFAULT_ADMIN)
        yield DEFAULT_ADMIN


def test_default_admin_port_serves_metrics_and_says_so(pg, gateway):
    with default_admin_port() as admin:
        gw = gateway(workers=1, admin_port=None)
        gw.wait_log("metrics on http://127.0.0.1:%d/metrics" % admin)
        assert "--admin-port" not in gw.args
        fams = scrape(admin)
        assert value(fams, "lpgate_workers") == 1


def test_default_admin_port_clear_of_odoo_longpolling_child(pg, gateway):
    # README's "Deploying with Odoo" moves Odoo's own long-polling child to
    # 8073 (--longpolling-port=8073): it listens there, on every address as
    # Odoo does, before lpgate starts
    odoo_child = socket.socket()
    odoo_child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        odoo_child.bind(("0.0.0.0", 8073))
        odoo_child.listen(8)
    except OSError:
        odoo_child.close()
        odoo_child = None   # something holds 8073 already: the same case
    try:
        with socket.socket() as probe:
            with pytest.raises(OSError):
                probe.bind(("127.0.0.1", 8073))
        with default_admin_port() as admin:
            gw = gateway(workers=1, admin_port=None)
            assert gw.running(), gw.output()
            gw.wait_log("metrics on http://127.0.0.1:%d/metrics" % admin)
            assert value(scrape(admin), "lpgate_workers") == 1
            assert gw.running()
    finally:
        if odoo_child is not None:
            odoo_child.close()
