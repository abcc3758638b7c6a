"""lpgate behind Debian's nginx with the shipped contrib/nginx/lpgate.conf
(Odoo's layout: /longpolling to lpgate, / to the application), a tiny
stand-in application on the "8069" side.
"""

import http.server
import json
import os
import shutil
import subprocess
import threading

import pytest

from conftest import SRCDIR, free_port, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"odoo stand-in: " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def nginx(tmp_path, app):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed")

    def start(lpgate_port, edit=None):
        """edit(site) -> site: a variant of the shipped file"""
        port = free_port()
        with open(os.path.join(SRCDIR, "contrib", "nginx", "lpgate.conf")) as f:
            site = f.read()
        if edit is not None:
            site = edit(site)
        # the shipped file, moved to this test's ports
        site = (site.replace("127.0.0.1:8069", "127.0.0.1:%d" % app)
                .replace("127.0.0.1:8072", "127.0.0.1:%d" % lpgate_port)
                .replace("listen 80;", "listen 127.0.0.1:%d;" % port))
        tmp = str(tmp_path)
        os.chmod(tmp, 0o777)
        conf = tmp_path / "nginx.conf"
        conf.write_text("""
daemon off;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log info;
%(user)s
events { worker_connections 1024; }
http {
    access_log %(tmp)s/access.log;
    client_body_temp_path %(tmp)s/body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    %(site)s
}
""" % {"tmp": tmp, "site": site,
       "user": "user root;" if os.geteuid() == 0 else ""})
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", tmp],
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)

        def up():
            if proc.poll() is not None:
                raise AssertionError("nginx exited: %s" % proc.stderr.read())
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, what="nginx to listen")
        return port

    started = []
    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def test_poll_through_nginx(pg, gateway, nginx):
    gw = gateway(workers=2, extra_args=["--log-level", "debug"])
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    port = nginx(gw.port)

    import http.client

    def request(method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()

    # / reaches the application
    status, body = request("GET", "/web/login")
    assert status == 200 and body == b"odoo stand-in: /web/login"

    # /longpolling reaches lpgate
    status, body = request("GET", "/longpolling/health")
    assert status == 200 and json.loads(body) == {"status": "pass"}

    result = {}
    [(last,)] = pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                       dbname="lpgtest")

    def poll():
        result["answer"] = request("POST", "/longpolling/poll", json.dumps(
            {"jsonrpc": "2.0", "method": "call", "id": 3,
             "params": {"channels": ["via-nginx"], "last": last}}))

    t = threading.Thread(target=poll)
    t.start()
    wait_until(lambda: "poll parked" in gw.log(), 10)
    bus_id = pg.send("lpgtest", "via-nginx", {"hello": "proxy"})
    t.join(15)
    status, body = result["answer"]
    assert status == 200
    assert json.loads(body)["result"] == [
        {"id": bus_id, "channel": "via-nginx", "message": {"hello": "proxy"}}]
