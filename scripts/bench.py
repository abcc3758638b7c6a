#!/usr/bin/python3
"""bench.py [--quick] [--out FILE] [--only NAME,...]: lpgate and nginx+nchan,
side by side, in one run (issue 5).  scripts/bench.sh installs and builds,
then runs this.

It starts a throw-away PostgreSQL (the integration harness), lpgate and
nginx with Debian's nchan module, runs every scenario against both with
lpgate-bench, and writes a Markdown report (docs/benchmarks.md by default):
one table per scenario, lpgate and nchan side by side, their ratio and the
target, the machine, the date and the exact commands.

Placement: the server under test (lpgate's master and workers, or nginx's
master and workers) runs on CPU 0; lpgate-bench and PostgreSQL run on CPU 1.
The scale scenario lets the server use both CPUs.  --quick runs small
versions of the scenarios in about a minute; CI runs it for correctness
(every expected delivery arrives, from both servers), never for timing.

The websocket scenarios (proto odoo-ws: Odoo 16+'s /websocket, issue 13)
run lpgate only (nchan has no Odoo protocol), and only when the lpgate
under test answers a GET /websocket upgrade with 101: the probe runs first,
and without a 101 the scenario's table says "not available", so a full run
works before and after lpgate serves /websocket.

Exit status 1 when an lpgate run misses a delivery; nchan's results are
reported, not judged.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(TOP / "tests" / "integration"))
os.environ.setdefault("LPGATE_BIN", str(TOP / "build" / "lpgate"))

import conftest  # noqa: E402  (Postgres, Gateway)

BENCH = os.environ.get("LPGATE_BENCH_BIN",
                       str(Path(os.environ["LPGATE_BIN"]).parent
                           / "lpgate-bench"))
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
SERVER_CPU = {0}
LOAD_CPU = {1} if os.cpu_count() and os.cpu_count() > 1 else {0}

NGINX_CONF = """
load_module {module};
worker_processes {workers};
worker_rlimit_nofile 20000;
user root;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 20000; use epoll; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    nchan_shared_memory_size 512M;
    server {{
        listen 127.0.0.1:{port} backlog=65535 reuseport;
        location ~ ^/sub/(.+)$ {{
            nchan_subscriber longpoll;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
        location ~ ^/pub/(.+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 2000;
            nchan_message_timeout 10m;
        }}
    }}
}}
"""

# name, title, lpgate-bench arguments, workers, pinned, target text
# [, proto: "odoo" unless given; "odoo-ws" runs lpgate only, if it upgrades]
SCENARIOS = [
    ("fanout-10k", "fanout: 10,000 polls on one channel, 1 worker each side",
     ["--mode=fanout", "--polls=10000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered, p99 <= 75 ms; CPU <= 12 us per delivery; "
     "RSS <= 1 KiB per poll"),
    ("fanout-20k", "fanout: 20,000 polls, 2 workers each side, server on one "
     "core", ["--mode=fanout", "--polls=20000", "--rounds=10"], 2, True,
     "all delivered, p99 <= 150 ms"),
    ("private-10k", "private: 10,000 polls on 10,000 channels, one "
     "transaction (lpgate) / 10,000 pipelined publishes (nchan)",
     ["--mode=private", "--polls=10000", "--rounds=5"], 1, True,
     "all delivered, p99 <= 150 ms"),
    ("throughput", "throughput: 2,000 polls on 20 channels, publishers as "
     "fast as they can for 60 s", ["--mode=throughput", "--polls=2000",
                                   "--channels=20", "--seconds=60",
                                   "--publishers=2"], 1, True,
     "deliveries/s >= 1.5x nchan, p99 <= 10 ms"),
    ("scale-100k", "scale: 100,000 polls, 8 workers each side, both cores",
     ["--mode=fanout", "--polls=100000", "--rounds=3", "--idle-seconds=5",
      "--timeout=120"], 8, False,
     "all delivered, p99 <= 1 s, idle CPU < 1 %"),
    ("ws-fanout-1k", "websocket fanout: 1,000 sockets on one channel, "
     "1 worker on CPU 0 (Odoo 16+ /websocket)",
     ["--mode=fanout", "--polls=1000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered", "odoo-ws"),
    ("ws-fanout-10k", "websocket fanout: 10,000 sockets on one channel, "
     "1 worker on CPU 0 (Odoo 16+ /websocket)",
     ["--mode=fanout", "--polls=10000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered; compare with fanout-10k's long polls",
     "odoo-ws"),
]

QUICK = [
    ("fanout-2k", "fanout: 2,000 polls on one channel, 1 worker",
     ["--mode=fanout", "--polls=2000", "--rounds=3", "--idle-seconds=1"],
     1, True, "all delivered"),
    ("private-2k", "private: 2,000 polls on 2,000 channels",
     ["--mode=private", "--polls=2000", "--rounds=2"], 1, True,
     "all delivered"),
    ("throughput-quick", "throughput: 500 polls on 10 channels, 5 s",
     ["--mode=throughput", "--polls=500", "--channels=10", "--seconds=5"],
     1, True, "all delivered"),
    ("fanout-2w", "fanout: 3,000 polls, 2 workers",
     ["--mode=fanout", "--polls=3000", "--rounds=2"], 2, True,
     "all delivered"),
    ("ws-fanout-1k", "websocket fanout: 1,000 sockets on one channel, "
     "1 worker", ["--mode=fanout", "--polls=1000", "--rounds=3"], 1, True,
     "all delivered", "odoo-ws"),
]


def ws_probe(port, path="/websocket"):
    """None when lpgate upgrades GET /websocket (101 with the right
    Sec-WebSocket-Accept), else why not."""
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            c.settimeout(5)
            c.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Origin: http://127.0.0.1:%d\r\n\r\n"
                       % (path, port, key, port)).encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        return "GET %s failed: %s" % (path, e)
    lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")
    status = lines[0].decode(errors="replace") if lines[0] else "nothing"
    if status.split(" ")[1:2] != ["101"]:
        return "lpgate answers GET %s with \"%s\", not 101" % (path, status)
    accept = [v.split(b":", 1)[1].strip() for v in lines[1:]
              if v.lower().startswith(b"sec-websocket-accept:")]
    if accept != [want]:
        return "lpgate's 101 has a wrong Sec-WebSocket-Accept"
    return None


def pin(cpus):
    return lambda: os.sched_setaffinity(0, cpus)


def pin_postgres(pg, cpus):
    """The postmaster and its current children; new backends inherit."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        master = int(f.readline())
    for pid in [master] + children(master):
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


