/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_reset.h: bus_bus ids that go backwards, seen from the master.
 *
 * TRUNCATE bus_bus RESTART IDENTITY, a restore, or the database dropped
 * and created again give new rows ids below the fetch cursor, which
 * "id > cursor" would never see.  lpg_fetch reads bus_bus's oid and the
 * largest id allocated with every fetch; this module decides whether
 * that is a reset, says so at WARN with the numbers, and tells the
 * workers through the shared segment (per-database high, cursor, resets)
 * and a reset marker in the ring (lpg_record_is_reset).  lpg_fetch then
 * re-syncs its own cursor to 0.
 */

#ifndef LPG_FETCH_RESET_H
#define LPG_FETCH_RESET_H


#include "lpg_ring.h"
#include "lpg_shm.h"


typedef struct {
    lpg_shm_t  *shm;  /* borrowed */
    lpg_ring_t *ring; /* borrowed */
    char       *buf;  /* the caller's record buffer, borrowed */
    size_t      buf_cap;
    int         idx;     /* the database's index in the segment */
    uint32_t    old_oid; /* bus_bus's oid when the cursor was set */
    uint32_t    new_oid; /* as the fetch saw it */
    int64_t     cursor;  /* the cursor before the reset */
    int64_t     high;    /* the largest id allocated now */
} lpg_fetch_reset_t;


/*
 * true when bus_bus is another table than the one the cursor counts in,
 * or the largest id allocated is below the cursor.  Without a readable
 * sequence (has_seq false) the largest id is max(id), which Odoo's
 * garbage collection can bring down to 0: only a value between 0 and the
 * cursor counts then.
 */
bool lpg_fetch_reset_seen(uint32_t old_oid, uint32_t new_oid, int64_t high,
                          int64_t cursor, bool has_seq);

/* logs the reset, publishes high/cursor/resets in the segment and pushes
 * the marker; LPG_OK when the marker is in the ring (ring the workers) */
int lpg_fetch_reset_publish(const lpg_fetch_reset_t *r);


#endif /* LPG_FETCH_RESET_H */
