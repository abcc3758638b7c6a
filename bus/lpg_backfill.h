/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_backfill.h: database queries for polls the history cannot answer.
 *
 * A poll whose last is older than the worker's history (or last == 0,
 * Odoo's "the last timeout seconds") is queued here.  Requests queued in
 * one loop iteration for one database share one query; the worker never
 * holds more than db_maxconn connections, and a request waits in the
 * queue when they are all busy (never a pool-full error).  The query
 * returns rows up to the master's published cursor; newer ones come from
 * the ring.
 */

#ifndef LPG_BACKFILL_H
#define LPG_BACKFILL_H


#include "lpg_bus.h"
#include "lpg_conf.h"
#include "lpg_shm.h"

#include <ev.h>
#include <libpq-fe.h>


typedef struct lpg_backfill_req_s lpg_backfill_req_t;

/*
 * rows: the query's rows (borrowed for the call), in id order, all with
 * id <= bound; ok is false when the database could not be asked.
 */
typedef void (*lpg_backfill_cb_pt)(lpg_backfill_req_t  *req,
                                   const lpg_bus_rec_t *rows, size_t n,
                                   int64_t bound, bool ok);

/* embedded in the caller's poll; keys are borrowed until the callback */
struct lpg_backfill_req_s {
    int                db;
    int64_t            last;
    int64_t            since_us;
    size_t             nkeys;
    char *const       *keys;
    const size_t      *key_lens;
    lpg_backfill_cb_pt cb;

    /* a statement to run alone instead of a history query (the send
     * route, session and im_status queries); borrowed until the callback,
     * which gets no rows but res: the statement's last row set (NULL when
     * it returned none), borrowed for the call */
    const char     *sql;
    const PGresult *res;

    /* private */
    lpg_backfill_req_t *next;
    lpg_backfill_req_t *prev;
    void               *batch;
};


int lpg_backfill_init(struct ev_loop *loop, const lpg_conf_t *conf,
                      lpg_shm_t *shm, lpg_shm_worker_t *stats) LPG_MUSTCHECK;

void lpg_backfill_queue(lpg_backfill_req_t *req);

/* the poll is gone: forget the request (no callback) */
void lpg_backfill_cancel(lpg_backfill_req_t *req);

size_t lpg_backfill_queued(void);


#endif /* LPG_BACKFILL_H */