def children(pid):
    try:
        return [int(p) for p in Path("/proc/%d/task/%d/children"
                                     % (pid, pid)).read_text().split()]
    except OSError:
        return []


class Nginx:
    def __init__(self, base, workers, pinned):
        self.dir = Path(tempfile.mkdtemp(prefix="nchan-", dir=base))
        self.port = conftest.free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(module=NCHAN_MODULE,
                                          workers=workers, dir=self.dir,
                                          port=self.port))
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr", "w"),
            preexec_fn=pin(SERVER_CPU) if pinned else None)
        self.pid = self.proc.pid
        conftest.wait_until(lambda: self.ready(workers), 15,
                            what="nginx to listen")

    def ready(self, workers):
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited: %s"
                               % (self.dir / "stderr").read_text())
        if len(children(self.pid)) < workers:
            return False
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_bench(args, log):
    cmd = [BENCH] + args
    log.append(" ".join(shlex.quote(a) for a in cmd))
    print("+ " + log[-1], flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True,
                       preexec_fn=pin(LOAD_CPU))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    summary = None
    for line in r.stdout.splitlines():
        if line.startswith("SUMMARY "):
            summary = json.loads(line[8:])
    if summary is None:
        summary = {"complete": False, "error": r.stderr.strip()[-300:]}
    summary["exit"] = r.returncode
    return summary


def db_queries(pg):
    """Calls of data statements other than the bench's own (its INSERT ...
    NOTIFY and its max(id) query) and the statistics queries themselves:
    lpgate's fetch is one round trip of BEGIN; SELECT snapshot; SELECT rows;
    COMMIT, counted as its two SELECTs."""
    rows = pg.sql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                  "WHERE query NOT ILIKE '%%INSERT INTO bus_bus%%' "
                  "AND query NOT ILIKE '%%coalesce(max(id)%%' "
                  "AND query NOT ILIKE '%%pg_stat_statements%%' "
                  "AND query !~* '^\\s*(SET|BEGIN|COMMIT|ROLLBACK|NOTIFY)'",
                  dbname="lpgtest")
    return int(rows[0][0])


