/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch.c: per-database fetch connections, cursors and publishing.
 *
 * Each served database has one lpg_pgasync connection.  On connect it
 * learns the database's Odoo version (ir_module_module, 14 shapes when
 * there is none) and, the first time, its cursor (max(id) of bus_bus):
 * lpg_fetch_conn.c.
 * A fetch is one round trip in a REPEATABLE READ transaction: the
 * snapshot's xmin/xmax, then one page of the rows id > cursor
 * (lpg_fetch_page: a whole notification batch unless it is bigger than a
 * quarter of the ring or 100,000 rows).  The rows stream in (libpq's
 * single-row mode) and each is published as it arrives, the workers told
 * every LPG_FETCH_STREAM_ROWS records, so a big batch is being delivered
 * while PostgreSQL still sends its tail.  lpg_gap decides which may be
 * published; held rows are fetched again after a short delay.
 * Records whose channel or message is not valid JSON are skipped and
 * logged (lpg_fetch_page_push): workers copy that text into their answers
 * verbatim.
 *
 * Ids that go backwards (TRUNCATE ... RESTART IDENTITY, a restore, the
 * database created again): the fetch's first statement also reads
 * bus_bus's oid and the largest id allocated; lpg_fetch_reset decides and
 * tells the workers, and the cursor goes back to 0.
 */

#include "lpg_fetch.h"
#include "lpg_fetch_int.h"
#include "lpg_fetch_page.h"
#include "lpg_fetch_reset.h"
#include "lpg_gap.h"
#include "lpg_pgasync.h"
#include "lpg_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_FETCH_GAP_RETRY   0.05 /* s between fetches while a gap holds */
#define LPG_FETCH_GAP_TIMEOUT 5000 /* ms before a gap is declared final */
/* us from one fetch's start to the next: under a stream of NOTIFYs (one
 * per publishing transaction) one SELECT serves a millisecond of them,
 * not each; a NOTIFY after a quiet spell is fetched at once */
#define LPG_FETCH_SPACING_US 1000
/* records pushed between two doorbells while a page streams in */
#define LPG_FETCH_STREAM_ROWS 256


static void lpg_fetch_result(lpg_pgasync_t *a, PGresult *res);
static void lpg_fetch_done(lpg_pgasync_t *a);
static void lpg_fetch_down(lpg_pgasync_t *a, const char *err);
static void lpg_fetch_db_notify(lpg_pgasync_t *a, const PGnotify *n);
static void lpg_fetch_rows(lpg_fetch_db_t *db, const PGresult *res);
static void lpg_fetch_begin(lpg_fetch_db_t *db, const PGresult *res);
static void lpg_fetch_row(lpg_fetch_db_t *db, const PGresult *res, int r);
static void lpg_fetch_finish(lpg_fetch_db_t *db);
static void lpg_fetch_tell(lpg_fetch_db_t *db);
static bool lpg_fetch_backwards(const lpg_fetch_db_t *db);
static void lpg_fetch_count_held(void);
static void lpg_fetch_kick_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_fetch_again_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_fetch_mark(int idx);
static void lpg_fetch_ring(void);


lpg_fetch_global_t lpg_fetch;


int
lpg_fetch_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
               lpg_ring_t *ring, const int *doorbells, int nslots)
{
    int                 i;
    lpg_fetch_db_t     *db;
    lpg_pgconn_params_t p;

    lpg_fetch.loop = loop;
    lpg_fetch.conf = conf;
    lpg_fetch.shm = shm;
    lpg_fetch.ring = ring;
    lpg_fetch.doorbells = doorbells;
    lpg_fetch.nslots = nslots;
    lpg_fetch.ndbs = shm->header->ndbs;

    lpg_fetch.buf_cap = lpg_ring_max_record(ring);
    lpg_fetch.buf = malloc(lpg_fetch.buf_cap);
    if (lpg_fetch.buf == NULL) {
        lpg_log(LPG_LOG_EMERG, ENOMEM, "malloc(%zu) failed", lpg_fetch.buf_cap);
        return LPG_ERROR;
    }

    ev_init(&lpg_fetch.kick, lpg_fetch_kick_cb);

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        db = &lpg_fetch.dbs[i];
        memset(db, 0, sizeof(*db));
        db->idx = i;
        db->conn.loop = loop;
        db->conn.name = shm->dbs[i].name;
        db->conn.data = db;
        db->conn.ready = lpg_fetch_conn_ready;
        db->conn.result = lpg_fetch_result;
        db->conn.done = lpg_fetch_done;
        db->conn.down = lpg_fetch_down;
        db->conn.notify = lpg_fetch_db_notify;
        ev_init(&db->again, lpg_fetch_again_cb);
        lpg_fetch_quote(db->listen, sizeof(db->listen), conf->listen_channel);
        db->again.data = db;

        lpg_pgconn_params(&p, conf, shm->dbs[i].name, "lpgate master");
        lpg_pgasync_start(&db->conn, &p);
    }

    return LPG_OK;
}


