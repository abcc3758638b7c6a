"""Fixtures of lpgate's integration tests: a real PostgreSQL cluster and a
real lpgate (master and forked workers) on loopback.

`pg` is one cluster per session, started as the unprivileged user
"postgres" when the tests run as root (initdb refuses root).  `gateway`
starts lpgate processes for one test and stops them at teardown, printing
their log.  Every wait is bounded; no test asserts on elapsed time.
"""

import concurrent.futures
import contextlib
import fcntl
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

LPGATE_BIN = os.environ.get("LPGATE_BIN", os.path.abspath("lpgate"))
SRCDIR = os.environ.get(
    "LPGATE_SRCDIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def alive(pid):
    """pid runs (a zombie or a process gone, even while /proc is read, is
    not alive)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout=10.0, interval=0.05, what=None):
    """Calls predicate until it returns a true value, which is returned;
    raises AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what or predicate))
        time.sleep(interval)


def free_port():
    """A port below the ephemeral range, held by a lock file so that
    parallel runs on one machine do not pick the same one."""
    lockdir = os.path.join(tempfile.gettempdir(), "lpgate-test-ports")
    os.makedirs(lockdir, exist_ok=True)
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10200 <= port < 32000:
            port = 10200 + (port % 21800)
        f = open(os.path.join(lockdir, "%d.lock" % port), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                f.close()
                continue
        free_port.locks.append(f)   # held for the session
        return port
    raise RuntimeError("no free port")


free_port.locks = []


# ENABLE_VALGRIND=1: every gateway runs under valgrind's memcheck, and a
# test fails when any of its processes reported an error
VALGRIND = os.environ.get("ENABLE_VALGRIND") == "1"


def check_valgrind(tmp_path):
    bad = []
    for log in glob.glob(os.path.join(str(tmp_path), "**", "valgrind.*.log"),
                         recursive=True):
        with open(log, errors="replace") as f:
            text = f.read()
        if text.strip():
            bad.append("%s:\n%s" % (log, text[-4000:]))
    assert not bad, "valgrind reported errors:\n" + "\n".join(bad)


def run_lpgate(args, timeout=20, env=None):
    """Runs lpgate to completion (--check-config, --sizing, refusals)."""
    return subprocess.run([LPGATE_BIN] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=env)


# Odoo's bus_bus table (10.0-15.0 columns)
BUS_BUS = """
CREATE TABLE bus_bus (
    id serial PRIMARY KEY,
    create_uid integer,
    create_date timestamp DEFAULT (now() at time zone 'UTC'),
    write_uid integer,
    write_date timestamp DEFAULT (now() at time zone 'UTC'),
    channel varchar,
    message varchar)
"""


def json_dump(value):
    """Odoo's json_dump: compact separators, ASCII escapes."""
    return json.dumps(value, separators=(",", ":"))


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1:port."""

    def __init__(self, base):
        self.base = base
        self.data = os.path.join(base, "data")
        self.log_path = os.path.join(base, "postgresql.log")
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.port = free_port()
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(p.split("/")[-2]))
        self.bindir = bins[-1] if bins else os.path.dirname(
            shutil.which("initdb") or "/usr/bin/initdb")

    def _run(self, *cmd, check=True):
        cmd = [os.path.join(self.bindir, cmd[0])] + list(cmd[1:])
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True,
                              text=True, cwd=self.base)

    def init(self):
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-A", "trust", "--nosync", "-U", "postgres",
                  "-D", self.data)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n".join([
                "fsync = off",
                "listen_addresses = '127.0.0.1'",
                "port = %d" % self.port,
                "unix_socket_directories = '%s'" % self.base,
                "logging_collector = off",
                "log_connections = on",
                "log_disconnections = on",
                "max_connections = 100",
                "shared_preload_libraries = 'pg_stat_statements'",
                ""]))

    def start(self):
        r = self._run("pg_ctl", "-w", "-D", self.data, "-l", self.log_path,
                      "start", check=False)
        if r.returncode != 0:
            print(self.log())
            raise RuntimeError("pg_ctl start failed: %s" % r.stderr)

    def stop(self):
        self._run("pg_ctl", "-w", "-D", self.data, "-m", "fast", "stop",
                  check=False)

    def restart(self):
        self.stop()
        self.start()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def dsn(self, dbname="postgres"):
        return "host=%s port=%d user=%s dbname=%s" % (
            self.host, self.port, self.user, dbname)

    def connect(self, dbname="postgres"):
        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def sql(self, query, params=None, dbname="postgres"):
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def send(self, db, channel, message, notify=True, conns=None):
        """Publishes like Odoo 10-14's bus.sendone: insert a row, commit,
        then NOTIFY imbus on database postgres with the channel list.
        conns: open (db connection, postgres connection) to reuse.
        Returns the new bus id."""
        own = conns is None
        if own:
            conns = (self.connect(db), self.connect("postgres"))
        try:
            [(bus_id,)] = conns[0].execute(
                "INSERT INTO bus_bus (channel, message) VALUES (%s, %s) "
                "RETURNING id",
                (json_dump(channel), json_dump(message))).fetchall()
            if notify:
                conns[1].execute("SELECT pg_notify('imbus', %s)",
                                 (json_dump([channel]),))
        finally:
            if own:
                conns[0].close()
                conns[1].close()
        return bus_id

    def set_conf(self, key, value, restart=False):
        self.sql("ALTER SYSTEM SET %s = '%s'" % (key, value))
        if restart:
            self.restart()
        else:
            self.sql("SELECT pg_reload_conf()")


@pytest.fixture(scope="session")
def pg():
    base = tempfile.mkdtemp(prefix="lpgate-pg-")
    os.chmod(base, 0o755)
    cluster = Postgres(base)
    cluster.init()
    cluster.start()
    cluster.sql("CREATE DATABASE lpgtest")
    cluster.sql("CREATE DATABASE lpgtest15")
    cluster.sql("CREATE EXTENSION pg_stat_statements")
    for db in ("lpgtest", "lpgtest15"):
        cluster.sql(BUS_BUS, dbname=db)
    # what Odoo 15's base module leaves in ir_module_module
    cluster.sql("CREATE TABLE ir_module_module (id serial PRIMARY KEY, "
                "name varchar, latest_version varchar)", dbname="lpgtest15")
    cluster.sql("INSERT INTO ir_module_module (name, latest_version) "
                "VALUES ('base', '15.0.1.3')", dbname="lpgtest15")
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def pg_log(request):
    """Prints what PostgreSQL logged during a test that uses it."""
    if "pg" not in request.fixturenames:
        yield
        return
    cluster = request.getfixturevalue("pg")
    start = len(cluster.log())
    yield
    new = cluster.log()[start:]
    if new:
        print("---- postgresql.log\n" + new[-20000:])


class Gateway:
    """One lpgate master (and its workers) started for a test."""

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=64)

    def __init__(self, pg, tmp_path, workers=2, extra_args=(), config=None,
                 env=None, defaults=True, port=None, preexec_fn=None,
                 admin_port=0):
        self.tmp = tmp_path
        self.port = port or free_port()
        self.logfile = str(tmp_path / "lpgate.log")
        self.pidfile = str(tmp_path / "lpgate.pid")
        self.config_path = None
        args = []
        if config is not None:
            self.config_path = str(tmp_path / "lpgate.conf")
            self.write_config(config)
            args += ["-c", self.config_path]
        if defaults:
            args += ["-i", "127.0.0.1", "-p", str(self.port),
                     "--db-host", pg.host, "--db-port", str(pg.port),
                     "--db-user", pg.user, "-d", "lpgtest",
                     "--logfile", self.logfile, "--pidfile", self.pidfile,
                     "--log-level", "info"]
            # admin_port=None: lpgate's own default
            if admin_port is not None:
                args += ["--admin-port", str(admin_port)]
            if workers is not None:
                args += ["--workers", str(workers)]
        args += list(extra_args)
        self.args = args
        self.stderr_path = str(tmp_path / "lpgate.stderr")
        cmd = [LPGATE_BIN] + args
        if VALGRIND:
            # memcheck over the master and every forked worker; the logs
            # are checked at teardown (check_valgrind)
            cmd = ["valgrind", "--quiet", "--trace-children=yes",
                   "--error-exitcode=99", "--leak-check=no",
                   "--log-file=%s/valgrind.%%p.log" % tmp_path] + cmd
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "w"), env=env,
            preexec_fn=preexec_fn)
        self.pid = self.proc.pid

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def http(self, method, path, body=None, headers=None, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict(headers or {})
                headers.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def poll(self, channels, last=0, options=None, db=None, timeout=10,
             rpc_id=1):
        """One JSON-RPC poll; returns the parsed JSON answer."""
        path = "/longpolling/poll" + ("?db=%s" % db if db else "")
        body = {"jsonrpc": "2.0", "method": "call", "id": rpc_id,
                "params": {"channels": channels, "last": last}}
        if options is not None:
            body["params"]["options"] = options
        status, _, data = self.http("POST", path, body, timeout=timeout)
        assert status == 200, (status, data)
        return json.loads(data)

    def poll_async(self, channels, last=0, **kw):
        """Starts a poll in a thread; .result() gives its answer."""
        return Gateway.executor.submit(self.poll, channels, last, **kw)

    def health(self):
        """(status, parsed body) of /longpolling/health, or (None, None)."""
        try:
            status, _, body = self.http("GET", "/longpolling/health",
                                        timeout=2)
            return status, json.loads(body)
        except (OSError, http.client.HTTPException, ValueError):
            return None, None

    def raw(self, data, timeout=2.0):
        """Sends raw bytes; returns what came back until close or timeout."""
        out = b""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            s.sendall(data)
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                pass
        return out

    def wait_ready(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("lpgate exited with %s before it was "
                                     "ready:\n%s" % (self.proc.returncode,
                                                     self.output()))
            return self.health()[0] == 200
        wait_until(ready, timeout * (10 if VALGRIND else 1),
                   what="/health to pass")
        return self

    def worker_pids(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def running(self):
        return self.proc.poll() is None

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def output(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read() + self.log()

    def log_contains(self, text):
        return text in self.log()

    def wait_log(self, text, timeout=10):
        return wait_until(lambda: self.log_contains(text),
                          timeout * (10 if VALGRIND else 1),
                          what="%r in the log" % text)

    def stop(self):
        pids = self.worker_pids()
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


@pytest.fixture
def gateway(pg, tmp_path):
    """Factory: gateway(workers=2, extra_args=(), config=None, ...) starts
    lpgate and waits until /health passes (unless ready=False)."""
    started = []

    def start(ready=True, **kw):
        d = tmp_path / ("gw%d" % len(started))
        d.mkdir()
        gw = Gateway(pg, d, **kw)
        started.append(gw)
        if ready:
            gw.wait_ready()
        return gw

    yield start
    reports = []
    for gw in started:
        gw.stop()
        out = gw.output()
        print("---- lpgate output (port %d)\n%s" % (gw.port, out))
        reports += sanitizer_reports(out)
    if VALGRIND:
        check_valgrind(tmp_path)
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print
# (a build with --enable-sanitizers): a worker that aborts on one is
# respawned and a leak only changes an exit status, so the output is read
def sanitizer_reports(text):
    return [line for line in text.splitlines()
            if "ERROR: AddressSanitizer" in line
            or "ERROR: LeakSanitizer" in line
            or "runtime error:" in line]


# A last-resort bound on each test's body, since Debian's
# python3-pytest-timeout is not a dependency: every helper wait is bounded
# already, this only turns an unforeseen hang into a failure with a
# traceback instead of a stuck `make check`.  Setup and teardown are not
# interrupted, so the fixtures still stop what they started.
# LPGATE_TEST_TIMEOUT=0 turns it off; pytest-timeout, when loaded, wins.
TEST_TIMEOUT = float(os.environ.get("LPGATE_TEST_TIMEOUT", "120"))


class BodyTimeout(Exception):
    """Raised in the main thread when a test body runs too long."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if (TEST_TIMEOUT <= 0 or item.config.pluginmanager.hasplugin("timeout")
            or not hasattr(signal, "setitimer")):
        yield
        return

    def expired(signum, frame):
        raise BodyTimeout("test body still running after %g s "
                          "(LPGATE_TEST_TIMEOUT)" % TEST_TIMEOUT)
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
