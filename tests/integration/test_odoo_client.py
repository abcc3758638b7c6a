"""The worker's HTTP client toward Odoo (issue 17 item 4): libcurl's multi
interface on the worker's libev loop.

* A slow resolver stalls only the lookup that waits for it: lpgate runs in
  its own mount namespace (unshare) whose /etc/resolv.conf names a DNS
  responder of this test, which holds its answers until the test lets
  them go (or never answers); plain polls and polls of other sessions in
  the same worker are answered meanwhile.
* Keep-alive: many session lookups go over fewer TCP connections.
* https odoo_url: the stand-in Odoo behind TLS with a self-signed
  certificate; trusted through odoo_cafile, refused (and logged once)
  without it.
"""

import ctypes
import json
import os
import random
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import wait_until
from odoo_standin import OdooStandin


DB = "lpgtest15"
NAME = "odoo.lpgate.test"


# -- a DNS responder that answers when told --------------------------------

class SlowDNS:
    """UDP DNS on <addr>:53 answering NAME's A query with 127.0.0.1 (AAAA:
    no address, anything else: NXDOMAIN).  hold(): queries wait until
    release() (or forever); every query and answer is recorded."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # a loopback address of its own: parallel runs do not collide
        for _ in range(50):
            self.addr = "127.53.%d.%d" % (random.randint(1, 254),
                                          random.randint(1, 254))
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError:
                continue
        else:
            raise OSError("no loopback address with a free port 53")
        self.lock = threading.Lock()
        self.queries = []   # (qname, qtype)
        self.answered = []  # (qname, qtype)
        self.held = []      # (data, peer) not answered yet
        self.holding = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def hold(self):
        with self.lock:
            self.holding = True

    def release(self):
        with self.lock:
            self.holding = False
            held, self.held = self.held, []
        for data, peer in held:
            self.answer(data, peer)

    def count(self, what):
        with self.lock:
            return len(getattr(self, what))

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                qname, qtype = self.question(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            with self.lock:
                self.queries.append((qname, qtype))
                if self.holding:
                    self.held.append((data, peer))
                    continue
            self.answer(data, peer)

    @staticmethod
    def question(data):
        labels, i = [], 12
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode())
            i += 1 + data[i]
        qtype, = struct.unpack("!H", data[i + 1:i + 3])
        return ".".join(labels).lower(), qtype

    def answer(self, data, peer):
        qname, qtype = self.question(data)
        end = 12 + len(qname) + 2 + 4
        ours = qname == NAME
        flags = 0x8180 if ours else 0x8183
        an = 1 if ours and qtype == 1 else 0
        out = data[:2] + struct.pack("!HHHHH", flags, 1, an, 0, 0)
        out += data[12:end]
        if an:
            out += struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4)
            out += socket.inet_aton("127.0.0.1")
        with self.lock:
            self.answered.append((qname, qtype))
        try:
            self.sock.sendto(out, peer)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def private_resolver(tmp_path, dns, options="timeout:30 attempts:1"):
    """A preexec_fn that puts the child in its own mount namespace whose
    /etc/resolv.conf names dns and whose /etc/hosts lacks NAME."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver %s\noptions %s\n" % (dns.addr, options))
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")

    # looked up here: nothing but the calls themselves after fork
    libc = ctypes.CDLL(None, use_errno=True)
    unshare, mount = libc.unshare, libc.mount
    CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 4096, 16384, 1 << 18
    binds = [(str(resolv).encode(), b"/etc/resolv.conf"),
             (str(hosts).encode(), b"/etc/hosts")]

    def enter():
        if unshare(CLONE_NEWNS) != 0:
            os._exit(97)
        mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
        for src, dst in binds:
            if mount(src, dst, None, MS_BIND, None) != 0:
                os._exit(98)

    return enter