void
lpg_fetch_reconfigure(const lpg_conf_t *conf)
{
    int                 i;
    lpg_pgconn_params_t p;

    lpg_fetch.conf = conf;

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        lpg_pgconn_params(&p, conf, lpg_fetch.shm->dbs[i].name,
                          "lpgate master");

        if (lpg_pgasync_same_params(&p, &lpg_fetch.dbs[i].conn.params)) {
            lpg_pgasync_rebind(&lpg_fetch.dbs[i].conn, &p);

        } else {
            lpg_pgasync_reset(&lpg_fetch.dbs[i].conn, &p);
        }
    }
}


void
lpg_fetch_notify(const char *payload)
{
    int         i;
    bool        mask[LPG_SHM_MAX_DBS];
    const char *names[LPG_SHM_MAX_DBS];

    atomic_fetch_add_explicit(&lpg_fetch.shm->header->notifies, 1,
                              memory_order_relaxed);

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        names[i] = lpg_fetch.shm->dbs[i].name;
        mask[i] = false;
    }

    if (lpg_rpc_payload_dbs(payload, strlen(payload), names, lpg_fetch.ndbs,
                            mask)
        != LPG_OK)
    {
        atomic_fetch_add_explicit(&lpg_fetch.shm->header->bad_payloads, 1,
                                  memory_order_relaxed);
        lpg_log(LPG_LOG_WARN, 0,
                "NOTIFY payload is not a JSON array of channels: %.200s; "
                "fetching every database",
                payload);
        lpg_fetch_all();
        return;
    }

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        if (mask[i]) {
            lpg_fetch_mark(i);
        }
    }
}


void
lpg_fetch_all(void)
{
    int i;

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        lpg_fetch_mark(i);
    }
}


void
lpg_fetch_stop(void)
{
    int i;

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        ev_timer_stop(lpg_fetch.loop, &lpg_fetch.dbs[i].again);
        lpg_pgasync_stop(&lpg_fetch.dbs[i].conn);
    }

    if (lpg_fetch.loop != NULL) {
        ev_timer_stop(lpg_fetch.loop, &lpg_fetch.kick);
    }

    free(lpg_fetch.buf);
    lpg_fetch.buf = NULL;
}


void
lpg_fetch_atfork_child(void)
{
    int i;

    if (lpg_fetch.loop == NULL) {
        return;
    }

    ev_timer_stop(lpg_fetch.loop, &lpg_fetch.kick);

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        ev_timer_stop(lpg_fetch.loop, &lpg_fetch.dbs[i].again);
        lpg_pgasync_forget(&lpg_fetch.dbs[i].conn);
    }
}


/* the fetch runs at the end of this loop iteration, once per batch */
static void
lpg_fetch_mark(int idx)
{
    lpg_fetch.dbs[idx].dirty = true;

    if (lpg_fetch.dbs[idx].notify_us == 0) {
        lpg_fetch.dbs[idx].notify_us = lpg_time_mono_us();
    }

    if (!ev_is_active(&lpg_fetch.kick)) {
        ev_timer_set(&lpg_fetch.kick, 0., 0.);
        ev_timer_start(lpg_fetch.loop, &lpg_fetch.kick);
    }
}


