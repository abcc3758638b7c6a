#!/usr/bin/python3
"""scaleout.py [--nodes 1,2,4] [--seconds S] [--out FILE]: the cost of more
lpgate nodes on one PostgreSQL (issue 15, item 5).

For each node count N it starts N lpgate nodes (separate masters on separate
ports, one worker each, each with its own LISTEN) behind Debian's haproxy
(round robin, no affinity, health checks on /longpolling/health), runs
lpgate-bench's throughput scenario through haproxy, and measures:

- fetch queries per notification: calls of lpgate's fetch SELECTs in
  pg_stat_statements (bench.py's db_queries) and lpgate_fetches_total of
  every node, divided by the messages published (each one NOTIFY);
- PostgreSQL CPU per notification: utime + stime of every postgres process
  (the postmaster's own, its live children's, and cutime + cstime for the
  backends that exited during the run), and of lpgate's backends alone
  (application_name lpgate*), divided by the messages published;
- deliveries per second and latency p99 (lpgate-bench), duplicates;

then, with the stand-in Odoo (tests/integration/odoo_standin.py) as
odoo_url, how often the nodes ask Odoo about sessions: --sessions sessions
each poll --session-polls times through haproxy, and every node's
lpgate_session_lookups_total is read from its /metrics.

Placement on a 2-CPU machine: lpgate nodes and haproxy on CPU 0,
lpgate-bench and PostgreSQL on CPU 1 (as bench.py).  Writes a Markdown
section (stdout, or --out).  The one-line command:

    LPGATE_BIN=$PWD/build/lpgate /usr/bin/python3 scripts/scaleout.py
"""

import argparse
import datetime
import http.client
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import concurrent.futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (conftest, run_bench, db_queries, pinning)

conftest = bench.conftest
sys.path.insert(0, str(bench.TOP / "tests" / "integration"))
from odoo_standin import OdooStandin  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")

HAPROXY_CFG = """
global
    maxconn 9000
    pidfile {dir}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-request 10s
    timeout http-keep-alive 75s
    retries 3
    option redispatch 1
frontend www
    bind 127.0.0.1:{port}
    maxconn 9000
    default_backend lpgate
backend lpgate
    balance roundrobin
    option httpchk GET /longpolling/health
    http-check expect status 200
    default-server check inter 500ms fall 1 rise 1 maxconn 9000
{servers}
"""


def cpu_ticks(pid, children_too=False):
    """utime + stime (+ cutime + cstime) of pid, in ticks; 0 if gone."""
    try:
        f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    t = int(f[11]) + int(f[12])
    if children_too:
        t += int(f[13]) + int(f[14])
    return t


def pg_cpu(pg):
    """(all of PostgreSQL, lpgate's backends) in ticks: the postmaster
    with what its exited children left in cutime/cstime, plus every live
    child; lpgate's backends by application_name."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        master = int(f.readline())
    total = cpu_ticks(master, True) + sum(cpu_ticks(p)
                                          for p in bench.children(master))
    pids = [r[0] for r in pg.sql(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name LIKE 'lpgate%'")]
    return total, {p: cpu_ticks(p) for p in pids}


def metrics(port):
    """{name: summed value} of a node's /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out


class Haproxy:
    def __init__(self, base, nodes):
        self.dir = Path(tempfile.mkdtemp(prefix="haproxy-", dir=base))
        self.port = conftest.free_port()
        servers = "\n".join("    server n%d 127.0.0.1:%d" % (i, gw.port)
                            for i, gw in enumerate(nodes))
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(dir=self.dir, port=self.port,
                                          servers=servers))
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr", "w"),
            preexec_fn=bench.pin(bench.SERVER_CPU))
        conftest.wait_until(self.ready, 15, what="haproxy to route")

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("haproxy exited: %s"
                               % (self.dir / "stderr").read_text())
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/longpolling/health")
            return c.getresponse().status == 200
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_nodes(pg, base, n, extra=()):
    nodes = []
    for i in range(n):
        tmp = Path(tempfile.mkdtemp(prefix="node%d-" % i, dir=base))
        nodes.append(conftest.Gateway(
            pg, tmp, workers=1, admin_port=conftest.free_port(),
            extra_args=["--log-level", "notice", "--node-name", "n%d" % i,
                        "--db-maxconn", "4"] + list(extra),
            preexec_fn=bench.pin(bench.SERVER_CPU)))
    for gw in nodes:
        gw.wait_ready()
    return nodes