def run_scenario(pg, base, scen, log):
    name, title, args, workers, pinned, target = scen[:6]
    proto = scen[6] if len(scen) > 6 else "odoo"
    out = {"name": name, "title": title, "target": target, "proto": proto}

    tmp = Path(tempfile.mkdtemp(prefix="gw-", dir=base))
    gw = conftest.Gateway(pg, tmp, workers=workers,
                          extra_args=["--log-level", "notice"],
                          preexec_fn=pin(SERVER_CPU) if pinned else None)
    try:
        gw.wait_ready()
        time.sleep(0.5)
        pg.sql("SELECT pg_stat_statements_reset()", dbname="lpgtest")
        q0 = db_queries(pg)
        why = ws_probe(gw.port) if proto == "odoo-ws" else None
        if why is not None:
            print("%s: not available: %s" % (name, why), flush=True)
            out["lpgate"] = {"complete": False, "not_available": why}
        else:
            out["lpgate"] = run_bench(
                args + ["--proto=" + proto, "--port=%d" % gw.port,
                        "--dsn=" + pg.dsn("lpgtest"), "--pid=%d" % gw.pid,
                        "--label=lpgate " + name], log)
            out["lpgate"]["db_queries"] = q = db_queries(pg) - q0
            if out["lpgate"].get("rounds"):
                out["lpgate"]["db_per_batch"] = q / out["lpgate"]["rounds"]
    finally:
        gw.stop()

    if proto != "odoo":
        out["nchan"] = {"not_applicable": True}
        return out

    ng = Nginx(base, workers, pinned)
    try:
        out["nchan"] = run_bench(
            args + ["--proto=nchan", "--port=%d" % ng.port,
                    "--pid=%d" % ng.pid, "--label=nchan " + name], log)
    finally:
        ng.stop()
    return out


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = ("%.0f" % v) if abs(v) >= 100 else ("%.2f" % v)
    return "%s%s" % (v, unit)


def ratio(a, b):
    try:
        return "%.2fx" % (a / b) if a and b else "-"
    except (TypeError, ZeroDivisionError):
        return "-"


SOAK_BEGIN = "<!-- soak:begin (scripts/soak.py --record) -->"
SOAK_END = "<!-- soak:end -->"


