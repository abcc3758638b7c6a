/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_reset.c: bus_bus ids that go backwards (lpg_fetch_reset.h).
 *
 * Only the decision and the telling: the fetch connection, its cursor and
 * its held rows stay lpg_fetch's.  Workers learn of a reset in ring order
 * from the marker, or, when the ring lapped them, from the database's
 * resets counter.
 */

#include "lpg_fetch_reset.h"
#include "lpg_record.h"
#include "lpg_time.h"

#include <string.h>


bool
lpg_fetch_reset_seen(uint32_t old_oid, uint32_t new_oid, int64_t high,
                     int64_t cursor, bool has_seq)
{
    if (new_oid != old_oid) {
        return true;
    }

    if (high >= cursor) {
        return false;
    }

    return has_seq || high > 0;
}


int
lpg_fetch_reset_publish(const lpg_fetch_reset_t *r)
{
    size_t        len;
    lpg_record_t  rec;
    lpg_shm_db_t *sdb = &r->shm->dbs[r->idx];

    if (r->new_oid != r->old_oid) {
        lpg_log(LPG_LOG_WARN, 0,
                "database \"%s\": bus_bus was recreated (table oid %u, was "
                "%u: a restore, or the database created again): cursor "
                "%lld, largest id now %lld; re-syncing from 0, workers drop "
                "their history of it and its parked polls start again",
                sdb->name, r->new_oid, r->old_oid, (long long) r->cursor,
                (long long) r->high);

    } else {
        lpg_log(LPG_LOG_WARN, 0,
                "database \"%s\": bus_bus ids went backwards (TRUNCATE ... "
                "RESTART IDENTITY, or a restore): cursor %lld, largest id now "
                "%lld; re-syncing from 0, workers drop their history of it "
                "and its parked polls start again",
                sdb->name, (long long) r->cursor, (long long) r->high);
    }

    /* high and cursor first: a worker that reads the marker sees them */
    atomic_store(&sdb->high, r->high > 0 ? r->high : 0);
    atomic_store(&sdb->cursor, 0);
    atomic_store(&sdb->start, 0);
    atomic_fetch_add(&sdb->resets, 1);
    atomic_fetch_add(&r->shm->header->bus_resets, 1);

    memset(&rec, 0, sizeof(rec));
    rec.id = 0;
    rec.database = sdb->name;
    rec.database_len = strlen(sdb->name);
    rec.channel = "";
    rec.message = "";
    rec.notify_us = lpg_time_mono_us();

    if (lpg_record_encode(&rec, r->buf, r->buf_cap, &len) != LPG_OK
        || lpg_ring_push(r->ring, r->buf, len) != LPG_OK)
    {
        /* cannot happen (a few bytes); the workers still see resets
         * change the next time the ring laps them */
        lpg_log(LPG_LOG_ALERT, 0,
                "database \"%s\": the reset marker does not fit the ring",
                sdb->name);
        return LPG_ERROR;
    }

    return LPG_OK;
}
