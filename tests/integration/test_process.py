"""The process model: command line, config file, connection budget,
supervision of workers, signals, health and HTTP error answers.

Each test starts real lpgate processes against the session's PostgreSQL.
"""

import http.client
import json
import re
import os
import signal

import pytest

from conftest import SRCDIR, alive, run_lpgate, wait_until

OPTIONS = ["--workers", "--db-maxconn", "--max-cron-threads", "--database",
           "--interface", "--port", "--config", "--db_host", "--db_port",
           "--db_user", "--db_password", "--listen-dsn", "--longpolling-path",
           "--timeout", "--log-level", "--logfile", "--pidfile",
           "--check-config", "--sizing", "--version", "--help"]


def db_args(pg):
    return ["--db-host", pg.host, "--db-port", str(pg.port),
            "--db-user", pg.user]


def test_version_and_help():
    r = run_lpgate(["--version"])
    assert r.returncode == 0
    assert r.stdout.startswith("lpgate ")
    r = run_lpgate(["--help"])
    assert r.returncode == 0
    for opt in OPTIONS:
        assert opt in r.stdout, opt


def test_unknown_option_exits_2():
    r = run_lpgate(["--no-such-option"])
    assert r.returncode == 2
    assert "no-such-option" in r.stderr


def test_check_config_good(tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text('workers = 2;\ndb_maxconn = 4;\nlog_level = "info";\n')
    r = run_lpgate(["--check-config", "-c", str(conf)])
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_shipped_config_is_valid():
    r = run_lpgate(["--check-config", "-c",
                    os.path.join(SRCDIR, "etc", "lpgate.conf")])
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("text,needles", [
    ("workers = 2;\n\nbogus_key = 1;\n", [":3:", "bogus_key"]),
    ("port = 8000;\nworkers = \"two\";\n", [":2:", "workers"]),
    ("port = 70000;\n", [":1:", "port", "out of range"]),
    ("workers = 2\nport = ;\n", [":2:"]),
])
def test_check_config_bad(tmp_path, text, needles):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = run_lpgate(["--check-config", "-c", str(conf)])
    assert r.returncode == 2
    assert str(conf) in r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_bad_command_line_value_exits_2():
    r = run_lpgate(["--check-config", "--workers", "many"])
    assert r.returncode == 2
    assert "workers" in r.stderr


def test_budget_refused(pg):
    r = run_lpgate(db_args(pg) + ["--workers", "4", "--max-cron-threads",
                                  "1", "--db-maxconn", "20"])
    assert r.returncode == 2, r.stderr
    assert "(1 + 4 + 1) * 20 = 120" in r.stderr
    assert "max_connections" in r.stderr
    assert "--db-maxconn=16 or less" in r.stderr


def test_budget_accepted(gateway):
    gw = gateway(workers=2, extra_args=["--db-maxconn", "8"])
    assert gw.log_contains("(1 + 2 + 1) * 8 = 32 < 100 - 3")
    assert len(gw.worker_pids()) == 2


def test_sizing_without_database():
    r = run_lpgate(["--sizing", "--db-host", "127.0.0.1", "--db-port", "1",
                    "--workers", "3"])
    assert r.returncode == 0, r.stderr
    assert "could not read max_connections" in r.stdout
    assert "fd limit" in r.stdout
    assert "per worker" in r.stdout


def test_sizing_with_database(pg):
    r = run_lpgate(["--sizing", "--workers", "2"] + db_args(pg))
    assert r.returncode == 0, r.stderr
    assert "max_connections 100" in r.stdout
    assert "(1 + 2 + 1) * 8 = 32 < 100 - 3 = 97: fits" in r.stdout


def test_command_line_wins_over_file(gateway):
    gw = gateway(workers=None, config="workers = 3;\n",
                 extra_args=["--workers", "1"])
    assert len(gw.worker_pids()) == 1


def test_health_follows_the_database(pg, gateway):
    gw = gateway(workers=2)
    status, body = gw.health()
    assert status == 200 and body == {"status": "pass"}
    try:
        pg.stop()
        status, body = wait_until(
            lambda: gw.health()[0] == 503 and gw.health(), 10,
            what="/health to fail")
        assert body["status"] == "fail"
        assert "database" in body["reason"]
    finally:
        pg.start()
    wait_until(lambda: gw.health()[0] == 200, 15, what="/health to pass")
    gw.wait_log("LISTEN connection up")


def test_http_errors_do_not_crash_workers(gateway):
    gw = gateway(workers=2)
    pids = sorted(gw.worker_pids())
    assert gw.http("GET", "/nope")[0] == 404
    assert gw.http("GET", "/longpolling/nope")[0] == 404
    status, headers, _ = gw.http("DELETE", "/longpolling/health")
    assert status == 405
    assert "GET" in headers["allow"]
    assert gw.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"GET /longpolling/health HTTP/1.1\r\nX-Big: " + b"a" * 9000
    assert gw.raw(big + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    body = (b"POST /longpolling/health HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
            % (2 * 1024 * 1024))
    assert gw.raw(body).startswith(b"HTTP/1.1 413")
    # HEAD: headers only
    status, headers, data = gw.http("HEAD", "/longpolling/health")
    assert status == 200 and data == b""
    assert gw.health()[0] == 200
    assert sorted(gw.worker_pids()) == pids


def test_keep_alive_and_pipelining(gateway):
    gw = gateway(workers=1)
    req = b"GET /longpolling/health HTTP/1.1\r\nHost: x\r\n\r\n"
    out = gw.raw(req * 3 + b"GET /longpolling/health HTTP/1.1\r\n"
                 b"Connection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.count(b'{"status": "pass"}') == 4


def test_keep_alive_sequential_requests(gateway):
    """HTTP/1.1 keep-alive without pipelining: the second request goes on
    the same connection after the first answer has been read."""
    gw = gateway(workers=1)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        local = []
        for _ in range(2):
            conn.request("GET", "/longpolling/health")
            # http.client reconnects silently: compare the local ports
            local.append(conn.sock.getsockname())
            r = conn.getresponse()
            assert r.status == 200
            assert json.loads(r.read()) == {"status": "pass"}
            assert r.getheader("Connection", "").lower() != "close"
        assert local[0] == local[1]
    finally:
        conn.close()


def test_killed_worker_is_replaced(gateway):
    gw = gateway(workers=2)
    victim, other = gw.worker_pids()
    os.kill(victim, signal.SIGKILL)

    def replaced():
        pids = gw.worker_pids()
        return len(pids) == 2 and victim not in pids and pids
    pids = wait_until(replaced, 5, what="a new worker")
    assert other in pids
    wait_until(lambda: gw.health()[0] == 200, 5, what="/health to pass")
    gw.wait_log("killed by signal 9")


def test_reload_with_broken_file_keeps_old_config(gateway):
    gw = gateway(workers=None, config="workers = 1;\n")
    [old] = gw.worker_pids()
    gw.write_config("workers = 2\nport = ;\n")
    gw.signal(signal.SIGHUP)
    gw.wait_log("reload failed", 5)
    assert gw.log_contains("keeping the old configuration")
    assert gw.running()
    assert gw.worker_pids() == [old]
    assert gw.health()[0] == 200

    gw.write_config("workers = 2;\n")
    gw.signal(signal.SIGHUP)
    pids = wait_until(lambda: len(gw.worker_pids()) == 2
                      and old not in gw.worker_pids()
                      and gw.worker_pids(), 10, what="two new workers")
    assert old not in pids
    wait_until(lambda: gw.health()[0] == 200, 5, what="/health to pass")


def test_sigquit_exits_cleanly(gateway):
    gw = gateway(workers=2)
    pids = gw.worker_pids()
    assert open(gw.pidfile).read().strip() == str(gw.pid)
    gw.signal(signal.SIGQUIT)
    assert gw.wait(10) == 0
    for p in pids:
        assert not alive(p)
    assert gw.log_contains("exiting")
    assert not os.path.exists(gw.pidfile)


def test_sigterm_exits(gateway):
    gw = gateway(workers=2)
    gw.signal(signal.SIGTERM)
    assert gw.wait(5) == 0



def test_master_sigkill_leaves_no_worker(gateway):
    gw = gateway(workers=2)
    pids = gw.worker_pids()
    assert len(pids) == 2
    gw.signal(signal.SIGKILL)
    gw.wait(5)
    wait_until(lambda: not any(alive(p) for p in pids), 3,
               what="the workers to exit")


def test_sigusr1_reopens_the_log(gateway):
    gw = gateway(workers=1)
    os.rename(gw.logfile, gw.logfile + ".1")
    gw.signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(gw.logfile), 5, what="a new log file")
    gw.wait_log("reopened", 5)
    # the worker writes to the new file too
    gw.signal(signal.SIGQUIT)
    gw.wait(10)
    assert "worker#0" in gw.log()


def test_database_down_at_start_then_up(pg, gateway):
    try:
        pg.stop()
        gw = gateway(workers=1, ready=False)
        wait_until(lambda: gw.health()[0] == 503, 10, what="/health to fail")
        assert gw.running()
    finally:
        pg.start()
    wait_until(lambda: gw.health()[0] == 200, 15, what="/health to pass")
    gw.wait_log("connection budget: (1 + 1 + 1) * 8 = 24 < 100 - 3")


def test_budget_checked_when_database_comes_back(pg, gateway):
    try:
        pg.stop()
        gw = gateway(workers=4, ready=False,
                     extra_args=["--db-maxconn", "20"])
        wait_until(lambda: gw.health()[0] == 503, 10, what="/health to fail")
    finally:
        pg.start()
    assert gw.wait(20) == 2
    assert "(1 + 4 + 1) * 20 = 120" in gw.log()


def sanitized():
    with open(os.environ.get("LPGATE_BIN", "lpgate"), "rb") as f:
        return b"__asan_init" in f.read()


@pytest.mark.skipif(sanitized(), reason="ASan reserves more address space "
                    "than the limit this test sets")
def test_worker_exit_2_is_not_respawned(pg, tmp_path):
    """A worker whose start fails fatally (here: its 256 MiB ring buffer
    does not fit the address-space limit the master still fits in) exits
    2; the master does not respawn it, and stops with 2 when none is
    left."""
    import resource
    import subprocess
    from conftest import LPGATE_BIN, free_port

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1450 << 20, 1450 << 20))

    log = tmp_path / "lpgate.log"
    conf = tmp_path / "lpgate.conf"
    conf.write_text('ring_size = "1G";\n')
    proc = subprocess.Popen(
        [LPGATE_BIN, "--workers", "1", "-p", str(free_port()),
         "--log-level", "info", "-c", str(conf),
         "--db-host", pg.host, "--db-port", str(pg.port), "--db-user",
         pg.user, "-d", "lpgtest", "--logfile", str(log)],
        preexec_fn=limit, stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL)
    try:
        assert proc.wait(20) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "exited with status 2" in text
    assert "will not be respawned" in text
    assert text.count("worker#0 started") == 1


def test_man_page_matches_help():
    """Every option --help prints is in lpgate(8), and the other way
    round."""
    help_opts = set(re.findall(r"--[a-z][a-z_-]+", run_lpgate(["--help"])
                               .stdout))
    with open(os.path.join(SRCDIR, "doc", "lpgate.8")) as f:
        man = f.read().replace("\\-", "-")
    man_opts = set(re.findall(r"--[a-z][a-z_-]+", man))
    assert help_opts == man_opts, (help_opts ^ man_opts)
