/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pgasync.h: one non-blocking libpq connection on a libev loop.
 *
 * It connects with PQconnectStartParams, runs one query at a time with
 * PQsendQuery, hands every result and notification to callbacks, and on
 * any failure closes, reports, and reconnects with a backoff (100 ms first,
 * doubling, capped at 5 s).  The LISTEN connection and the fetch
 * connections are built on it.
 */

#ifndef LPG_PGASYNC_H
#define LPG_PGASYNC_H


#include "lpg_pgconn.h"

#include <ev.h>


typedef struct lpg_pgasync_s lpg_pgasync_t;

struct lpg_pgasync_s {
    /* set by the owner before lpg_pgasync_start() */
    struct ev_loop *loop;
    const char     *name; /* for logs: "LISTEN", "db1" */
    void           *data;

    /* connected and idle */
    void (*ready)(lpg_pgasync_t *a);
    /* one result of the running query (cleared after the call) */
    void (*result)(lpg_pgasync_t *a, PGresult *res);
    /* the running query is complete; the connection is idle again */
    void (*done)(lpg_pgasync_t *a);
    /* a notification (freed after the call) */
    void (*notify)(lpg_pgasync_t *a, const PGnotify *n);
    /* the connection failed or was lost; a retry is scheduled */
    void (*down)(lpg_pgasync_t *a, const char *err);

    /* private */
    PGconn *conn;
    /* after lpg_pgasync_forget in a forked child: the parent's connection,
     * never used or freed, kept reachable so that LeakSanitizer does not
     * report it at every worker's exit */
    PGconn             *inherited;
    ev_io               io;
    ev_timer            retry;
    double              backoff;
    int                 state;
    bool                stopped;
    uint64_t            reconnects;
    char                last_error[256];
    lpg_pgconn_params_t params;
};


/* p is copied; the strings it points to must outlive the connection */
void lpg_pgasync_start(lpg_pgasync_t *a, const lpg_pgconn_params_t *p);

/* LPG_AGAIN when a query is running or the connection is not up */
int lpg_pgasync_query(lpg_pgasync_t *a, const char *sql) LPG_MUSTCHECK;

/*
 * The same in libpq's single-row mode: result() gets each row as it
 * arrives (PGRES_SINGLE_TUPLE), then a zero-row PGRES_TUPLES_OK that ends
 * each statement's rows, so a long result is used while it streams in.
 */
int lpg_pgasync_query_rows(lpg_pgasync_t *a, const char *sql) LPG_MUSTCHECK;

bool lpg_pgasync_idle(const lpg_pgasync_t *a);

/* closes and reconnects at once (new parameters, or a protocol error) */
void lpg_pgasync_reset(lpg_pgasync_t *a, const lpg_pgconn_params_t *p);

/* new parameters equal to the current ones (same text, other storage):
 * no reconnect */
void lpg_pgasync_rebind(lpg_pgasync_t *a, const lpg_pgconn_params_t *p);

/* closes for good */
void lpg_pgasync_stop(lpg_pgasync_t *a);

/* in a forked child: close the socket, never touch the connection again */
void lpg_pgasync_forget(lpg_pgasync_t *a);

bool lpg_pgasync_same_params(const lpg_pgconn_params_t *a,
                             const lpg_pgconn_params_t *b);


#endif /* LPG_PGASYNC_H */
