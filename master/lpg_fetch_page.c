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
lpg_fetch_page_take(lpg_fetch_page_t *p, const PGresult *res, size_t budget)
{
    int     i, n;
    int64_t run;

    lpg_fetch_page_clear(p);

    if (PQnfields(res) != 5) {
        lpg_log(LPG_LOG_ERR, 0, "bus_bus page has %d columns, not 5",
                PQnfields(res));
        return LPG_ERROR;
    }

    n = PQntuples(res);
    p->more = n > LPG_FETCH_PAGE_ROWS;
    if (p->more) {
        n = LPG_FETCH_PAGE_ROWS;
    }

    p->rows = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    p->ids = malloc((n + 1) * sizeof(*p->ids));
    if (p->rows == NULL || p->ids == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "bus_bus page of %d rows", n);
        lpg_fetch_page_clear(p);
        return LPG_ERROR;
    }

    for (i = 0; i < n; i++) {
        p->ids[i] = atoll(PQgetvalue(res, i, 0));
    }

    p->n = n;

    if (n > 0) {
        run = atoll(PQgetvalue(res, n - 1, 4));
        p->bytes = (size_t) run;

        /* the last row reached the budget: the SQL may have cut after it */
        if ((size_t) run >= budget) {
            p->more = true;
        }
    }

    return LPG_OK;
}


int
lpg_fetch_page_push(const lpg_fetch_page_t *p, int npub, int64_t after,
                    lpg_shm_t *shm, int idx, lpg_ring_t *ring, char *buf,
                    size_t buf_cap, int64_t notify_us)
{
    int           i, pushed = 0;
    size_t        len;
    lpg_record_t  rec;
    lpg_shm_db_t *sdb = &shm->dbs[idx];

    memset(&rec, 0, sizeof(rec));
    rec.database = sdb->name;
    rec.database_len = strlen(sdb->name);
    rec.notify_us = notify_us;

    for (i = 0; i < npub && i < p->n; i++) {
        if (p->ids[i] <= after) {
            continue;
        }

        rec.id = p->ids[i];
        rec.channel = PQgetvalue(p->rows, i, 1);
        rec.channel_len = PQgetlength(p->rows, i, 1);
        rec.message = PQgetvalue(p->rows, i, 2);
        rec.message_len = PQgetlength(p->rows, i, 2);
        rec.create_us = atoll(PQgetvalue(p->rows, i, 3));

        /* the check allocates nothing; jansson, on the rare row it
         * refuses, only says why */
        if (!lpg_json_check(rec.channel, rec.channel_len)
            || !lpg_json_check(rec.message, rec.message_len))
        {
            lpg_fetch_page_refused(sdb->name, &rec);
            continue;
        }

        if (lpg_record_encode(&rec, buf, buf_cap, &len) != LPG_OK
            || lpg_ring_push(ring, buf, len) != LPG_OK)
        {
            lpg_log(LPG_LOG_ERR, 0,
                    "database \"%s\": bus id %lld skipped, %zu bytes do not "
                    "fit the ring's record limit",
                    sdb->name, (long long) rec.id,
                    rec.channel_len + rec.message_len);
            continue;
        }

        atomic_fetch_add_explicit(&shm->header->records, 1,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&shm->header->ring_bytes, len,
                                  memory_order_relaxed);
        pushed++;
    }

    return pushed;
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


void
lpg_fetch_page_clear(lpg_fetch_page_t *p)
{
    PQclear(p->rows);
    free(p->ids);
    memset(p, 0, sizeof(*p));
}