static void
lpg_fetch_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int i;

    for (i = 0; i < lpg_fetch.ndbs; i++) {
        if (lpg_fetch.dbs[i].dirty) {
            lpg_fetch_run(&lpg_fetch.dbs[i]);
        }
    }
}


static void
lpg_fetch_again_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_fetch_db_t *db = w->data;

    db->dirty = true;

    if (db->state == LPG_FETCH_READY && !db->has_bus) {
        /* look for the table again from the start */
        lpg_pgasync_reset(&db->conn, NULL);
        return;
    }

    lpg_fetch_run(db);
}


void
lpg_fetch_run(lpg_fetch_db_t *db)
{
    char    query[1536], high[320];
    int64_t now, wait;

    if (db->state != LPG_FETCH_READY || !lpg_pgasync_idle(&db->conn)) {
        /* dirty stays set: it runs when the connection is ready */
        return;
    }

    if (!db->has_bus) {
        return;
    }

    now = lpg_time_mono_us();
    wait = db->run_us + LPG_FETCH_SPACING_US - now;
    if (wait > 0) {
        /* dirty stays set: the kick runs it */
        if (!ev_is_active(&lpg_fetch.kick)) {
            ev_timer_set(&lpg_fetch.kick, (double) wait / 1e6, 0.);
            ev_timer_start(lpg_fetch.loop, &lpg_fetch.kick);
        }

        return;
    }

    /* the largest id allocated: a sequence is not transactional, so its
     * last value covers the rows of transactions still in progress too */
    if (db->has_seq) {
        snprintf(high, sizeof(high),
                 "(SELECT CASE WHEN is_called THEN last_value "
                 "ELSE last_value - 1 END FROM %s)",
                 db->seq);

    } else {
        snprintf(high, sizeof(high),
                 "(SELECT coalesce(max(id), 0) FROM "
                 "bus_bus)");
    }

    if (lpg_fetch_page_sql(
            query, sizeof(query), high, db->gap.cursor,
            lpg_fetch_page_budget(lpg_fetch.ring),
            lpg_fetch_page_row_cost(lpg_fetch.shm->dbs[db->idx].name))
        != LPG_OK)
    {
        lpg_log(LPG_LOG_ALERT, 0, "bus_bus fetch statement too long");
        return;
    }

    db->dirty = false;
    db->snap_seen = false;
    memset(&db->page, 0, sizeof(db->page));
    db->fetch_notify_us = db->notify_us ? db->notify_us : lpg_time_mono_us();
    db->notify_us = 0;

    if (lpg_pgasync_query_rows(&db->conn, query) == LPG_OK) {
        db->state = LPG_FETCH_RUNNING;
        db->run_us = now;
        atomic_fetch_add_explicit(&lpg_fetch.shm->header->fetches, 1,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&lpg_fetch.shm->dbs[db->idx].fetch_begun, 1,
                                  memory_order_acq_rel);

    } else {
        db->dirty = true;
    }
}


static void
lpg_fetch_result(lpg_pgasync_t *a, PGresult *res)
{
    lpg_fetch_db_t *db = a->data;
    lpg_shm_db_t   *sdb = &lpg_fetch.shm->dbs[db->idx];

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK
        && PQresultStatus(res) != PGRES_SINGLE_TUPLE)
    {
        lpg_log(LPG_LOG_ERR, 0, "database \"%s\": query failed: %s", sdb->name,
                PQresultErrorMessage(res));
        lpg_pgasync_reset(a, NULL);
        return;
    }

    if (db->state != LPG_FETCH_RUNNING) {
        lpg_fetch_conn_result(db, res);
        return;
    }

    lpg_fetch_rows(db, res);
}


/*
 * The fetch's rows as they stream in: the snapshot's, then the page's.
 * Each page row is published at once, unless a gap holds it; every
 * LPG_FETCH_STREAM_ROWS records the workers are told, so a big batch is
 * being delivered while PostgreSQL still sends its tail.
 */
