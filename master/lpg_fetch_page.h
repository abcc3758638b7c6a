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
 * The rows stream in (libpq's single-row mode) and each is pushed into
 * the ring as it arrives, so the workers start on a big batch while
 * PostgreSQL is still sending it.  This file builds the page's SQL,
 * reads a row's id and place in the page, and pushes it as a record,
 * skipping (and logging) rows whose channel or message is not JSON.
 */

#ifndef LPG_FETCH_PAGE_H
#define LPG_FETCH_PAGE_H


#include "lpg_gap.h"
#include "lpg_ring.h"
#include "lpg_shm.h"

#include <libpq-fe.h>


#define LPG_FETCH_PAGE_ROWS 100000 /* rows per page at most */


/* one fetch's page while its rows stream in; zeroed when a fetch begins */
typedef struct {
    int64_t after;  /* the cursor when the rows began */
    int     seen;   /* rows of the page SELECT so far */
    int     pushed; /* records pushed since the last doorbell */
    bool    more;   /* rows may follow the page: fetch again */
    bool    held;   /* a gap holds the rest: fetch again after a delay */
    bool    reset;  /* the ids went backwards: nothing is published */
    bool    stop;   /* publish no more rows of this fetch */
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
 * Row r of a page SELECT result (a single row as it streams in, or a
 * whole result): *id when it belongs to the page (LPG_OK); LPG_DONE for
 * the look-ahead row past LPG_FETCH_PAGE_ROWS (p->more is set, the row is
 * not published); LPG_ERROR for a result of another shape.  A row that
 * reaches the byte budget sets p->more.
 */
int lpg_fetch_page_row(lpg_fetch_page_t *p, const PGresult *res, int r,
                       size_t budget, int64_t *id) LPG_MUSTCHECK;

/*
 * Whether the row with this id may be published now: lpg_gap's rule, one
 * id at a time as the rows stream in (now_ms: when the fetch's snapshot
 * arrived).  A gap that closes is counted and logged; false when a gap
 * before the id holds it and the rest of the page (p->held, p->stop).
 */
bool lpg_fetch_page_gap(lpg_fetch_page_t *p, lpg_gap_t *g, int64_t id,
                        int64_t now_ms, uint64_t xmin, uint64_t xmax,
                        int64_t timeout_ms, lpg_shm_t *shm, int idx);

/*
 * Pushes row r (its id read by lpg_fetch_page_row) into the ring as a
 * record of database db (index idx in the segment) stamped with
 * notify_us, unless its id is not above p->after or its text is not
 * JSON.  buf: a record buffer of buf_cap bytes (lpg_ring_max_record),
 * borrowed.  Counts records and ring bytes in the segment's header.
 * Returns whether the record was pushed.
 */
bool lpg_fetch_page_push(const lpg_fetch_page_t *p, const PGresult *res, int r,
                         int64_t id, lpg_shm_t *shm, int idx, lpg_ring_t *ring,
                         char *buf, size_t buf_cap, int64_t notify_us);


#endif /* LPG_FETCH_PAGE_H */
