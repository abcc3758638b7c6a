/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_page.h: one page of the master's bus_bus fetch.
 *
 * A page is what one fetch round trip reads: the rows id > cursor, in id
 * order, up to LPG_FETCH_PAGE_ROWS rows and up to a byte budget of about
 * a quarter of the ring (the text of the rows plus an estimate of each
 * record's own bytes), whichever comes first.  One notification batch,
 * however many rows (10,000 channels in one transaction is one page with
 * the default 64 MiB ring), is thus one round trip of two SELECTs (the
 * snapshot and the page), while a batch bigger than the ring can take is
 * read and pushed in several pages instead of lapping every reader at
 * once.  The page knows whether more rows may follow (the SQL reads one
 * row past the row limit, and reports the bytes so far with each row), so
 * a page that ends the batch costs no extra empty fetch.
 *
 * This file builds the page's SQL, keeps its rows (a copy of libpq's
 * result, owned by the page) and pushes them into the ring as records,
 * skipping (and logging) rows whose channel or message is not JSON.
 */

#ifndef LPG_FETCH_PAGE_H
#define LPG_FETCH_PAGE_H


#include "lpg_ring.h"
#include "lpg_shm.h"

#include <libpq-fe.h>


#define LPG_FETCH_PAGE_ROWS 100000 /* rows per page at most */


typedef struct {
    PGresult *rows;  /* owned; NULL: no page */
    int64_t  *ids;   /* owned; n ids, ascending */
    int       n;     /* rows of the page (the look-ahead row excluded) */
    bool      more;  /* rows may follow the page: fetch again */
    size_t    bytes; /* the page's estimated ring bytes */
} lpg_fetch_page_t;


/* the bytes one page may take: a quarter of the ring's data area */
size_t lpg_fetch_page_budget(const lpg_ring_t *ring);

/*
 * Writes the whole fetch statement into out[0..cap): a REPEATABLE READ
 * transaction with the snapshot SELECT (high: an SQL expression for the
 * largest id allocated), then the page SELECT of ids > cursor.  row_cost:
 * the bytes a record adds to its channel and message in the ring.
 * LPG_ERROR when cap is too small.
 */
int lpg_fetch_page_sql(char *out, size_t cap, const char *high, int64_t cursor,
                       size_t budget, size_t row_cost) LPG_MUSTCHECK;

/* the bytes a record of a database named db adds to its text */
size_t lpg_fetch_page_row_cost(const char *db);

/*
 * Takes the page SELECT's result (copied; res stays the caller's):
 * decodes the ids and decides whether more may follow.  Any previous page
 * is cleared first.  LPG_ERROR (no page) on out of memory or a result of
 * another shape.
 */
int lpg_fetch_page_take(lpg_fetch_page_t *p, const PGresult *res,
                        size_t budget) LPG_MUSTCHECK;

/*
 * Pushes rows [0, npub) whose id is above after into the ring, as records
 * of database db (index idx in the segment) stamped with notify_us.  buf:
 * a record buffer of buf_cap bytes (lpg_ring_max_record), borrowed.
 * Counts records and ring bytes in the segment's header.  Returns the
 * records pushed.
 */
int lpg_fetch_page_push(const lpg_fetch_page_t *p, int npub, int64_t after,
                        lpg_shm_t *shm, int idx, lpg_ring_t *ring, char *buf,
                        size_t buf_cap, int64_t notify_us);

void lpg_fetch_page_clear(lpg_fetch_page_t *p);


#endif /* LPG_FETCH_PAGE_H */
