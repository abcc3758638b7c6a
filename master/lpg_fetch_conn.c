/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_conn.c: a fetch connection's opening (lpg_fetch.c has the
 * fetches themselves).
 *
 * Once connected: which of Odoo's tables the database has (a database
 * without bus_bus is looked at again every 5 s), then in one round trip
 * the largest bus_bus id (the cursor, the first time), the Odoo version,
 * the table's oid and id sequence, and LISTEN on the served database
 * itself (contrib/sql/lpgate.sql notifies there).  A bus_bus other than
 * the one the cursor counts in is a reset (lpg_fetch_resync).
 */

#include "lpg_fetch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void
lpg_fetch_conn_ready(lpg_pgasync_t *a)
{
    lpg_fetch_db_t *db = a->data;

    db->state = LPG_FETCH_TABLES;

    /* to_regclass: a database without Odoo's tables is not an error */
    if (lpg_pgasync_query(a, LPG_PGCONN_ODOO_TABLES_SQL) != LPG_OK) {
        return;
    }
}


/* one row of the TABLES or CURSOR query */
void
lpg_fetch_conn_result(lpg_fetch_db_t *db, const PGresult *res)
{
    lpg_shm_db_t *sdb = &lpg_fetch.shm->dbs[db->idx];

    if (PQntuples(res) != 1) {
        return;
    }

    switch (db->state) {

    case LPG_FETCH_TABLES:
        db->has_bus = PQgetvalue(res, 0, 0)[0] == 't';
        db->has_modules = PQgetvalue(res, 0, 1)[0] == 't';
        return;

    case LPG_FETCH_CURSOR:
        db->snap_oid = (uint32_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
        db->snap_high = atoll(PQgetvalue(res, 0, 0));
        db->has_seq = !PQgetisnull(res, 0, 3) && PQgetvalue(res, 0, 4)[0] == 't'
            && (size_t) PQgetlength(res, 0, 3) < sizeof(db->seq);
        snprintf(db->seq, sizeof(db->seq), "%s",
                 db->has_seq ? PQgetvalue(res, 0, 3) : "");

        if (!db->has_cursor) {
            db->gap.cursor = db->snap_high;
            db->has_cursor = true;
            db->table_oid = db->snap_oid;
            atomic_store(&sdb->start, db->gap.cursor);
            lpg_fetch_set_high(db, db->snap_high);
        }

        atomic_store(&sdb->version,
                     lpg_pgconn_odoo_version(lpg_fetch.conf,
                                             PQgetisnull(res, 0, 1)
                                                 ? NULL
                                                 : PQgetvalue(res, 0, 1)));
        return;

    default:
        return;
    }
}


/* the TABLES or CURSOR query is complete */
void
lpg_fetch_conn_done(lpg_fetch_db_t *db)
{
    char           query[512];
    lpg_shm_db_t  *sdb = &lpg_fetch.shm->dbs[db->idx];
    lpg_pgasync_t *a = &db->conn;

    switch (db->state) {

    case LPG_FETCH_TABLES:
        if (!db->has_bus) {
            /* said once at ERR, then quietly until the table appears */
            lpg_log(db->warned ? LPG_LOG_DEBUG : LPG_LOG_ERR, 0,
                    "database \"%s\" has no bus_bus table: nothing to "
                    "serve from it until it has one (looking again in 5 s)",
                    sdb->name);
            db->warned = true;
            db->state = LPG_FETCH_READY;
            ev_timer_stop(lpg_fetch.loop, &db->again);
            ev_timer_set(&db->again, 5., 0.);
            ev_timer_start(lpg_fetch.loop, &db->again);
            return;
        }

        /* LISTEN here too: contrib/sql/lpgate.sql notifies in the
         * served database itself */
        /* the oid and the id sequence: a table other than the one the
         * cursor counts in is a reset (lpg_fetch_resync) */
        snprintf(query, sizeof(query),
                 "SELECT (SELECT coalesce(max(id), 0) FROM bus_bus), %s, "
                 "'bus_bus'::regclass::oid, s, s IS NOT NULL AND "
                 "has_sequence_privilege(s, 'SELECT') FROM (SELECT "
                 "pg_get_serial_sequence('bus_bus', 'id') AS s) q; "
                 "LISTEN %s",
                 db->has_modules ? LPG_PGCONN_ODOO_VERSION_SQL : "NULL",
                 db->listen);

        if (lpg_pgasync_query(a, query) == LPG_OK) {
            db->state = LPG_FETCH_CURSOR;
        }

        return;

    case LPG_FETCH_CURSOR:
        if (db->snap_oid != db->table_oid) {
            /* reconnected to another bus_bus: the database was created
             * again, or the table restored */
            lpg_fetch_resync(db);
        }

        atomic_store(&sdb->cursor, db->gap.cursor);
        atomic_store(&sdb->ready, 1);
        db->state = LPG_FETCH_READY;

        lpg_log(LPG_LOG_NOTICE, 0,
                "database \"%s\": Odoo %d bus shapes, bus_bus id %lld",
                sdb->name, atomic_load(&sdb->version),
                (long long) db->gap.cursor);

        /* what was committed while we were not connected */
        db->dirty = true;
        lpg_fetch_run(db);
        return;

    default:
        return;
    }
}


/* "ident" with inner quotes doubled, as PQescapeIdentifier does */
void
lpg_fetch_quote(char *out, size_t cap, const char *ident)
{
    size_t n = 0;

    out[n++] = '"';
    for (; *ident != '\0' && n + 3 < cap; ident++) {
        if (*ident == '"') {
            out[n++] = '"';
        }

        out[n++] = *ident;
    }

    out[n++] = '"';
    out[n] = '\0';
}