@pytest.fixture
def dns():
    if subprocess.run(["unshare", "--mount", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not permitted here: no private "
                    "resolver for lpgate")
    try:
        d = SlowDNS()
    except OSError as e:
        pytest.skip("cannot bind a DNS responder on port 53: %s" % e)
    yield d
    d.release()
    d.close()


@pytest.fixture
def odoo(pg):
    s = OdooStandin({DB: (pg.dsn(DB), 15)}).start()
    yield s
    s.stop()


def start(gateway, url, timeout=10, ttl=300, config="", **kw):
    gw = gateway(workers=1,
                 config="session_retry = 1;\n" + config,
                 extra_args=["-d", DB, "--odoo-url", url,
                             "--timeout", str(timeout),
                             "--session-ttl", str(ttl),
                             "--log-level", "debug"], **kw)
    gw.wait_log('database "%s": Odoo' % DB)
    return gw


def poll(gw, channels=(), last=None, sid=None, timeout=20):
    headers = {"Cookie": "frontend_lang=en_US; session_id=%s; tz=UTC" % sid,
               "X-Other": "not for Odoo"} if sid else {}
    body = {"jsonrpc": "2.0", "method": "call", "id": 1,
            "params": {"channels": list(channels), "last": last,
                       "options": {}}}
    status, _, data = gw.http("POST", "/longpolling/poll", body, headers,
                              timeout=timeout)
    assert status == 200, (status, data)
    answer = json.loads(data)
    assert "error" not in answer, answer
    return [n["message"] for n in answer["result"]]


def poll_async(gw, **kw):
    return gw.executor.submit(poll, gw, **kw)


def last_id(pg):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus", dbname=DB)[0][0]


def parked(gw, n):
    wait_until(lambda: gw.log().count("poll parked") >= n, 15,
               what="%d parked polls" % n)


# -- a slow resolver ----------------------------------------------------------

def test_slow_resolver_stalls_only_its_own_lookup(pg, gateway, odoo, dns,
                                                  tmp_path):
    """While the name of odoo_url waits for a late DNS answer, the worker
    (the only one) keeps answering plain polls and polls of a session it
    knows; the waiting session is resolved once the answer comes."""
    uid_a, pid_a = odoo.user(DB, "alice")
    uid_b, pid_b = odoo.user(DB, "bob")
    sid_a, sid_b = odoo.login(DB, uid_a), odoo.login(DB, uid_b)
    url = "http://%s:%d" % (NAME, odoo.port)
    gw = start(gateway, url, timeout=30,
               preexec_fn=private_resolver(tmp_path, dns))

    # bob is looked up while DNS answers at once: the name resolves
    # through the private resolver only (no /etc/hosts entry)
    t = pg.send(DB, [DB, "res.partner", pid_b], {"to": "bob"})
    assert poll(gw, last=t - 1, sid=sid_b) == [{"to": "bob"}]
    assert (NAME, 1) in dns.answered

    # a fresh worker: empty DNS and connection caches, bob's answer in
    # the shared session table
    old = gw.worker_pids()
    dns.hold()
    os.kill(old[0], 9)
    wait_until(lambda: gw.worker_pids() and gw.worker_pids() != old, 15,
               what="a new worker")
    gw.wait_ready()
    before = gw.log().count("poll parked")
    asked = dns.count("queries")

    # alice's lookup waits for the resolver
    last = last_id(pg)
    fa = poll_async(gw, last=last, sid=sid_a, timeout=60)
    wait_until(lambda: dns.count("queries") > asked, 15,
               what="the resolver to be asked")

    # meanwhile: a plain poll and bob's poll park and are answered
    fp = poll_async(gw, channels=["plain-news"], last=last)
    fb = poll_async(gw, last=last, sid=sid_b)
    parked(gw, before + 2)
    pg.send(DB, [DB, "plain-news"], {"news": 1})
    pg.send(DB, [DB, "res.partner", pid_b], {"to": "bob", "n": 2})
    assert fp.result(timeout=20) == [{"news": 1}]
    assert fb.result(timeout=20) == [{"to": "bob", "n": 2}]
    # ... all before the resolver said a word about alice's lookup
    assert dns.count("held") >= 1
    assert not fa.done()
    assert "answered by another worker's lookup" in gw.log()

    # the answer comes: alice's lookup goes on and her poll parks
    dns.release()
    parked(gw, before + 3)
    pg.send(DB, [DB, "res.partner", pid_a], {"to": "alice"})
    assert fa.result(timeout=20) == [{"to": "alice"}]
    assert "host not resolved" not in gw.log()


def test_resolver_that_never_answers(pg, gateway, odoo, dns, tmp_path):
    """A resolver that never answers: the lookup times out after
    odoo_timeout (the poll is served public), and the worker does not wait
    for the resolver thread, which glibc keeps blocked for 30 s."""
    uid, pid = odoo.user(DB, "carol")
    sid = odoo.login(DB, uid)
    url = "http://%s:%d" % (NAME, odoo.port)
    dns.hold()
    gw = start(gateway, url, config="odoo_timeout = 1;\n",
               preexec_fn=private_resolver(tmp_path, dns))
    before = gw.log().count("poll parked")
    last = last_id(pg)

    fp = poll_async(gw, channels=["plain-news"], last=last)
    fc = poll_async(gw, channels=["carol-news"], last=last, sid=sid)
    gw.wait_log("did not answer within 1 s", timeout=20)
    # carol is served as the public user: her string channel parks
    parked(gw, before + 2)
    pg.send(DB, [DB, "plain-news"], {"news": 1})
    pg.send(DB, [DB, "carol-news"], {"news": 2})
    assert fp.result(timeout=15) == [{"news": 1}]
    assert fc.result(timeout=15) == [{"news": 2}]
    # the resolver never answered anything
    assert dns.count("answered") == 0 and dns.count("held") >= 1
    assert "Resolving timed out" in gw.log()


# -- keep-alive -------------------------------------------------------------

def test_lookups_share_kept_alive_connections(pg, gateway, odoo):
    """N session lookups in a row go over fewer TCP connections than N
    (the stand-in counts the connections it accepts)."""
    n = 12
    users = [odoo.user(DB, "u%d" % i) for i in range(n)]
    gw = start(gateway, odoo.url)
    odoo.reset_counts()
    first = odoo.connections

    for uid, pid in users:
        sid = odoo.login(DB, uid)
        t = pg.send(DB, [DB, "res.partner", pid], {"to": uid})
        assert poll(gw, last=t - 1, sid=sid) == [{"to": uid}]

    assert odoo.count("/lpgate/session") == n
    used = odoo.connections - first
    print("keep-alive: %d lookups over %d connection(s)" % (n, used))
    assert 1 <= used < n, used

    # what goes to Odoo is what went before keep-alive: the client's Host,
    # the session cookie alone, a JSON body
    assert {frozenset(h) for h in odoo.header_names} == {frozenset((
        "Host", "Content-Type", "Accept", "User-Agent", "Cookie",
        "Content-Length"))}
    for path, cookie, host in odoo.requests:
        assert re.fullmatch("session_id=[0-9a-f]+", cookie), cookie
        assert host == "127.0.0.1:%d" % gw.port


# -- https ------------------------------------------------------------------

@pytest.fixture
def tls_odoo(pg, tmp_path):
    cert, key = tmp_path / "odoo.crt", tmp_path / "odoo.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    pem = tmp_path / "odoo.pem"
    pem.write_text(cert.read_text() + key.read_text())
    s = OdooStandin({DB: (pg.dsn(DB), 15)}, certfile=str(pem))
    s.start()
    # a refused handshake is the point of one test: no traceback
    s.server.handle_error = lambda request, address: None
    s.cafile = str(cert)
    yield s
    s.stop()


def test_https_odoo_with_private_ca(pg, gateway, tls_odoo):
    uid, pid = tls_odoo.user(DB, "dave")
    sid = tls_odoo.login(DB, uid)
    assert tls_odoo.url.startswith("https://")
    gw = start(gateway, tls_odoo.url,
               config='odoo_cafile = "%s";\n' % tls_odoo.cafile)

    t = pg.send(DB, [DB, "res.partner", pid], {"to": "dave"})
    assert poll(gw, last=t - 1, sid=sid) == [{"to": "dave"}]
    assert tls_odoo.count("/lpgate/session") == 1
    assert "TLS with odoo_url" not in gw.log()


def test_https_odoo_unverified_is_public(pg, gateway, tls_odoo):
    """Without odoo_cafile the self-signed certificate fails the check:
    the poll is the public user's, and the log says why once."""
    uid, pid = tls_odoo.user(DB, "eve")
    sid = tls_odoo.login(DB, uid)
    gw = start(gateway, tls_odoo.url)

    t = pg.send(DB, [DB, "res.partner", pid], {"to": "eve"})
    for i in range(3):
        # session_retry = 1: each of these asks Odoo again
        got = poll(gw, channels=["eve-news"], last=t - 1, sid=sid, timeout=20)
        assert got == [] or {"to": "eve"} not in got
        time.sleep(1.1)
    assert tls_odoo.count("/lpgate/session") == 0
    warns = re.findall(r" warn: TLS with odoo_url .*certificate.*", gw.log())
    assert len(warns) == 1, warns
    assert "odoo_cafile" in warns[0]
    # the same failure again is only at debug
    assert gw.log().count("TLS with odoo_url") >= 2