def admin_port(gw):
    return int(gw.args[gw.args.index("--admin-port") + 1])


def throughput(pg, base, n, a, log):
    nodes = start_nodes(pg, base, n, ["--odoo-url", ""])
    lb = None
    try:
        lb = Haproxy(base, nodes)
        time.sleep(1.0)
        pg.sql("SELECT pg_stat_statements_reset()", dbname="lpgtest")
        q0 = bench.db_queries(pg)
        m0 = [metrics(admin_port(gw)) for gw in nodes]
        cpu0, lp0 = pg_cpu(pg)
        args = ["--mode=throughput", "--polls=%d" % a.polls,
                "--channels=%d" % a.channels, "--seconds=%g" % a.seconds,
                "--publishers=%d" % a.publishers, "--proto=odoo",
                "--port=%d" % lb.port, "--dsn=" + pg.dsn("lpgtest"),
                "--label=lpgate %d node(s)" % n]
        args += ["--pid=%d" % gw.pid for gw in nodes]
        s = bench.run_bench(args, log)
        cpu1, lp1 = pg_cpu(pg)
        m1 = [metrics(admin_port(gw)) for gw in nodes]
        q = bench.db_queries(pg) - q0
    finally:
        if lb is not None:
            lb.stop()
        for gw in nodes:
            gw.stop()

    pub = s.get("published") or 0

    def delta(name):
        return [b.get(name, 0) - a0.get(name, 0) for a0, b in zip(m0, m1)]

    fetches = delta("lpgate_fetches_total")
    answered = delta("lpgate_polls_answered_total")
    lp = sum(t - lp0[p] for p, t in lp1.items() if p in lp0)
    us = 1e6 / TICKS
    s.update({
        "nodes": n, "db_queries": q, "fetches": sum(fetches),
        "fetches_per_node": fetches, "answered_per_node": answered,
        "q_per_notif": q / pub if pub else None,
        "fetch_per_notif": sum(fetches) / pub if pub else None,
        "pg_us_per_notif": (cpu1 - cpu0) * us / pub if pub else None,
        "pg_lpgate_us_per_notif": lp * us / pub if pub else None,
        "pg_cpu_s": (cpu1 - cpu0) / TICKS,
    })
    return s


