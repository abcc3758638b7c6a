"""Several lpgate nodes on one PostgreSQL behind a real load balancer, for
the cluster tests (issue 15).

A node is a conftest Gateway (its own master, workers, anonymous shared
segment and LISTEN) on its own port, with its own admin port for
/metrics.  The balancers are Debian's haproxy and nginx running the
shipped contrib/haproxy/lpgate.cfg and contrib/nginx/lpgate-upstream.conf,
moved to this machine's ports by a small substitution: the example
server lines of each pool become one line per node (same options), the
Odoo server becomes the stand-in application, the listener a free port.

Fixtures: `cluster(n, **gateway_kw)` starts n nodes; `balancer(kind,
nodes, app_port=None, tag=False)` starts haproxy or nginx in front of
them (tag: every lpgate answer carries X-Lpgate-Node, the node's port,
so a test sees where each request went).  Helpers: kill_node, metric,
poll_via, haproxy_status.
"""

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from conftest import SRCDIR, free_port, wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# the example addresses of the shipped files
EXAMPLE_NODE = re.compile(r"10\.0\.0\.1(\d):8072")
HAPROXY_ODOO = "10.0.0.21:8069"
NGINX_ODOO = "127.0.0.1:8069"


class App(http.server.BaseHTTPRequestHandler):
    """Stands in for Odoo on the "/" side."""

    def do_GET(self):
        body = b"odoo stand-in: " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def app_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def cluster(gateway):
    """Factory: cluster(n, **kw) -> n ready nodes (each with an admin
    port); kw goes to the gateway fixture."""
    def start(n, **kw):
        return [gateway(admin_port=free_port(), **kw) for _ in range(n)]
    return start


def node_lines(text, nodes):
    """Each run of example server lines (10.0.0.1N:8072) becomes one line
    per node, made from the run's first line."""
    out, in_run = [], False
    for line in text.splitlines():
        m = EXAMPLE_NODE.search(line)
        if not m:
            in_run = False
            out.append(line)
            continue
        if in_run:
            continue
        in_run = True
        for i, gw in enumerate(nodes, 1):
            out.append(EXAMPLE_NODE.sub("127.0.0.1:%d" % gw.port, line)
                       .replace("lpgate1", "lpgate%d" % i))
    return "\n".join(out) + "\n"


class Balancer:
    def __init__(self, kind, proc, port, tmp, log):
        self.kind, self.proc, self.port, self.tmp = kind, proc, port, tmp
        self.log_path = log

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _haproxy(tmp, nodes, app, tag):
    port = free_port()
    with open(os.path.join(SRCDIR, "contrib", "haproxy", "lpgate.cfg")) as f:
        cfg = f.read()
    cfg = node_lines(cfg, nodes)
    cfg = (cfg.replace(HAPROXY_ODOO, "127.0.0.1:%d" % app)
           .replace("bind :80", "bind 127.0.0.1:%d" % port)
           # what this process's descriptor limit allows
           .replace("maxconn 100000", "maxconn 4000")
           # no syslog here: the log goes to haproxy's stdout (a file)
           .replace("log /dev/log local0",
                    "log stdout format raw local0\n"
                    "    stats socket %s/haproxy.sock level admin" % tmp))
    if tag:
        cfg = cfg.replace("backend lpgate\n", "backend lpgate\n"
                          "    http-response set-header X-Lpgate-Node %s\n")
    conf = os.path.join(tmp, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(cfg)
    log = os.path.join(tmp, "haproxy.log")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", conf],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return Balancer("haproxy", proc, port, tmp, log)


def _nginx(tmp, nodes, app, tag):
    port = free_port()
    with open(os.path.join(SRCDIR, "contrib", "nginx",
                           "lpgate-upstream.conf")) as f:
        site = f.read()
    site = node_lines(site, nodes)
    site = (site.replace(NGINX_ODOO, "127.0.0.1:%d" % app)
            .replace("listen 80;", "listen 127.0.0.1:%d;" % port))
    if tag:
        site = site.replace(
            "proxy_pass http://lpgate;",
            "proxy_pass http://lpgate;\n"
            "        add_header X-Lpgate-Node $upstream_addr always;")
    os.chmod(tmp, 0o777)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""
daemon off;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log info;
%(user)s
events { worker_connections 4096; }
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
    log = os.path.join(tmp, "error.log")
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", tmp],
                            stderr=open(os.path.join(tmp, "nginx.stderr"),
                                        "w"))
    return Balancer("nginx", proc, port, tmp, log)


@pytest.fixture
def balancer(tmp_path, app_port):
    """Factory: balancer(kind, nodes, tag=False) -> Balancer listening."""
    started = []

    def start(kind, nodes, tag=False):
        exe = HAPROXY if kind == "haproxy" else NGINX
        if not os.path.exists(exe):
            pytest.skip("%s is not installed (scripts/deps.sh)" % kind)
        tmp = str(tmp_path / ("%s%d" % (kind, len(started))))
        os.makedirs(tmp)
        b = (_haproxy if kind == "haproxy" else _nginx)(tmp, nodes, app_port,
                                                         tag)
        started.append(b)

        def up():
            if b.proc.poll() is not None:
                raise AssertionError("%s exited:\n%s" % (kind, b.log()))
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", b.port), 0.5).close()
                return True
            return False
        wait_until(up, 10, what="%s to listen" % kind)
        if kind == "haproxy":
            # every node's first checks passed (rise 2)
            wait_until(lambda: all(s == "UP" for s in
                                   haproxy_status(b).values()),
                       15, what="haproxy to see every node up")
        return b

    yield start
    for b in started:
        b.stop()
        print("---- %s log\n%s" % (b.kind, b.log()[-6000:]))


def haproxy_status(b, backend="lpgate"):
    """{server name: status ("UP", "DOWN", ...)} from haproxy's stats
    socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(os.path.join(b.tmp, "haproxy.sock"))
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == backend and f[1] not in ("FRONTEND",
                                                            "BACKEND"):
            out[f[1]] = f[17]
    return out


def kill_node(gw):
    """kill -9 the node's master and its workers at once."""
    pids = gw.worker_pids()
    gw.signal(signal.SIGKILL)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    gw.wait(10)


def metric(gw, name):
    """The sum of a metric's samples on the node's admin port."""
    port = admin_port(gw)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def admin_port(gw):
    """The admin port lpgate listens on: its last --admin-port wins."""
    i = len(gw.args) - 1 - gw.args[::-1].index("--admin-port")
    return int(gw.args[i + 1])


def node_of(tag, nodes):
    """The index in nodes of the node an X-Lpgate-Node tag names
    (haproxy: lpgateN; nginx: the last address tried), or None."""
    if not tag:
        return None
    if tag.startswith("lpgate"):
        return int(tag[6:]) - 1
    port = int(tag.split(",")[-1].strip().rsplit(":", 1)[1])
    for i, gw in enumerate(nodes):
        if gw.port == port:
            return i
    return None


def poll_via(port, channels, last, timeout=30):
    """One JSON-RPC poll through the balancer: (status, node tag, result
    list or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1,
                           "params": {"channels": channels, "last": last}})
        conn.request("POST", "/longpolling/poll", body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        node = r.getheader("X-Lpgate-Node")
        if r.status != 200:
            return r.status, node, None
        return r.status, node, json.loads(data)["result"]
    finally:
        conn.close()