def soak_section(path):
    """The soak's block of the existing report, kept as it is."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    if SOAK_BEGIN in text and SOAK_END in text:
        return text[text.index(SOAK_BEGIN):text.index(SOAK_END)
                    + len(SOAK_END)] + "\n"
    return "%s\n## Soak\n\nNot run yet.\n%s\n" % (SOAK_BEGIN, SOAK_END)


def report(results, quick, log, path):
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc)
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = subprocess.run(["git", "-C", str(TOP), "rev-parse", "--short",
                          "HEAD"], capture_output=True, text=True).stdout
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True,
                             text=True).stderr.strip()
    nchan_v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                              "libnginx-mod-nchan"], capture_output=True,
                             text=True).stdout
    lines += [
        "# lpgate benchmarks: lpgate and nginx + nchan, one run",
        "",
        "Generated by `%s` on %s UTC (%s mode). Re-run it to refresh this file;"
        " `bash scripts/bench.sh` installs, builds and runs it."
        % ("bash scripts/bench.sh" + (" --quick" if quick else ""),
           now.strftime("%Y-%m-%d %H:%M"), "quick" if quick else "full"),
        "",
        "- machine: %s, %d vCPU, %.0f GiB, Linux %s" % (
            cpu, os.cpu_count() or 0, mem, platform.release()),
        "- lpgate %s (git %s); %s with libnginx-mod-nchan %s" % (
            "build", rev.strip() or "?", nginx_v, nchan_v or "?"),
        "- placement: server on CPU 0 (lpgate master + workers / nginx "
        "master + workers); lpgate-bench and PostgreSQL on CPU 1; the scale "
        "scenario lets the server use both CPUs",
        "- latency: from just before the trigger (lpgate: INSERT into bus_bus "
        "+ NOTIFY imbus in one transaction, as Odoo does; nchan: HTTP POST "
        "to the publisher location) to the arrival of the reply's last "
        "bytes at the client's socket (the kernel's receive timestamp, "
        "SO_TIMESTAMPNS), so the load generator's own queueing on its CPU is "
        "not charged to the server; the rows 'as read by lpgate-bench' give "
        "the time the client process read the reply; every poll re-polls at "
        "once on its keep-alive connection",
        "- server CPU: utime + stime of the server's processes from /proc "
        "over the rounds (trigger until every re-poll is parked again), "
        "divided by deliveries; RSS: the server's processes' VmRSS before "
        "connecting and with every poll parked",
        "- ratio: nchan / lpgate for latency and cost (above 1: lpgate is "
        "better), lpgate / nchan for deliveries per second",
        "",
    ]
    rows = [("delivered", "received", None, False),
            ("latency p50 (ms)", "p50_ms", None, False),
            ("latency p90 (ms)", "p90_ms", None, False),
            ("latency p99 (ms)", "p99_ms", None, False),
            ("latency max (ms)", "max_ms", None, False),
            ("latency p50 as read by lpgate-bench (ms)", "read_p50_ms", None,
             False),
            ("latency p99 as read by lpgate-bench (ms)", "read_p99_ms", None,
             False),
            ("deliveries/s", "deliveries_per_s", None, True),
            ("messages published", "published", None, None),
            ("HTTP replies (a reply may carry several messages)", "replies",
             None, None),
            ("server CPU per delivery (us)", "cpu_us_per_delivery", None,
             False),
            ("server RSS per parked poll (KiB)", "rss_kib_per_poll", None,
             False),
            ("server CPU while parked (%)", "idle_cpu_pct", None, False),
            ("errors", "errors", None, None),
            ("database SELECTs in all (lpgate's fetches)", "db_queries", None,
             None),
            ("database SELECTs per notification batch", "db_per_batch", None,
             None)]
    for r in results:
        lp, nc = r.get("lpgate", {}), r.get("nchan", {})
        lines += ["## %s" % r["title"], "", "Target: %s." % r["target"], ""]
        if lp.get("not_available"):
            lines += ["Not available: %s (probed before the run)."
                      % lp["not_available"], ""]
            continue
        if nc.get("not_applicable"):
            lines += ["lpgate only: lpgate-bench --proto=%s (nchan does not "
                      "speak Odoo's protocol). \"HTTP replies\" counts the "
                      "101 answers and the notification frames." % r["proto"],
                      ""]
        lines += ["| | lpgate | nchan | ratio |", "|---|---|---|---|"]
        for label, key, _, higher in rows:
            a, b = lp.get(key), nc.get(key)
            if key == "received":
                a = "%s / %s" % (lp.get("received", "-"),
                                 lp.get("expected", "-"))
                b = "%s / %s" % (nc.get("received", "-"),
                                 nc.get("expected", "-"))
                rt = ""
            elif higher is None:
                rt = ""
            elif higher:
                rt = ratio(a, b)
            else:
                rt = ratio(b, a)
            if a is None and b is None:
                continue
            lines.append("| %s | %s | %s | %s |" % (label, fmt(a), fmt(b),
                                                     rt))
        for who, res in (("lpgate", lp), ("nchan", nc)):
            if not res.get("complete", False) and not res.get(
                    "not_applicable"):
                lines.append("")
                lines.append("**%s did not complete this scenario** "
                             "(exit %s%s)." % (
                                 who, res.get("exit"),
                                 ": " + res["error"] if res.get("error")
                                 else ""))
        lines.append("")
    lines += ["## Commands", "", "```"] + log + ["```", ""]
    lines.append(soak_section(path))
    Path(path).write_text("\n".join(lines))
    print("wrote %s" % path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--only", help="comma-separated scenario names")
    a = ap.parse_args()
    scenarios = QUICK if a.quick else SCENARIOS
    if a.only:
        keep = a.only.split(",")
        scenarios = [s for s in scenarios if s[0] in keep]
    out = a.out or (os.path.join(tempfile.gettempdir(), "lpgate-bench.md")
                    if a.quick else str(TOP / "docs" / "benchmarks.md"))
    for tool in (BENCH, os.environ["LPGATE_BIN"], NCHAN_MODULE):
        if not os.path.exists(tool):
            sys.exit("bench.py: %s is missing (run scripts/bench.sh)" % tool)
    if shutil.which("nginx") is None:
        sys.exit("bench.py: nginx is missing (run scripts/bench.sh)")

    base = tempfile.mkdtemp(prefix="lpgate-bench-")
    os.chmod(base, 0o755)
    pg = conftest.Postgres(base)
    pg.init()
    with open(os.path.join(pg.data, "postgresql.conf"), "a") as f:
        f.write("max_connections = 200\nsynchronous_commit = off\n")
    pg.start()
    results, log = [], []
    try:
        pin_postgres(pg, LOAD_CPU)
        pg.sql("CREATE DATABASE lpgtest")
        pg.sql(conftest.BUS_BUS, dbname="lpgtest")
        # a deployed bus_bus is never empty: polls start from its largest id
        # (with none, lpgate-bench's first polls would carry last=0, which
        # Odoo answers from the database, and the first scenario would count
        # those startup queries)
        pg.sql("INSERT INTO bus_bus (channel, message) VALUES "
               "('\"seed\"', '{}')", dbname="lpgtest")
        pg.sql("CREATE EXTENSION pg_stat_statements", dbname="lpgtest")
        for scen in scenarios:
            results.append(run_scenario(pg, base, scen, log))
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(results, a.quick, log, out)
    bad = [r["name"] for r in results
           if not r.get("lpgate", {}).get("complete")
           and not r["lpgate"].get("not_available")]
    nbad = [r["name"] for r in results
            if not r.get("nchan", {}).get("complete")
            and not r["nchan"].get("not_applicable")]
    nav = [r["name"] for r in results
           if r.get("lpgate", {}).get("not_available")]
    if nav:
        print("not available in this lpgate: %s" % ", ".join(nav))
    if nbad:
        print("nchan incomplete in: %s" % ", ".join(nbad))
    if bad:
        print("lpgate missed deliveries in: %s" % ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
