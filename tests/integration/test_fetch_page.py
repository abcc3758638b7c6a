"""The master's bus_bus fetch reads a notification batch in pages
(master/lpg_fetch_page.c): one page, so two SELECTs (snapshot and rows),
for a 10,000-row transaction; several pages when the batch is bigger than
a quarter of the ring, with nothing lost.

The SELECTs are counted with pg_stat_statements (the fixture loads it).
"""

import json
import time

from cluster import metric
from conftest import free_port, wait_until


def start(gateway, extra=(), config=None):
    gw = gateway(workers=1, config=config,
                 extra_args=["--log-level", "info"] + list(extra))
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    return gw


def fetch_selects(pg):
    """Calls of lpgate's two fetch SELECTs in lpgtest."""
    rows = pg.sql("SELECT query, calls FROM pg_stat_statements WHERE "
                  "dbid = (SELECT oid FROM pg_database WHERE datname = "
                  "'lpgtest') AND (query ILIKE '%txid_current_snapshot%' "
                  "OR query ILIKE '%FROM bus_bus WHERE id >%')")
    return sum(c for _, c in rows), rows


def publish_batch(pg, n, prefix, size=10):
    """n rows on n channels in one transaction, one NOTIFY after the
    commit (as lpgate-bench's private mode); returns the rows' ids."""
    with pg.connect("lpgtest") as conn:
        rows = conn.execute(
            "INSERT INTO bus_bus (channel, message) SELECT "
            "'\"%s' || i || '\"', '\"' || repeat('x', %d) || '\"' "
            "FROM generate_series(0, %d) i RETURNING id"
            % (prefix, size, n - 1)).fetchall()
    pg.sql("SELECT pg_notify('imbus', %s)", (json.dumps(["%s0" % prefix]),))
    return sorted(r[0] for r in rows)


def last_id(pg):
    return pg.sql("SELECT coalesce(max(id), 0) FROM bus_bus",
                  dbname="lpgtest")[0][0]


def test_ten_thousand_rows_in_one_transaction_are_two_selects(pg, gateway):
    """Paging at 5,000 rows took three fetches (6 SELECTs) for 10,000
    rows: 5,000, 5,000 and an empty one."""
    gw = start(gateway)
    base = last_id(pg)
    pg.sql("SELECT pg_stat_statements_reset()")

    future = gw.poll_async(["bp9999"], last=base)
    ids = publish_batch(pg, 10000, "bp")
    answer = future.result(20)
    assert [n["id"] for n in answer["result"]] == [ids[-1]]
    # every row went through the ring: a poll from base gets its row
    first = gw.poll(["bp0", "bp5000"], last=base)
    assert [n["id"] for n in first["result"]] == [ids[0], ids[5000]]

    # one more notification, fetched after anything the batch started
    after = pg.send("lpgtest", "bp-after", 1)
    wait_until(lambda: gw.poll(["bp-after"], last=after - 1,
                               timeout=5)["result"], 10)
    calls, rows = fetch_selects(pg)
    print("fetch SELECTs for the batch and one more notification:", calls,
          rows)
    assert calls <= 4


def test_batch_bigger_than_a_page_is_paged_and_delivered(pg, gateway):
    """A 64 KiB ring takes at most 16 KiB of rows per page: 2,000 rows of
    about 300 bytes are many pages, every row is still delivered (from
    the ring, or from the database for a worker the pages lapped)."""
    gw = start(gateway, config='ring_size = "64k";\n')
    base = last_id(pg)
    pg.sql("SELECT pg_stat_statements_reset()")

    futures = {i: gw.poll_async(["bq%d" % i], last=base)
               for i in (0, 777, 1999)}
    ids = publish_batch(pg, 2000, "bq", size=200)
    for i, f in futures.items():
        got = f.result(20)["result"]
        # [] is a lapped worker's answer: the client polls again (Odoo's
        # client does), and the database answers
        if not got:
            got = gw.poll(["bq%d" % i], last=base)["result"]
        assert [n["id"] for n in got] == [ids[i]], i

    everything = gw.poll(["bq%d" % i for i in range(0, 2000, 50)], last=base)
    assert [n["id"] for n in everything["result"]] == ids[::50]

    calls, _ = fetch_selects(pg)
    # 2,000 * (200 + ~90) bytes in pages of 16 KiB
    assert calls >= 2 * 30, calls


def test_a_stream_of_notifies_is_fetched_once_a_millisecond_at_most(
        pg, gateway):
    """One NOTIFY per publishing transaction, faster than one a
    millisecond: a fetch serves every NOTIFY of the millisecond since the
    last one began (LPG_FETCH_SPACING_US), not each; nothing is lost."""
    gw = start(gateway)
    base = last_id(pg)
    pg.sql("SELECT pg_stat_statements_reset()")

    t0 = time.monotonic()
    with pg.connect("lpgtest") as conn:
        conn.autocommit = True
        for i in range(500):
            conn.execute("INSERT INTO bus_bus (channel, message) VALUES "
                         "('\"bs\"', '%d'); NOTIFY imbus, '[\"bs\"]'" % i)
    last = last_id(pg)
    got = []
    while not got or got[-1]["id"] < last:
        got += gw.poll(["bs"], last=got[-1]["id"] if got else base,
                       timeout=20)["result"]
    elapsed_ms = (time.monotonic() - t0) * 1000

    assert [n["message"] for n in got] == list(range(500))
    calls, rows = fetch_selects(pg)
    fetches = calls / 2
    # one round trip per transaction outruns one a millisecond here
    # (without the spacing: 254 and 280 fetches in 120 ms); whatever the
    # machine's speed, the fetches keep to one a millisecond
    assert fetches <= elapsed_ms + 2, (fetches, elapsed_ms, rows)


def test_a_big_batch_reaches_the_workers_while_it_streams_in(pg, gateway):
    """The page's rows are pushed into the ring as they arrive (libpq's
    single-row mode) and the workers are told every 256 records, so they
    start on a 10,000-row batch while PostgreSQL still sends its tail: one
    fetch, dozens of doorbells.  (Pushed only once the page was complete,
    the batch was one doorbell.)  Every row still arrives once, in order."""
    gw = start(gateway, extra=["--admin-port", str(free_port())])
    base = last_id(pg)
    before = (metric(gw, "lpgate_fetches_total"),
              metric(gw, "lpgate_doorbells_total"))

    future = gw.poll_async(["bs9999"], last=base)
    ids = publish_batch(pg, 10000, "bs")
    answer = future.result(20)
    assert [n["id"] for n in answer["result"]] == [ids[-1]]

    fetches = metric(gw, "lpgate_fetches_total") - before[0]
    doorbells = metric(gw, "lpgate_doorbells_total") - before[1]
    print("fetches", fetches, "doorbells", doorbells)
    assert fetches <= 2
    assert doorbells >= 10000 // 256

    channels = ["bs%d" % i for i in range(0, 10000, 97)]
    got = gw.poll(channels, last=base)["result"]
    assert [n["id"] for n in got] == [ids[i] for i in range(0, 10000, 97)]