def sessions(pg, base, n, a):
    """Every one of a.sessions sessions polls a.session_polls times through
    haproxy; returns the lookups per node and the stand-in's count."""
    odoo = OdooStandin({"lpgtest": (pg.dsn("lpgtest"), 14)}).start()
    nodes = start_nodes(pg, base, n, ["--odoo-url", odoo.url,
                                      "--timeout", "1"])
    lb = None
    try:
        lb = Haproxy(base, nodes)
        sids = []
        for i in range(a.sessions):
            uid, _ = odoo.user("lpgtest", "scale%d_%d" % (n, i))
            sids.append(odoo.login("lpgtest", uid))
        odoo.reset_counts()
        m0 = [metrics(admin_port(gw)) for gw in nodes]

        def polls(sid):
            for k in range(a.session_polls):
                c = http.client.HTTPConnection("127.0.0.1", lb.port,
                                               timeout=10)
                c.request("POST", "/longpolling/poll",
                          body='{"jsonrpc": "2.0", "method": "call", '
                          '"params": {"channels": [], "last": 0}}',
                          headers={"Content-Type": "application/json",
                                   "Cookie": "session_id=" + sid})
                r = c.getresponse()
                r.read()
                c.close()
                assert r.status == 200, r.status

        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            list(ex.map(polls, sids))
        m1 = [metrics(admin_port(gw)) for gw in nodes]
        asked = odoo.count("/lpgate/session")
    finally:
        if lb is not None:
            lb.stop()
        for gw in nodes:
            gw.stop()
        odoo.stop()
    per_node = [b.get("lpgate_session_lookups_total", 0)
                - a0.get("lpgate_session_lookups_total", 0)
                for a0, b in zip(m0, m1)]
    return {"nodes": n, "per_node": per_node, "odoo": asked,
            "polls": a.sessions * a.session_polls}


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def report(a, results, sess, log):
    now = datetime.datetime.now(datetime.timezone.utc)
    rev = subprocess.run(["git", "-C", str(bench.TOP), "rev-parse", "--short",
                          "HEAD"], capture_output=True, text=True).stdout
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    hv = subprocess.run(["haproxy", "-v"], capture_output=True,
                        text=True).stdout.splitlines()[0]
    L = [
        "- measured on %s UTC, git %s" % (now.strftime("%Y-%m-%d %H:%M"),
                                           rev.strip() or "?"),
        "- machine: %s, %d vCPU, %.0f GiB, Linux %s; %s"
        % (cpu, os.cpu_count() or 0, mem, platform.release(), hv),
        "- command: `LPGATE_BIN=$PWD/build/lpgate /usr/bin/python3 "
        "scripts/scaleout.py %s`" % " ".join(sys.argv[1:]),
        "- each node: one lpgate master + 1 worker, `--db-maxconn 4`; nodes "
        "and haproxy on CPU 0, lpgate-bench and PostgreSQL on CPU 1; "
        "throughput: %d polls on %d channels through haproxy (round robin, "
        "no affinity), %d publishers (INSERT + NOTIFY per message) for "
        "%g s" % (a.polls, a.channels, a.publishers, a.seconds),
        "",
        "| nodes | delivered | duplicates | deliveries/s | p99 (ms) | "
        "messages published | lpgate fetches | fetches per notification | "
        "fetch SELECTs per notification | PostgreSQL CPU per notification "
        "(us) | of which lpgate's backends (us) | polls answered per node |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        L.append("| %d | %s / %s | %s | %s | %s | %s | %d | %s | %s | %s | "
                 "%s | %s |" % (
                     r["nodes"], r.get("received", "-"),
                     r.get("expected", "-"), r.get("duplicates", "-"),
                     fmt(r.get("deliveries_per_s"), "%.0f"),
                     fmt(r.get("p99_ms")), r.get("published", "-"),
                     r["fetches"], fmt(r["fetch_per_notif"], "%.3f"),
                     fmt(r["q_per_notif"], "%.3f"),
                     fmt(r["pg_us_per_notif"], "%.1f"),
                     fmt(r["pg_lpgate_us_per_notif"], "%.1f"),
                     ", ".join("%d" % v for v in r["answered_per_node"])))
    if sess:
        L += ["",
              "Session lookups: %d sessions, each polling %d times through "
              "haproxy (round robin), `session_ttl` 30 s, 1 worker per node:"
              % (a.sessions, a.session_polls), "",
              "| nodes | polls | lookups per node (lpgate_session_lookups_"
              "total) | requests Odoo received | per session |",
              "|---|---|---|---|---|"]
        for s in sess:
            L.append("| %d | %d | %s | %d | %.2f |" % (
                s["nodes"], s["polls"],
                ", ".join("%d" % v for v in s["per_node"]), s["odoo"],
                s["odoo"] / a.sessions))
    L += ["", "lpgate-bench commands:", "", "```"] + log + ["```", ""]
    # bench.py keeps the block between these marks when it rewrites
    # docs/benchmarks.md: paste the output there, marks included
    L = [bench.SCALEOUT_BEGIN] + L + [bench.SCALEOUT_END]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--polls", type=int, default=2000)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--session-polls", type=int, default=8)
    ap.add_argument("--out")
    a = ap.parse_args()
    for tool in (bench.BENCH, os.environ["LPGATE_BIN"]):
        if not os.path.exists(tool):
            sys.exit("scaleout.py: %s is missing (build first)" % tool)
    if shutil.which("haproxy") is None:
        sys.exit("scaleout.py: haproxy is missing (scripts/deps.sh)")

    results, sess, log = [], [], []
    with bench.bench_postgres("lpgate-scaleout-") as (pg, base):
        counts = [int(x) for x in a.nodes.split(",")]
        for n in counts:
            results.append(throughput(pg, base, n, a, log))
        if a.sessions > 0:
            for n in counts:
                sess.append(sessions(pg, base, n, a))
    text = report(a, results, sess, log)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0 if all(r.get("complete") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
