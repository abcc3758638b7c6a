/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_page.c: one page of the master's bus_bus fetch (see the
 * header): its SQL, its rows, and pushing them into the ring.
 *
 * The page SELECT numbers its bytes in the database: a running sum of
 * each row's channel and message lengths plus the record's own bytes
 * (ROWS UNBOUNDED PRECEDING over the id index: streamed, so the LIMIT
 * still stops the scan), and keeps the rows that start under the budget.
 * The LIMIT reads one row past LPG_FETCH_PAGE_ROWS: that row is never
 * published, it only says that more follow.
 */

#include "lpg_fetch_page.h"
#include "lpg_json.h"
#include "lpg_record.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* a record's bytes besides its strings: the ring's 16-byte header, the
 * msgpack array, three integers and four string headers, 8-byte padding */
#define LPG_FETCH_PAGE_RECORD 72


static void lpg_fetch_page_refused(const char *db, const lpg_record_t *rec);


size_t
lpg_fetch_page_budget(const lpg_ring_t *ring)
{
    /* lpg_ring_max_record is a quarter of the data area */
    return lpg_ring_max_record(ring);
}


size_t
lpg_fetch_page_row_cost(const char *db)
{
    return LPG_FETCH_PAGE_RECORD + strlen(db);
}


int
lpg_fetch_page_sql(char *out, size_t cap, const char *high, int64_t cursor,
                   size_t budget, size_t row_cost)
{
    int n;

    n = snprintf(out, cap,
                 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                 "SELECT txid_snapshot_xmin(txid_current_snapshot()), "
                 "txid_snapshot_xmax(txid_current_snapshot()), "
                 "'bus_bus'::regclass::oid, %s; "
                 "SELECT id, channel, message, us, run FROM ("
                 "SELECT id, channel, message, "
                 "(extract(epoch FROM create_date) * 1000000)::int8 AS us, "
                 "sum(coalesce(octet_length(channel), 0) "
                 "+ coalesce(octet_length(message), 0) + %zu) "
                 "OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS run, "
                 "coalesce(octet_length(channel), 0) "
                 "+ coalesce(octet_length(message), 0) + %zu AS cost "
                 "FROM bus_bus WHERE id > %lld ORDER BY id LIMIT %d) p "
                 "WHERE run - cost < %zu ORDER BY id; "
                 "COMMIT",
                 high, row_cost, row_cost, (long long) cursor,
                 LPG_FETCH_PAGE_ROWS + 1, budget);

    return n > 0 && (size_t) n < cap ? LPG_OK : LPG_ERROR;
}


int
lpg_fetch_page_row(lpg_fetch_page_t *p, const PGresult *res, int r,
                   size_t budget, int64_t *id)
{
    if (PQnfields(res) != 5) {
        lpg_log(LPG_LOG_ERR, 0, "bus_bus page has %d columns, not 5",
                PQnfields(res));
        return LPG_ERROR;
    }

    if (p->seen++ == LPG_FETCH_PAGE_ROWS) {
        p->more = true;
        return LPG_DONE;
    }

    /* the last row reached the budget: the SQL may have cut after it */
    if ((size_t) atoll(PQgetvalue(res, r, 4)) >= budget) {
        p->more = true;
    }

    *id = atoll(PQgetvalue(res, r, 0));

    return LPG_OK;
}


bool
lpg_fetch_page_gap(lpg_fetch_page_t *p, lpg_gap_t *g, int64_t id,
                   int64_t now_ms, uint64_t xmin, uint64_t xmax,
                   int64_t timeout_ms, lpg_shm_t *shm, int idx)
{
    int         closed;
    bool        held;
    const char *db = shm->dbs[idx].name;

    (void) lpg_gap_scan(g, &id, 1, now_ms, xmin, xmax, timeout_ms, &held,
                        &closed);

    if (closed == 1) {
        atomic_fetch_add(&shm->header->gaps_final, 1);
        lpg_log(LPG_LOG_INFO, 0,
                "database \"%s\": bus ids %lld-%lld never committed (rolled "
                "back)",
                db, (long long) g->last_from, (long long) g->last_to);

    } else if (closed == 2) {
        atomic_fetch_add(&shm->header->gaps_forced, 1);
        lpg_log(LPG_LOG_WARN, 0,
                "database \"%s\": bus ids %lld-%lld still uncommitted after "
                "%lld ms, moving on without them",
                db, (long long) g->last_from, (long long) g->last_to,
                (long long) timeout_ms);
    }

    if (held) {
        /* this row and the rest wait for the gap before them */
        p->held = true;
        p->stop = true;
    }

    return !held;
}


bool
lpg_fetch_page_push(const lpg_fetch_page_t *p, const PGresult *res, int r,
                    int64_t id, lpg_shm_t *shm, int idx, lpg_ring_t *ring,
                    char *buf, size_t buf_cap, int64_t notify_us)
{
    size_t        len;
    lpg_record_t  rec;
    lpg_shm_db_t *sdb = &shm->dbs[idx];

    if (id <= p->after) {
        return false;
    }

    memset(&rec, 0, sizeof(rec));
    rec.database = sdb->name;
    rec.database_len = strlen(sdb->name);
    rec.notify_us = notify_us;
    rec.id = id;
    rec.channel = PQgetvalue(res, r, 1);
    rec.channel_len = PQgetlength(res, r, 1);
    rec.message = PQgetvalue(res, r, 2);
    rec.message_len = PQgetlength(res, r, 2);
    rec.create_us = atoll(PQgetvalue(res, r, 3));

    /* the check allocates nothing; jansson, on the rare row it refuses,
     * only says why */
    if (!lpg_json_check(rec.channel, rec.channel_len)
        || !lpg_json_check(rec.message, rec.message_len))
    {
        lpg_fetch_page_refused(sdb->name, &rec);
        return false;
    }

    if (lpg_record_encode(&rec, buf, buf_cap, &len) != LPG_OK
        || lpg_ring_push(ring, buf, len) != LPG_OK)
    {
        lpg_log(LPG_LOG_ERR, 0,
                "database \"%s\": bus id %lld skipped, %zu bytes do not "
                "fit the ring's record limit",
                sdb->name, (long long) rec.id,
                rec.channel_len + rec.message_len);
        return false;
    }

    atomic_fetch_add_explicit(&shm->header->records, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&shm->header->ring_bytes, len,
                              memory_order_relaxed);

    return true;
}


/* a row that is not JSON: logged with jansson's reason, then skipped */
static void
lpg_fetch_page_refused(const char *db, const lpg_record_t *rec)
{
    json_t      *v;
    json_error_t e;

    v = json_loadb(rec->channel, rec->channel_len, JSON_DECODE_ANY, &e);
    if (v != NULL) {
        json_decref(v);
        v = json_loadb(rec->message, rec->message_len, JSON_DECODE_ANY, &e);
    }

    if (v != NULL) {
        /* lpg_json_check and jansson disagree: never seen, kept honest */
        json_decref(v);
        snprintf(e.text, sizeof(e.text), "refused by lpg_json_check");
    }

    lpg_log(LPG_LOG_ERR, 0,
            "database \"%s\": bus id %lld skipped, its channel or message "
            "is not JSON (%s)",
            db, (long long) rec->id, e.text);
}
