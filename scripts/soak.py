#!/usr/bin/python3
"""soak.py [--minutes 10] [--polls 10000] [--rate 100] [--channels 1000]
[--record]: the soak test of lpgate (outside CI).

Starts a throw-away PostgreSQL and lpgate (the integration harness), parks
--polls long polls over --channels channels from 4 client processes,
publishes --rate notifications a second (Odoo's way: INSERT + NOTIFY)
round-robin over the channels for --minutes, and churns connections: every
answered poll re-polls on a NEW connection with last = the largest id it
has seen (with the defaults, 1,000 new connections a second, which the
Python clients sustain, so the polls stay parked between samples).

It fails (exit 1) if any client misses an id of its channel, if the RSS of
lpgate's processes drifts by more than 2 % between the end of the warm-up
(a quarter of the run, at least 150 s: the worker history keeps 120 s) and
the end (medians of three samples 10 s apart), or if their open
descriptor count grows (beyond 1 % + 10: churn keeps a few connections in
flight).  Ids are checked per channel over all its clients.  It prints
one summary line.
"""

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
os.environ.setdefault("LPGATE_BIN", str(HERE.parent / "build" / "lpgate"))

import conftest  # noqa: E402  (the harness: Postgres, Gateway)

def client(port, start_last, n, first_channel, channels, stop_at, queue):
    """n polls; returns {channel: [ids...]} through queue."""
    sel = selectors.DefaultSelector()
    seen = {}

    def poll(ch, last):
        body = json.dumps({"params": {"channels": [ch], "last": last}})
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(("POST /longpolling/poll HTTP/1.1\r\nContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%s" % (len(body), body)).encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [ch, bytearray()])

    for i in range(n):
        ch = "soak-%d" % ((first_channel + i) % channels)
        seen.setdefault(ch, {})[i] = []
        poll(ch, start_last)
    # per poller lists: index by socket
    lists = {}
    errors = 0
    while time.time() < stop_at:
        for key, _ in sel.select(0.5):
            ch, buf = key.data
            chunk = key.fileobj.recv(262144)
            if chunk:
                buf.extend(chunk)
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            head, _, payload = bytes(buf).partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
                poll(ch, lists.get(id(key), [start_last])[-1])
                continue
            ids = [x["id"] for x in json.loads(payload)["result"]]
            mine = lists.setdefault(id(key.fileobj), [])
            got = seen.setdefault(ch, {})
            got.setdefault("ids", []).extend(ids)
            last = max(ids) if ids else None
            if last is None:
                # timeout answer: re-poll from what this channel's clients saw
                last = max(got.get("ids", [start_last]) or [start_last])
            poll(ch, last)
    queue.put({"seen": {ch: sorted(set(v.get("ids", [])))
                        for ch, v in seen.items()}, "errors": errors})


def proc_stats(master):
    pids = [master] + [int(p) for p in Path(
        "/proc/%d/task/%d/children" % (master, master)).read_text().split()]
    rss = fds = 0
    for p in pids:
        for line in Path("/proc/%d/status" % p).read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        fds += len(os.listdir("/proc/%d/fd" % p))
    return rss, fds


def record(a, line):
    """Replaces the soak block of docs/benchmarks.md (bench.py keeps it)."""
    import datetime
    import platform
    path = HERE.parent / "docs" / "benchmarks.md"
    begin = "<!-- soak:begin (scripts/soak.py --record) -->"
    end = "<!-- soak:end -->"
    text = path.read_text() if path.exists() else ""
    block = "\n".join([
        begin, "## Soak", "",
        "`/usr/bin/python3 scripts/soak.py --minutes %g --polls %d --rate %g "
        "--channels %d --record`, %s UTC, %d vCPU, Linux %s, lpgate with 2 "
        "workers:" % (
            a.minutes, a.polls, a.rate, a.channels,
            datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M"), os.cpu_count() or 0, platform.release()),
        "", "    " + line, "",
        "RSS and descriptors are the medians of three samples 10 s apart, "
        "after the warm-up and at the end, over lpgate's master and workers "
        "(RSS includes the shared ring, mapped whole at start).", end])
    if begin in text and end in text:
        text = (text[:text.index(begin)] + block
                + text[text.index(end) + len(end):])
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--polls", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--record", action="store_true",
                    help="write the result into docs/benchmarks.md")
    a = ap.parse_args()

    base = tempfile.mkdtemp(prefix="lpgate-soak-")
    os.chmod(base, 0o755)
    pg = conftest.Postgres(base)
    pg.init()
    pg.start()
    gw = None
    try:
        pg.sql("CREATE DATABASE lpgtest")
        pg.sql(conftest.BUS_BUS, dbname="lpgtest")
        tmp = Path(base) / "gw"
        tmp.mkdir()
        gw = conftest.Gateway(pg, tmp, workers=2,
                              extra_args=["--log-level", "notice"])
        gw.wait_ready()
        time.sleep(1)

        duration = a.minutes * 60
        # the worker history keeps 120 s of records: measure after it
        warmup = max(150, duration / 4)
        t0 = time.time()
        stop_at = t0 + duration
        q = multiprocessing.Queue()
        per = a.polls // 4
        procs = [multiprocessing.Process(
            target=client, args=(gw.port, 0, per, i * (a.channels // 4),
                                 a.channels, stop_at + 5, q))
            for i in range(4)]
        for p in procs:
            p.start()

        sent = {}
        conns = (pg.connect("lpgtest"), pg.connect("postgres"))
        n = 0
        samples = []
        next_sample = t0 + warmup
        while time.time() < stop_at:
            ch = "soak-%d" % (n % a.channels)
            bus_id = pg.send("lpgtest", ch, {"n": n}, conns=conns)
            sent.setdefault(ch, []).append(bus_id)
            n += 1
            if time.time() >= next_sample:
                samples.append(proc_stats(gw.pid))
                next_sample += 10
            delay = t0 + n / a.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        # medians of the first and the last three samples: connections in
        # flight come and go with the churn
        med = lambda xs: sorted(xs)[len(xs) // 2]
        warm = (med([x[0] for x in samples[:3]]),
                med([x[1] for x in samples[:3]]))
        end = (med([x[0] for x in samples[-3:]]),
               med([x[1] for x in samples[-3:]]))
        results = [q.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(10)

        missing = 0
        for r in results:
            for ch, ids in r["seen"].items():
                missing += len(set(sent.get(ch, [])) - set(ids))
        errors = sum(r["errors"] for r in results)
        drift = (end[0] - warm[0]) * 100.0 / warm[0]
        # churn keeps a few connections in flight: allow 1 % + 10 of noise
        ok = (missing == 0 and abs(drift) <= 2.0
              and end[1] <= warm[1] * 1.01 + 10)
        line = ("soak: %s minutes=%.1f polls=%d notifications=%d missing=%d "
                "http_errors=%d rss_kib warm=%d end=%d drift=%.2f%% "
                "fds warm=%d end=%d" % ("PASS" if ok else "FAIL", a.minutes,
                                         a.polls, n, missing, errors, warm[0],
                                         end[0], drift, warm[1], end[1]))
        print(line)
        if a.record:
            record(a, line)
        return 0 if ok else 1
    finally:
        if gw is not None:
            gw.stop()
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
