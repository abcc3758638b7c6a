/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_gap.h: when may the master move its bus_bus cursor past an id it has
 * not seen?
 *
 * Odoo allocates bus_bus ids before commit, so id 10 may commit after id
 * 11.  A reader that publishes 11 and moves on loses 10 forever.  The rule:
 * rows above a missing id are held back until the missing id shows up, or
 * until every transaction that could still commit it has ended: a
 * snapshot taken at least LPG_GAP_SETTLE_MS after the gap appeared (by then
 * the inserting transaction owns an xid) gives xmax_ref; once a snapshot's
 * xmin reaches xmax_ref, nothing older is in progress and the gap is final
 * (a rollback).  After timeout_ms it is declared final anyway, and counted.
 * Pure logic: the caller runs the queries.
 */

#ifndef LPG_GAP_H
#define LPG_GAP_H


#include "lpg_core.h"


#define LPG_GAP_SETTLE_MS 50


typedef struct {
    int64_t  cursor;    /* every id <= cursor is published or final */
    int64_t  since;     /* ms when the current gap appeared, 0: none */
    uint64_t xmax_ref;  /* 0 until a settled snapshot was seen */
    uint64_t final;     /* gaps closed by the snapshot rule */
    uint64_t forced;    /* gaps closed by the timeout */
    int64_t  last_from; /* the last gap closed: ids [from, to] */
    int64_t  last_to;
} lpg_gap_t;


/*
 * ids: the rows of one fetch (id > cursor), ascending; xmin, xmax: that
 * fetch's snapshot.  Returns how many leading rows may be published now
 * and moves the cursor past them.  *held is true while a gap holds rows
 * back (fetch again soon).  *closed tells how a gap was closed in this
 * call: 0 not, 1 by the snapshot rule, 2 by the timeout.
 */
size_t lpg_gap_scan(lpg_gap_t *g, const int64_t *ids, size_t n, int64_t now,
                    uint64_t xmin, uint64_t xmax, int64_t timeout_ms,
                    bool *held, int *closed);


#endif /* LPG_GAP_H */
