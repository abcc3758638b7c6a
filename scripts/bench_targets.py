"""bench_targets.py: the targets of issue 16, scenario by scenario, and the
verdict of a run on each (met, not met, not measured), for scripts/bench.py's
report.

A target is a bound on one figure of lpgate's summary line (lpgate-bench's
SUMMARY keys, plus bench.py's db_per_batch).  The bound is a number, or is
computed from the same run: a multiple of nchan's figure in that scenario,
of lpgate's figure in another scenario, or of a Node.js peer's.  Nothing
here runs anything: it reads the results bench.py collected.
"""

# the Node.js Socket.IO server's CPU per delivery that issue 16 measured,
# used when this run has no figure of its own for it
NODE_SIO_US = 19.1


def _lp(results, scen, key):
    r = results.get(scen, {}).get("lpgate", {})
    return r.get(key) if r.get("complete") else None


def _nchan(results, scen, key):
    r = results.get(scen, {}).get("nchan", {})
    return r.get(key) if r.get("complete") else None


def _node_sio_us(results):
    r = results.get("socketio-fanout-10k", {}).get("peers", {}).get(
        "node Socket.IO", {})
    v = r.get("cpu_us_per_delivery") if r.get("complete") else None
    return (v, "Node.js Socket.IO in this run") if v else (
        NODE_SIO_US, "Node.js Socket.IO as issue 16 measured it")


# each bound: (key, "<=" | ">=" | "<", bound(results, scen) -> (value, why))
def _num(v):
    return lambda results, scen: (v, None)


def _times_nchan(f):
    return lambda results, scen: (
        None if _nchan(results, scen, "deliveries_per_s") is None
        else f * _nchan(results, scen, "deliveries_per_s"),
        "%gx nchan's in this run" % f)


def _times_lpgate(f, other, key):
    return lambda results, scen: (
        None if _lp(results, other, key) is None
        else f * _lp(results, other, key),
        "%gx lpgate's %s in this run" % (f, other))


def _half_node_sio(results, scen):
    v, why = _node_sio_us(results)
    return v / 2, "half of " + why


DELIVERED = ("received", "==", None)


def _poll_fanout(p99):
    return [DELIVERED, ("p99_ms", "<=", _num(p99)),
            ("cpu_us_per_delivery", "<=", _num(12)),
            ("rss_kib_per_poll", "<=", _num(1))]


def _ws_fanout():
    return [DELIVERED, ("p99_ms", "<=", _num(65)),
            ("cpu_us_per_delivery", "<=", _num(6.5)),
            ("rss_kib_per_poll", "<=", _num(1))]


def _ws_private():
    return [DELIVERED, ("p99_ms", "<=", _num(90)),
            ("cpu_us_per_delivery", "<=", _num(8))]


def _like_ws():
    return [DELIVERED,
            ("p99_ms", "<=", _times_lpgate(1.2, "wsapi-fanout-10k", "p99_ms")),
            ("cpu_us_per_delivery", "<=",
             _times_lpgate(1.2, "wsapi-fanout-10k", "cpu_us_per_delivery")),
            ("cpu_us_per_delivery", "<=", _half_node_sio)]


TARGETS = {
    "fanout-10k": _poll_fanout(75),
    "private-10k": [DELIVERED, ("p99_ms", "<=", _num(150)),
                    ("db_per_batch", "<=", _num(2))],
    "throughput": [DELIVERED, ("deliveries_per_s", ">=", _times_nchan(4)),
                   ("p99_ms", "<=", _num(25))],
    "scale-100k": [DELIVERED, ("p99_ms", "<=", _num(1000)),
                   ("idle_cpu_pct", "<", _num(1)),
                   ("rss_kib_per_poll", "<=", _num(1))],
    "ws-fanout-10k": _ws_fanout(),
    "wsapi-fanout-10k": _ws_fanout(),
    "ws-private-10k": _ws_private(),
    "wsapi-private-10k": _ws_private(),
    "ws-scale-100k": [DELIVERED, ("p99_ms", "<=", _num(1000)),
                      ("idle_cpu_pct", "<", _num(1))],
    "sse-fanout-10k": _like_ws(),
    "socketio-fanout-10k": _like_ws(),
}

NAMES = {"received": "delivered", "p99_ms": "p99 (ms)",
         "cpu_us_per_delivery": "server CPU per delivery (us)",
         "rss_kib_per_poll": "RSS per connection (KiB)",
         "idle_cpu_pct": "server CPU while parked (%)",
         "db_per_batch": "SELECTs per notification batch",
         "deliveries_per_s": "deliveries/s"}


def _fmt(v):
    if isinstance(v, float):
        return ("%.0f" % v) if abs(v) >= 100 else ("%.2f" % v)
    return str(v)


def verdicts(results, scen):
    """[(target text, measured text, "met" | "not met" | "not measured")]
    of one scenario; results: scenario name -> bench.py's result."""
    out = []
    r = results.get(scen, {}).get("lpgate", {})
    for key, op, bound in TARGETS.get(scen, []):
        if key == "received":
            want = "every message delivered, once"
            if "received" not in r:
                out.append((want, "-", "not measured"))
                continue
            ok = (r.get("received") == r.get("expected")
                  and not r.get("duplicates") and not r.get("errors"))
            out.append((want, "%s of %s, %s duplicates" % (
                r.get("received"), r.get("expected"),
                r.get("duplicates", 0)), "met" if ok else "not met"))
            continue
        b, why = bound(results, scen)
        want = "%s %s %s%s" % (NAMES.get(key, key), op,
                               "?" if b is None else _fmt(b),
                               " (%s)" % why if why else "")
        v = r.get(key)
        if v is None or b is None:
            out.append((want, "-" if v is None else _fmt(v), "not measured"))
            continue
        ok = {"<=": v <= b, ">=": v >= b, "<": v < b}[op]
        out.append((want, _fmt(v), "met" if ok else "not met"))
    return out


def summary_table(results, order):
    """The report's table of every target, in scenario order."""
    lines = ["## Targets (issue 16), met or not in this run", "",
             "| scenario | target | lpgate | verdict |", "|---|---|---|---|"]
    n = {"met": 0, "not met": 0, "not measured": 0}
    for scen in order:
        for want, got, v in verdicts(results, scen):
            n[v] += 1
            lines.append("| %s | %s | %s | %s |" % (
                scen, want, got, "**%s**" % v if v != "met" else v))
    lines += ["", "%d met, %d not met, %d not measured." % (
        n["met"], n["not met"], n["not measured"]), ""]
    if n["not met"]:
        lines += [WHY_NOT_MET, ""]
    return lines


# where the measurements behind the targets this machine does not reach
# are written up
WHY_NOT_MET = (
    "Why a target is not met, measured: docs/perf-notes.md, section I "
    "(ws-scale-100k's idle CPU: one PING round trip per socket per 45 s "
    "costs ~9.7 us of kernel time, 1.8 % of a core for 100,000 sockets) "
    "and section L (throughput's p99: the load generator's cycle on the "
    "CPU it shares with PostgreSQL, ~45 ms at any publish rate).")
