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
works before and after lpgate serves /websocket.  The transports of issue
14 are probed the same way: wsapi-* (proto ws, <path>/ws: a 101),
sse-* (<path>/sse: a 200 text/event-stream) and socketio-* (<path>/socket.io/
over engine.io's websocket: a 101); their nchan peers are nchan's websocket
and EventSource subscribers (lpgate-bench --peer=nchan --proto=ws|sse), and
Socket.IO has none in nginx.  A proto in REQUIRED fails the run when its
route is missing instead of reporting "not available".

Exit status 1 when an lpgate run misses a delivery; nchan's results are
reported, not judged.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path.insert(0, str(TOP / "tests" / "integration"))
sys.path.insert(0, str(HERE))
os.environ.setdefault("LPGATE_BIN", str(TOP / "build" / "lpgate"))

import conftest  # noqa: E402  (Postgres, Gateway)
import bench_targets  # noqa: E402
from bench_probes import PROBES  # noqa: E402

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
        location ~ ^/ws/(.+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
        location ~ ^/sse/(.+)$ {{
            nchan_subscriber eventsource;
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
# [, proto: "odoo" unless given; "odoo-ws" and "socketio" run lpgate only,
# "ws" and "sse" beside nchan's websocket / EventSource subscribers; every
# proto but odoo runs only if lpgate has its route (PROBES)
# [, peers: False for lpgate alone (the 100,000-connection scenarios)]].
# The verdict on each target: scripts/bench_targets.py.
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
     "all delivered, p99 <= 150 ms, at most 2 SELECTs per notification "
     "batch"),
    ("throughput", "throughput: 2,000 polls on 20 channels, publishers as "
     "fast as they can for 60 s", ["--mode=throughput", "--polls=2000",
                                   "--channels=20", "--seconds=60",
                                   "--publishers=2"], 1, True,
     "deliveries/s >= 4x nchan, p99 <= 25 ms"),
    ("scale-100k", "scale: 100,000 polls, 8 workers each side, both cores",
     ["--mode=fanout", "--polls=100000", "--rounds=3", "--idle-seconds=5",
      "--timeout=120"], 8, False,
     "all delivered, p99 <= 1 s, idle CPU < 1 %, RSS <= 1 KiB per poll"),
    ("ws-fanout-1k", "websocket fanout: 1,000 sockets on one channel, "
     "1 worker on CPU 0 (Odoo 16+ /websocket)",
     ["--mode=fanout", "--polls=1000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered", "odoo-ws"),
    ("ws-fanout-10k", "websocket fanout: 10,000 sockets on one channel, "
     "1 worker on CPU 0 (Odoo 16+ /websocket)",
     ["--mode=fanout", "--polls=10000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered, p99 <= 65 ms; CPU <= 6.5 us per delivery; "
     "RSS <= 1 KiB per socket", "odoo-ws"),
    ("ws-private-10k", "websocket private: 10,000 sockets on 10,000 "
     "channels, one message each in one transaction, 1 worker on CPU 0 "
     "(Odoo 16+ /websocket)", ["--mode=private", "--polls=10000",
                               "--rounds=5"], 1, True,
     "all delivered, p99 <= 90 ms; CPU <= 8 us per delivery", "odoo-ws"),
    ("ws-scale-100k", "websocket scale: 100,000 sockets (Odoo 16+ "
     "/websocket) on one channel, 8 workers, both cores, parked through "
     "the 45 s pings", ["--mode=fanout", "--polls=100000", "--rounds=3",
                        "--idle-seconds=50", "--timeout=120"], 8, False,
     "all delivered, p99 <= 1 s, idle CPU < 1 % with the pings running",
     "odoo-ws", False),
    ("wsapi-fanout-1k", "plain WebSocket API fanout: 1,000 sockets on one "
     "channel, 1 worker each side (lpgate <path>/ws, nchan websocket "
     "subscriber)", ["--mode=fanout", "--polls=1000", "--rounds=10",
                     "--idle-seconds=2"], 1, True, "all delivered", "ws"),
    ("wsapi-fanout-10k", "plain WebSocket API fanout: 10,000 sockets on one "
     "channel, 1 worker each side (lpgate <path>/ws, nchan websocket "
     "subscriber)", ["--mode=fanout", "--polls=10000", "--rounds=10",
                     "--idle-seconds=2"], 1, True,
     "all delivered, p99 <= 65 ms; CPU <= 6.5 us per delivery; RSS <= 1 KiB "
     "per socket", "ws"),
    ("wsapi-private-10k", "plain WebSocket API private: 10,000 sockets on "
     "10,000 channels, 1 worker each side (lpgate: one transaction; nchan: "
     "10,000 pipelined publishes)", ["--mode=private", "--polls=10000",
                                     "--rounds=5"], 1, True,
     "all delivered, p99 <= 90 ms; CPU <= 8 us per delivery", "ws"),
    ("sse-fanout-1k", "Server-Sent Events fanout: 1,000 streams on one "
     "channel, 1 worker each side (lpgate <path>/sse, nchan EventSource)",
     ["--mode=fanout", "--polls=1000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered", "sse"),
    ("sse-fanout-10k", "Server-Sent Events fanout: 10,000 streams on one "
     "channel, 1 worker each side (lpgate <path>/sse, nchan EventSource)",
     ["--mode=fanout", "--polls=10000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered; p99 and CPU per delivery within 1.2x of "
     "wsapi-fanout-10k's lpgate figures, CPU <= 9.5 us per delivery (2x "
     "ahead of Node.js Socket.IO's 19.1)", "sse"),
    ("socketio-fanout-1k", "Socket.IO fanout: 1,000 clients (engine.io "
     "websocket) on one channel, 1 worker on CPU 0",
     ["--mode=fanout", "--polls=1000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered", "socketio"),
    ("socketio-fanout-10k", "Socket.IO fanout: 10,000 clients (engine.io "
     "websocket) on one channel, 1 worker on CPU 0",
     ["--mode=fanout", "--polls=10000", "--rounds=10", "--idle-seconds=2"],
     1, True, "all delivered; p99 and CPU per delivery within 1.2x of "
     "wsapi-fanout-10k's lpgate figures, CPU <= 9.5 us per delivery (2x "
     "ahead of Node.js Socket.IO's 19.1)", "socketio"),
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
    ("wsapi-fanout-1k", "plain WebSocket API fanout: 1,000 sockets on one "
     "channel, 1 worker", ["--mode=fanout", "--polls=1000", "--rounds=3"],
     1, True, "all delivered", "ws"),
    ("sse-fanout-1k", "Server-Sent Events fanout: 1,000 streams on one "
     "channel, 1 worker", ["--mode=fanout", "--polls=1000", "--rounds=3"],
     1, True, "all delivered", "sse"),
    ("socketio-fanout-1k", "Socket.IO fanout: 1,000 clients on one channel, "
     "1 worker", ["--mode=fanout", "--polls=1000", "--rounds=3"], 1, True,
     "all delivered", "socketio"),
]

# protos whose lpgate route must exist: a failed probe fails the run (and
# tests/integration/test_bench_transports.py instead of skipping).
REQUIRED = {"odoo-ws", "ws", "sse", "socketio"}

# nchan's peer of a proto: lpgate-bench arguments (none: no nchan run)
NCHAN_PEER = {"odoo": ["--proto=nchan"],
              "ws": ["--proto=ws", "--peer=nchan"],
              "sse": ["--proto=sse", "--peer=nchan"]}




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


# Node.js peers of the WebSocket and Socket.IO scenarios (bench/peers/,
# npm ws and socket.io, fed by PostgreSQL LISTEN): lpgate-bench --proto
# -> (label, script)
PEERS = {
    "odoo-ws": [("node ws", "peer_ws.js")],
    "ws": [("node ws", "peer_ws.js")],
    "socketio": [("node Socket.IO", "peer_socketio.js")],
}
PEERS_DIR = TOP / "bench" / "peers"


class NodePeer:
    """One Node.js peer server, on the server's CPU when pinned."""

    def __init__(self, base, script, pg, pinned):
        self.dir = Path(tempfile.mkdtemp(prefix="peer-", dir=base))
        self.port = conftest.free_port()
        self.proc = subprocess.Popen(
            ["node", str(PEERS_DIR / script), "--port=%d" % self.port,
             "--dsn=" + pg.dsn("lpgtest"), "--listen-dsn=" + pg.dsn()],
            stdout=subprocess.PIPE, stderr=open(self.dir / "stderr", "w"),
            text=True, preexec_fn=pin(SERVER_CPU) if pinned else None)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.stop()
            raise RuntimeError("%s did not start: %s" % (
                script, (self.dir / "stderr").read_text()[-300:]))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_peers(pg, base, args, proto, name, pinned, log):
    """Each Node.js peer of proto, with the scenario's arguments."""
    out = {}
    if not (PEERS_DIR / "node_modules").is_dir():
        print("peers: bench/peers/node_modules is missing (scripts/deps.sh)",
              flush=True)
        return out
    for label, script in PEERS.get(proto, []):
        try:
            peer = NodePeer(base, script, pg, pinned)
        except RuntimeError as e:
            out[label] = {"complete": False, "error": str(e)}
            continue
        try:
            out[label] = run_bench(
                args + ["--proto=" + proto, "--port=%d" % peer.port,
                        "--dsn=" + pg.dsn("lpgtest"), "--pid=%d" % peer.pid,
                        "--label=%s %s" % (label, name)], log)
        finally:
            peer.stop()
    return out


REPEAT = 1


# counts summed over the runs (so "delivered" is every run's), and the
# figures only the first run measures: the same server serves every run,
# so its memory grew in the first one only
SUMMED = ("received", "expected", "errors", "duplicates", "replies",
          "published")
FIRST_RUN = ("rss_kib_before", "rss_kib_after", "rss_kib_per_poll")


def run_bench(args, log):
    """lpgate-bench REPEAT times with args on the same server: the median
    of each figure, the counts summed (a missed delivery, an error or a
    duplicate in any run stays in), the memory figures of the first run"""
    runs = [run_bench_once(args, log) for _ in range(REPEAT)]
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for k, v in runs[0].items():
        vals = [r.get(k) for r in runs]
        if k in FIRST_RUN or isinstance(v, bool) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool)
                for x in vals):
            continue
        if k in SUMMED:
            out[k] = sum(vals)
        elif k == "exit":
            out[k] = max(vals)
        else:
            out[k] = statistics.median(vals)
    out["complete"] = all(r.get("complete") for r in runs)
    out["runs"] = len(runs)
    return out


def run_bench_once(args, log):
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


NO_PEERS = False


def run_scenario(pg, base, scen, log):
    name, title, args, workers, pinned, target = scen[:6]
    proto = scen[6] if len(scen) > 6 else "odoo"
    peers = scen[7] if len(scen) > 7 else True
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
        why = PROBES[proto](gw.port) if proto in PROBES else None
        if why is not None and proto in REQUIRED:
            print("%s: %s" % (name, why), flush=True)
            out["lpgate"] = {"complete": False, "error": why}
        elif why is not None:
            print("%s: not available: %s" % (name, why), flush=True)
            out["lpgate"] = {"complete": False, "not_available": why}
        else:
            out["lpgate"] = run_bench(
                args + ["--proto=" + proto, "--port=%d" % gw.port,
                        "--dsn=" + pg.dsn("lpgtest"), "--pid=%d" % gw.pid,
                        "--label=lpgate " + name], log)
            # REPEAT runs on this gateway: the mean per run
            out["lpgate"]["db_queries"] = q = (db_queries(pg) - q0) / REPEAT
            if out["lpgate"].get("rounds"):
                out["lpgate"]["db_per_batch"] = q / out["lpgate"]["rounds"]
    finally:
        gw.stop()

    if out["lpgate"].get("not_available"):
        out["nchan"] = {"not_applicable": True}
        return out
    if not NO_PEERS and peers and proto in PEERS:
        out["peers"] = run_peers(pg, base, args, proto, name, pinned, log)
    if NO_PEERS or not peers or proto not in NCHAN_PEER:
        out["nchan"] = {"not_applicable": True}
        return out

    ng = Nginx(base, workers, pinned)
    try:
        out["nchan"] = run_bench(
            args + NCHAN_PEER[proto] + ["--port=%d" % ng.port,
                                        "--pid=%d" % ng.pid,
                                        "--label=nchan " + name], log)
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
SCALEOUT_BEGIN = "<!-- scaleout:begin (scripts/scaleout.py) -->"
SCALEOUT_END = "<!-- scaleout:end -->"


def kept_sections(path):
    """The blocks of the existing report that other scripts measured
    (scripts/scaleout.py, scripts/soak.py --record), kept as they are"""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    out = []
    for begin, end, missing in (
            (SCALEOUT_BEGIN, SCALEOUT_END, None),
            (SOAK_BEGIN, SOAK_END, "## Soak\n\nNot run yet.")):
        if begin in text and end in text:
            out.append(text[text.index(begin):text.index(end) + len(end)]
                       + "\n")
        elif missing:
            out.append("%s\n%s\n%s\n" % (begin, missing, end))
    return "\n".join(out)


def peer_table(rows, lp, label, res):
    """lpgate beside one Node.js peer: the same rows as nchan's table."""
    lines = ["", "Against %s (bench/peers/, one Node.js process, fed by "
             "PostgreSQL LISTEN):" % label, "",
             "| | lpgate | %s | ratio |" % label, "|---|---|---|---|"]
    for name, key, _, higher in rows:
        a, b = lp.get(key), res.get(key)
        if key == "received":
            a = "%s / %s" % (lp.get("received", "-"), lp.get("expected", "-"))
            b = "%s / %s" % (res.get("received", "-"),
                             res.get("expected", "-"))
            rt = ""
        elif higher is None:
            rt = ""
        elif higher:
            rt = ratio(a, b)
        else:
            rt = ratio(b, a)
        if a is None and b is None:
            continue
        lines.append("| %s | %s | %s | %s |" % (name, fmt(a), fmt(b), rt))
    if not res.get("complete", False):
        lines += ["", "**%s did not complete this scenario** (exit %s%s)."
                  % (label, res.get("exit"),
                     ": " + res["error"] if res.get("error") else "")]
    return lines


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
        % ("bash scripts/bench.sh" + (" --quick" if quick else "")
           + (" --repeat %d" % REPEAT if REPEAT != (1 if quick else 3)
              else ""),
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
        "- each figure: the median of %d run(s) of lpgate-bench per server "
        "and scenario on the same server process; deliveries, errors and "
        "duplicates summed over the runs; RSS from the first run (the "
        "memory the connections took)" % REPEAT,
        "",
    ]
    if not quick:
        lines += bench_targets.summary_table(
            {r["name"]: r for r in results}, [r["name"] for r in results])
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
        marks = bench_targets.verdicts({x["name"]: x for x in results},
                                       r["name"]) if not quick else []
        if marks:
            lines += ["- %s: %s (lpgate %s)" % (v, want, got)
                      for want, got, v in marks] + [""]
        if lp.get("not_available"):
            lines += ["Not available: %s (probed before the run)."
                      % lp["not_available"], ""]
            continue
        if nc.get("not_applicable"):
            lines += ["lpgate only: lpgate-bench --proto=%s (nchan does not "
                      "speak %s)." % (r["proto"], "Socket.IO"
                                      if r["proto"] == "socketio"
                                      else "Odoo's protocol"), ""]
        if r["proto"] in ("odoo-ws", "ws", "socketio"):
            lines += ["\"HTTP replies\" counts the 101 answers and the "
                      "notification frames%s." % (
                          " (nchan: one frame per message)"
                          if r["proto"] == "ws" else ""), ""]
        elif r["proto"] == "sse":
            lines += ["\"HTTP replies\" counts the 200 answers and the "
                      "events (lpgate: one per record; nchan: one per "
                      "message).", ""]
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
        for label, res in r.get("peers", {}).items():
            lines += peer_table(rows, lp, label, res)
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
    lines.append(kept_sections(path))
    Path(path).write_text("\n".join(lines))
    print("wrote %s" % path)



@contextlib.contextmanager
def bench_postgres(prefix):
    """A throw-away PostgreSQL for a benchmark run (also scaleout.py's):
    pinned to LOAD_CPU, database lpgtest with bus_bus and
    pg_stat_statements; yields (pg, its base directory), removed after."""
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    pg = conftest.Postgres(base)
    pg.init()
    with open(os.path.join(pg.data, "postgresql.conf"), "a") as f:
        f.write("max_connections = 200\nsynchronous_commit = off\n")
    pg.start()
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
        yield pg, base
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--no-peers", action="store_true",
                    help="lpgate only (profiling runs): no nchan, no peers")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per server and scenario, medians reported "
                    "(3; --quick: 1)")
    a = ap.parse_args()
    global REPEAT
    REPEAT = a.repeat or (1 if a.quick else 3)
    scenarios = QUICK if a.quick else SCENARIOS
    global NO_PEERS
    NO_PEERS = a.no_peers
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

    results, log = [], []
    with bench_postgres("lpgate-bench-") as (pg, base):
        for scen in scenarios:
            results.append(run_scenario(pg, base, scen, log))
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
