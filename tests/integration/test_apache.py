"""lpgate behind Debian's Apache 2.4 with the shipped
contrib/apache/lpgate.conf (Odoo's layout: /longpolling and /websocket to
lpgate, / to the application), as test_proxy.py does it for nginx: apache2
runs in the foreground with a main config of the test's own (ServerRoot,
PidFile and logs in tmp_path, the proxy modules loaded, one Listen on a
free port) that Includes the shipped file moved to the test's ports.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest

from conftest import SRCDIR, free_port, wait_until
from test_proxy import app  # noqa: F401 (the "8069" side)

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
SITE = os.path.join(SRCDIR, "contrib", "apache", "lpgate.conf")


def shipped_site():
    with open(SITE) as f:
        return f.read()


@pytest.fixture
def apache(tmp_path, app):  # noqa: F811
    """Factory: apache(lpgate_port, site=None) starts apache2 with the
    shipped site (or site, its text) and returns the port it listens on."""
    if not os.path.exists(APACHE):
        pytest.skip("apache2 is not installed")
    started = []

    def start(lpgate_port, site=None):
        port = free_port()
        d = tmp_path / ("apache%d" % len(started))
        d.mkdir()
        os.chmod(str(d), 0o755)
        site = (site or shipped_site())
        # the shipped file, moved to this test's ports
        site = (site.replace("127.0.0.1:8069", "127.0.0.1:%d" % app)
                .replace("127.0.0.1:8072", "127.0.0.1:%d" % lpgate_port)
                .replace("<VirtualHost *:80>", "<VirtualHost *:%d>" % port))
        (d / "lpgate-site.conf").write_text(site)
        modules = "\n".join(
            "LoadModule %s_module %s/mod_%s.so" % (m, MODULES, m)
            for m in ("mpm_event", "authz_core", "headers", "proxy",
                      "proxy_http", "proxy_wstunnel"))
        (d / "apache2.conf").write_text("""
ServerRoot "%(d)s"
ServerName 127.0.0.1
DefaultRuntimeDir "%(d)s"
PidFile "%(d)s/apache2.pid"
ErrorLog "%(d)s/error.log"
LogLevel info proxy:debug
CustomLog "%(d)s/access.log" "%%h %%{Host}i \\"%%r\\" %%>s"
%(user)s
Listen 127.0.0.1:%(port)d
%(modules)s
Include "%(d)s/lpgate-site.conf"
""" % {"d": d, "port": port, "modules": modules,
       "user": "User www-data\nGroup www-data" if os.geteuid() == 0
       else ""})
        proc = subprocess.Popen(
            [APACHE, "-DFOREGROUND", "-d", str(d), "-f",
             str(d / "apache2.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append((proc, d))

        def up():
            if proc.poll() is not None:
                raise AssertionError("apache2 exited: %s%s" % (
                    proc.stderr.read(), (d / "error.log").read_text()
                    if (d / "error.log").exists() else ""))
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, what="apache2 to listen")
        return port

    yield start
    for proc, d in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log = d / "error.log"
        if log.exists():
            print("---- apache2 error.log\n" + log.read_text()[-5000:])


def request(port, method, path, body=None, headers=None, timeout=15,
            source="127.0.0.1"):
    """(status, headers, body) of one request to 127.0.0.1:port, sent from
    the address source."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def rpc_poll(channels, last):
    return json.dumps({"jsonrpc": "2.0", "method": "call", "id": 3,
                       "params": {"channels": channels, "last": last}})


def test_poll_through_apache(pg, gateway, apache):
    # two databases and a dbfilter: only the Host Apache passes on picks
    # the poll's database
    gw = gateway(workers=2, extra_args=[
        "-d", "lpgtest,lpgtest15", "--db-filter", "^%d$",
        "--log-level", "debug"])
    gw.wait_log('database "lpgtest15": Odoo')
    port = apache(gw.port)

    # / reaches the application
    status, _, body = request(port, "GET", "/web/login")
    assert status == 200 and body == b"odoo stand-in: /web/login"

    # /longpolling reaches lpgate
    status, headers, body = request(port, "GET", "/longpolling/health")
    assert status == 200 and json.loads(body) == {"status": "pass"}
    assert headers["server"] == "lpgate"

    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest15")
    result = {}

    def poll():
        result["answer"] = request(
            port, "POST", "/longpolling/poll",
            rpc_poll(["via-apache"], last),
            {"Host": "lpgtest15.example.com"})

    t = threading.Thread(target=poll)
    t.start()
    wait_until(lambda: "poll parked" in gw.log(), 10)
    # (15 names a string channel with the database: lpgtest15 it is)
    bus_id = pg.send("lpgtest15", ["lpgtest15", "via-apache"],
                     {"hello": "apache"})
    t.join(15)
    status, _, body = result["answer"]
    assert status == 200, body
    assert json.loads(body)["result"] == [
        {"id": bus_id, "message": {"hello": "apache"}}]

    # without a Host that names a database, lpgate cannot choose one
    status, _, body = request(port, "POST", "/longpolling/poll",
                              rpc_poll(["via-apache"], bus_id),
                              {"Host": "nowhere.example.com"})
    assert status == 200
    assert "no such database" in json.loads(body)["error"]["data"]["message"]