static void
lpg_fetch_rows(lpg_fetch_db_t *db, const PGresult *res)
{
    int r, n = PQntuples(res);

    for (r = 0; r < n; r++) {
        if (!db->snap_seen) {
            lpg_fetch_begin(db, res);
            continue;
        }

        lpg_fetch_row(db, res, r);
    }

    if (db->page.pushed >= LPG_FETCH_STREAM_ROWS) {
        db->page.pushed = 0;
        lpg_fetch_tell(db);
    }
}


/* the first statement: snapshot, table oid, largest id */
static void
lpg_fetch_begin(lpg_fetch_db_t *db, const PGresult *res)
{
    db->snap_seen = true;
    db->fetch_ms = lpg_time_mono_ms();
    db->xmin = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    db->xmax = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    db->snap_oid = (uint32_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
    db->snap_high = PQgetisnull(res, 0, 3) ? 0 : atoll(PQgetvalue(res, 0, 3));

    db->page.after = db->gap.cursor;

    if (lpg_fetch_backwards(db)) {
        /* the rows (id > the old cursor) are dropped; lpg_fetch_done
         * resyncs and the next fetch reads the new table from id 0 */
        db->page.reset = true;
        db->page.stop = true;
        return;
    }

    /* before any record it covers is in the ring */
    lpg_fetch_set_high(db, db->snap_high);
}


static void
lpg_fetch_row(lpg_fetch_db_t *db, const PGresult *res, int r)
{
    int     rc;
    int64_t id;

    if (db->page.stop) {
        return;
    }

    rc = lpg_fetch_page_row(&db->page, res, r,
                            lpg_fetch_page_budget(lpg_fetch.ring), &id);
    if (rc != LPG_OK) {
        if (rc == LPG_ERROR) {
            /* fetch again, from the cursor reached */
            db->dirty = true;
        }

        db->page.stop = true;
        return;
    }

    if (!lpg_fetch_page_gap(&db->page, &db->gap, id, db->fetch_ms, db->xmin,
                            db->xmax, LPG_FETCH_GAP_TIMEOUT, lpg_fetch.shm,
                            db->idx))
    {
        return;
    }

    if (lpg_fetch_page_push(&db->page, res, r, id, lpg_fetch.shm, db->idx,
                            lpg_fetch.ring, lpg_fetch.buf, lpg_fetch.buf_cap,
                            db->fetch_notify_us))
    {
        db->page.pushed++;
        lpg_fetch.pending_doorbell = true;
    }
}


static void
lpg_fetch_done(lpg_pgasync_t *a)
{
    lpg_fetch_db_t *db = a->data;
    lpg_shm_db_t   *sdb = &lpg_fetch.shm->dbs[db->idx];

    if (db->state != LPG_FETCH_RUNNING) {
        lpg_fetch_conn_done(db);
        return;
    }

    db->state = LPG_FETCH_READY;

    if (db->snap_seen && db->page.reset) {
        lpg_fetch_resync(db);

    } else if (db->snap_seen) {
        lpg_fetch_finish(db);
    }

    /* fetches run one at a time: this one is the last begun */
    atomic_store_explicit(&sdb->fetch_done, atomic_load(&sdb->fetch_begun),
                          memory_order_release);

    if (db->dirty) {
        lpg_fetch_run(db);
    }
}


/* the page's rows are in the ring: what comes next, and the cursor */
static void
lpg_fetch_finish(lpg_fetch_db_t *db)
{
    if (db->page.more && !db->page.held) {
        db->dirty = true;

    } else if (db->page.held && !ev_is_active(&db->again)) {
        ev_timer_set(&db->again, LPG_FETCH_GAP_RETRY, 0.);
        ev_timer_start(lpg_fetch.loop, &db->again);
    }

    lpg_fetch_count_held();
    lpg_fetch_tell(db);
}


/*
 * Every row up to the cursor is in the ring: the segment says so, then
 * the workers are rung (when anything was pushed since the last ring)
 */
static void
lpg_fetch_tell(lpg_fetch_db_t *db)
{
    atomic_store_explicit(&lpg_fetch.shm->dbs[db->idx].cursor, db->gap.cursor,
                          memory_order_release);
    lpg_fetch_set_high(db, db->gap.cursor);

    if (lpg_fetch.pending_doorbell) {
        lpg_fetch_ring();
    }
}


static void
lpg_fetch_count_held(void)
{
    int      k;
    uint64_t holding = 0;

    for (k = 0; k < lpg_fetch.ndbs; k++) {
        holding += lpg_fetch.dbs[k].gap.since != 0;
    }

    atomic_store(&lpg_fetch.shm->header->gaps_held, holding);
}


/* did the ids go backwards? (lpg_fetch_reset.h) */
static bool
lpg_fetch_backwards(const lpg_fetch_db_t *db)
{
    return lpg_fetch_reset_seen(db->table_oid, db->snap_oid, db->snap_high,
                                db->gap.cursor, db->has_seq);
}


/*
 * The ids went backwards: the cursor goes back to 0, the workers are told
 * (lpg_fetch_reset_publish), and the next fetch publishes the rows of the
 * new table, every one of which was committed after the reset.
 */
void
lpg_fetch_resync(lpg_fetch_db_t *db)
{
    lpg_fetch_reset_t r;

    r.shm = lpg_fetch.shm;
    r.ring = lpg_fetch.ring;
    r.buf = lpg_fetch.buf;
    r.buf_cap = lpg_fetch.buf_cap;
    r.idx = db->idx;
    r.old_oid = db->table_oid;
    r.new_oid = db->snap_oid;
    r.cursor = db->gap.cursor;
    r.high = db->snap_high;

    memset(&db->page, 0, sizeof(db->page));
    db->table_oid = db->snap_oid;
    db->gap.cursor = 0;
    db->gap.since = 0;
    db->gap.xmax_ref = 0;
    lpg_fetch_count_held();

    if (lpg_fetch_reset_publish(&r) == LPG_OK) {
        lpg_fetch_ring();
    }

    /* the new table's rows, from id 0 */
    db->dirty = true;
}


/* high only grows, except in lpg_fetch_resync */
void
lpg_fetch_set_high(lpg_fetch_db_t *db, int64_t high)
{
    lpg_shm_db_t *sdb = &lpg_fetch.shm->dbs[db->idx];

    if (high > atomic_load_explicit(&sdb->high, memory_order_relaxed)) {
        atomic_store_explicit(&sdb->high, high, memory_order_release);
    }
}


/* one eventfd write per worker and batch */
static void
lpg_fetch_ring(void)
{
    int      i;
    uint64_t one = 1;

    lpg_fetch.pending_doorbell = false;

    atomic_store_explicit(&lpg_fetch.shm->header->rung,
                          lpg_ring_head_seq(lpg_fetch.ring),
                          memory_order_release);
    atomic_fetch_add_explicit(&lpg_fetch.shm->header->doorbells, 1,
                              memory_order_relaxed);

    for (i = 0; i < lpg_fetch.nslots; i++) {
        if (lpg_fetch.doorbells[i] >= 0
            && write(lpg_fetch.doorbells[i], &one, sizeof(one)) == -1
            && errno != EAGAIN)
        {
            lpg_log(LPG_LOG_ALERT, errno, "write(eventfd) failed");
        }
    }
}


/* a NOTIFY in the served database itself: that database is concerned */
static void
lpg_fetch_db_notify(lpg_pgasync_t *a, const PGnotify *n)
{
    lpg_fetch_db_t *db = a->data;

    atomic_fetch_add_explicit(&lpg_fetch.shm->header->notifies, 1,
                              memory_order_relaxed);

    if (strcmp(n->relname, lpg_fetch.conf->listen_channel) == 0) {
        lpg_fetch_mark(db->idx);
    }
}


static void
lpg_fetch_down(lpg_pgasync_t *a, const char *err)
{
    lpg_fetch_db_t *db = a->data;

    if (db->state == LPG_FETCH_RUNNING && db->snap_seen && !db->page.reset) {
        /* the rows this fetch streamed into the ring before it broke are
         * published (the next fetch goes on from the cursor) */
        lpg_fetch_tell(db);
    }

    db->state = LPG_FETCH_DOWN;
    db->has_bus = false;
    memset(&db->page, 0, sizeof(db->page));

    /* dirty: fetch what we missed once the connection is back */
    db->dirty = true;
}