def test_client_address_through_apache(pg, gateway, apache):
    """Apache adds the client's address to X-Forwarded-For; lpgate believes
    it from its trusted proxy (127.0.0.1, Apache's side), and not what the
    client wrote there itself.  The client comes from 127.0.0.2; a body
    over max_body_size makes lpgate log whom it refused."""
    gw = gateway(workers=1, config='trusted_proxies = "127.0.0.1";\n'
                                   'max_body_size = 1024;\n')
    port = apache(gw.port)
    status, _, _ = request(port, "POST", "/longpolling/poll",
                           "x" * 4096,
                           {"X-Forwarded-For": "203.0.113.9"},
                           source="127.0.0.2")
    assert status == 413
    gw.wait_log("bad request (413) from 127.0.0.2", 5)
    assert not gw.log_contains("from 203.0.113.9")


def test_apache_waits_longer_than_a_parked_poll(pg, gateway, apache):
    """The shipped proxy timeout is above lpgate's poll timeout: a poll
    held its full timeout comes back through Apache as lpgate's empty
    answer, not as Apache's 502/504 (shown with a site whose timeout is
    below lpgate's, which does get Apache's error)."""
    with open(os.path.join(SRCDIR, "core", "lpg_conf_keys.c")) as f:
        default = int(re.search(r'"timeout", LPG_CONF_INT, [^,]+, "(\d+)"',
                                f.read()).group(1))
    site = shipped_site()
    waits = [int(v) for v in re.findall(
        r"^\s*ProxyPass\s+/(?:longpolling|websocket)\s.*\btimeout=(\d+)",
        site, re.M)]
    waits += [int(v) for v in re.findall(r"^\s*ProxyTimeout\s+(\d+)",
                                         site, re.M)]
    assert len(waits) == 3 and min(waits) > default, (waits, default)

    gw = gateway(workers=1, extra_args=["--timeout", "3",
                                        "--log-level", "debug"])
    port = apache(gw.port)
    status, _, body = request(port, "POST", "/longpolling/poll",
                              rpc_poll(["quiet"], 1))
    assert status == 200, body
    assert json.loads(body)["result"] == []
    assert gw.log_contains("poll parked")

    # the same site with Apache's wait below lpgate's: Apache gives up
    short = re.sub(r"timeout=\d+", "timeout=1",
                   site.replace("ProxyTimeout 75", "ProxyTimeout 1"))
    port = apache(gw.port, short)
    status, _, body = request(port, "POST", "/longpolling/poll",
                              rpc_poll(["quiet"], 1))
    assert status in (502, 504), (status, body)


def test_websocket_route_goes_to_lpgate_with_the_upgrade(pg, gateway,
                                                         apache):
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}

    # lpgate's own handshake check: every upgrade header came through
    # Apache, only the Origin (which a browser always sends) is missing
    gw = gateway(workers=1)
    port = apache(gw.port)
    status, headers, body = request(port, "GET", "/websocket",
                                    headers=upgrade)
    assert status == 400, (status, body)
    assert body == b"Empty or missing header(s): origin", body
    assert headers["server"] == "lpgate"

    # what Apache sends to lpgate's port: the Upgrade, and then a tunnel
    seen = {}
    backend = socket.socket()
    backend.bind(("127.0.0.1", 0))
    backend.listen(1)

    def serve():
        c, _ = backend.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(4096)
        seen["request"] = data.decode("latin-1")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                  + b"\r\n\r\n")
        c.sendall(b"echo:" + c.recv(4096))
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = apache(backend.getsockname()[1])
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(("GET /websocket HTTP/1.1\r\nHost: erp.example\r\n"
                   + "".join("%s: %s\r\n" % kv for kv in upgrade.items())
                   + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        head, _, rest = head.partition(b"\r\n\r\n")
        s.sendall(b"frame")
        while len(rest) < len(b"echo:frame"):
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert rest == b"echo:frame"
    t.join(5)
    backend.close()
    req = seen["request"]
    assert req.startswith("GET /websocket HTTP/1.1\r\n"), req
    assert re.search(r"(?im)^upgrade: websocket\r$", req), req
    assert re.search(r"(?im)^connection: upgrade\r$", req), req
    assert re.search(r"(?im)^host: erp\.example\r$", req), req
