/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_backfill.c: the worker's connection pool and batched history queries.
 *
 * Per database a FIFO of waiting requests and up to db_maxconn / ndbs
 * connections (at least one), opened on first need.  An ev_prepare watcher
 * runs before the loop sleeps: each database with waiting requests and an
 * idle connection sends ONE query for all of them (the union of their
 * channels, the smallest last, the oldest since), and each request then
 * picks its own rows out of the result.
 */

#include "lpg_backfill.h"
#include "lpg_json.h"
#include "lpg_pgasync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    lpg_pgasync_t       a;
    int                 db;
    bool                up;
    lpg_backfill_req_t *batch; /* the requests of the running query */
    PGresult           *res;
    int64_t             bound;
    bool                failed;
} lpg_backfill_conn_t;


typedef struct {
    lpg_backfill_req_t  *head;
    lpg_backfill_req_t  *tail;
    lpg_backfill_conn_t *conns;
    int                  nconns;
    int                  max;
} lpg_backfill_db_t;


static void lpg_backfill_unlink(lpg_backfill_req_t **head,
                                lpg_backfill_req_t **tail,
                                lpg_backfill_req_t  *r);
static void lpg_backfill_prepare_cb(struct ev_loop *loop, ev_prepare *w,
                                    int revents);
static void lpg_backfill_flush(int db);
static int  lpg_backfill_send(lpg_backfill_conn_t *c);
static void lpg_backfill_ready(lpg_pgasync_t *a);
static void lpg_backfill_result(lpg_pgasync_t *a, PGresult *res);
static void lpg_backfill_done(lpg_pgasync_t *a);
static void lpg_backfill_down(lpg_pgasync_t *a, const char *err);
static void lpg_backfill_finish(lpg_backfill_conn_t *c, bool ok);


static struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    lpg_shm_t        *shm;
    ev_prepare        prepare;
    lpg_shm_worker_t *stats;
    size_t            queued;
    lpg_backfill_db_t dbs[LPG_SHM_MAX_DBS];
} lpg_bf;


int
lpg_backfill_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
                  lpg_shm_worker_t *stats)
{
    int i, ndbs, per;

    lpg_bf.loop = loop;
    lpg_bf.conf = conf;
    lpg_bf.shm = shm;
    lpg_bf.stats = stats;

    ndbs = shm->header->ndbs > 0 ? shm->header->ndbs : 1;
    per = conf->db_maxconn / ndbs;

    for (i = 0; i < shm->header->ndbs; i++) {
        lpg_bf.dbs[i].max = per > 0 ? per : 1;
        lpg_bf.dbs[i].conns =
            calloc(lpg_bf.dbs[i].max, sizeof(lpg_backfill_conn_t));
        if (lpg_bf.dbs[i].conns == NULL) {
            lpg_log(LPG_LOG_EMERG, 0, "backfill pool allocation failed");
            return LPG_ERROR;
        }
    }

    ev_prepare_init(&lpg_bf.prepare, lpg_backfill_prepare_cb);
    ev_prepare_start(loop, &lpg_bf.prepare);

    return LPG_OK;
}


void
lpg_backfill_queue(lpg_backfill_req_t *req)
{
    lpg_backfill_db_t *d = &lpg_bf.dbs[req->db];

    req->batch = NULL;
    req->next = NULL;
    req->prev = d->tail;
    if (d->tail != NULL) {
        d->tail->next = req;

    } else {
        d->head = req;
    }

    d->tail = req;
    lpg_bf.queued++;
}


/* unlinks r from the list head (and tail, when the list keeps one) */
static void
lpg_backfill_unlink(lpg_backfill_req_t **head, lpg_backfill_req_t **tail,
                    lpg_backfill_req_t *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;

    } else {
        *head = r->next;
    }

    if (r->next != NULL) {
        r->next->prev = r->prev;

    } else if (tail != NULL) {
        *tail = r->prev;
    }

    r->next = NULL;
    r->prev = NULL;
}


void
lpg_backfill_cancel(lpg_backfill_req_t *req)
{
    lpg_backfill_db_t   *d = &lpg_bf.dbs[req->db];
    lpg_backfill_conn_t *c = req->batch;

    if (c != NULL) {
        /* in a running query: drop it from the batch */
        lpg_backfill_unlink(&c->batch, NULL, req);

    } else {
        lpg_backfill_unlink(&d->head, &d->tail, req);
        lpg_bf.queued--;
    }

    req->batch = NULL;
}


size_t
lpg_backfill_queued(void)
{
    return lpg_bf.queued;
}


static void
lpg_backfill_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    int i;

    atomic_store_explicit(&lpg_bf.stats->db_waiters, lpg_bf.queued,
                          memory_order_relaxed);

    if (lpg_bf.queued == 0) {
        return;
    }

    for (i = 0; i < lpg_bf.shm->header->ndbs; i++) {
        if (lpg_bf.dbs[i].head != NULL) {
            lpg_backfill_flush(i);
        }
    }
}


static void
lpg_backfill_flush(int db)
{
    int                  i;
    lpg_backfill_db_t   *d = &lpg_bf.dbs[db];
    lpg_backfill_conn_t *c;
    lpg_pgconn_params_t  p;

    for (i = 0; i < d->nconns; i++) {
        c = &d->conns[i];
        if (c->up && c->batch == NULL && lpg_pgasync_idle(&c->a)) {
            (void) lpg_backfill_send(c);
            return;
        }
    }

    for (i = 0; i < d->nconns; i++) {
        if (!d->conns[i].up) {
            /* one is connecting (or retrying): it flushes when ready */
            return;
        }
    }

    if (d->nconns == d->max) {
        /* all busy: the queue waits for the next done() */
        return;
    }

    c = &d->conns[d->nconns++];
    memset(c, 0, sizeof(*c));
    c->db = db;
    c->a.loop = lpg_bf.loop;
    c->a.name = lpg_bf.shm->dbs[db].name;
    c->a.data = c;
    c->a.ready = lpg_backfill_ready;
    c->a.result = lpg_backfill_result;
    c->a.done = lpg_backfill_done;
    c->a.down = lpg_backfill_down;

    lpg_pgconn_params(&p, lpg_bf.conf, lpg_bf.shm->dbs[db].name,
                      "lpgate worker");
    lpg_pgasync_start(&c->a, &p);
}


/* takes every queued request of c's database into one query */
static int
lpg_backfill_send(lpg_backfill_conn_t *c)
{
    int                 rc;
    bool                zero;
    char                num[160], *lit;
    size_t              i;
    int64_t             minlast, since;
    lpg_buf_t           q;
    lpg_backfill_db_t  *d = &lpg_bf.dbs[c->db];
    lpg_backfill_req_t *r, *next;

    r = d->head;

    if (r->sql != NULL) {
        /* a statement of its own */
        if (lpg_pgasync_query(&c->a, r->sql) != LPG_OK) {
            return LPG_ERROR;
        }

        lpg_backfill_unlink(&d->head, &d->tail, r);
        r->batch = c;
        c->batch = r;
        c->bound = 0;
        c->failed = false;
        lpg_bf.queued--;

        return LPG_OK;
    }

    minlast = INT64_MAX;
    since = INT64_MAX;
    zero = false;

    static const char head[] = "SELECT id, channel, message, "
                               "(extract(epoch FROM create_date) * 1000000)"
                               "::int8 FROM bus_bus WHERE channel = "
                               "ANY(ARRAY[";

    memset(&q, 0, sizeof(q));
    rc = lpg_buf_append(&q, head, sizeof(head) - 1);

    for (r = d->head; r != NULL && rc == LPG_OK; r = r->next) {
        if (r->sql != NULL) {
            continue;
        }

        if (r->last > 0) {
            minlast = r->last < minlast ? r->last : minlast;

        } else {
            zero = true;
            since = r->since_us < since ? r->since_us : since;
        }

        for (i = 0; i < r->nkeys && rc == LPG_OK; i++) {
            lit = PQescapeLiteral(c->a.conn, r->keys[i], r->key_lens[i]);
            if (lit == NULL) {
                rc = LPG_ERROR;
                break;
            }

            rc = lpg_buf_append(&q, lit, strlen(lit));
            PQfreemem(lit);

            if (rc == LPG_OK) {
                rc = lpg_buf_append(&q, ",", 1);
            }
        }
    }

    c->bound = atomic_load(&lpg_bf.shm->dbs[c->db].cursor);

    /* ARRAY[...,NULL]: the trailing comma needs an element */
    snprintf(num, sizeof(num), "NULL]::varchar[]) AND id <= %lld AND (",
             (long long) c->bound);
    if (rc == LPG_OK) {
        rc = lpg_buf_append(&q, num, strlen(num));
    }

    if (minlast != INT64_MAX) {
        snprintf(num, sizeof(num), "id > %lld", (long long) minlast);

    } else {
        snprintf(num, sizeof(num), "false");
    }

    if (rc == LPG_OK) {
        rc = lpg_buf_append(&q, num, strlen(num));
    }

    if (zero) {
        snprintf(num, sizeof(num),
                 " OR create_date > to_timestamp(%lld / 1000000.0) AT TIME "
                 "ZONE 'UTC'",
                 (long long) since);
        if (rc == LPG_OK) {
            rc = lpg_buf_append(&q, num, strlen(num));
        }
    }

    if (rc == LPG_OK) {
        rc = lpg_buf_append(&q, ") ORDER BY id", 13);
    }

    if (rc != LPG_OK || lpg_pgasync_query(&c->a, q.data) != LPG_OK) {
        lpg_buf_free(&q);
        return LPG_ERROR;
    }

    lpg_buf_free(&q);

    atomic_fetch_add_explicit(&lpg_bf.stats->backfills, 1,
                              memory_order_relaxed);

    /* every history request of the queue becomes this connection's batch;
     * statements stay queued for the next idle connection */
    c->batch = NULL;
    c->failed = false;

    for (r = d->head; r != NULL; r = next) {
        next = r->next;

        if (r->sql != NULL) {
            continue;
        }

        lpg_backfill_unlink(&d->head, &d->tail, r);
        r->next = c->batch;
        if (c->batch != NULL) {
            c->batch->prev = r;
        }

        c->batch = r;
        r->batch = c;
        lpg_bf.queued--;
    }

    return LPG_OK;
}


static void
lpg_backfill_ready(lpg_pgasync_t *a)
{
    lpg_backfill_conn_t *c = a->data;

    c->up = true;
    atomic_fetch_add(&lpg_bf.stats->db_conns, 1);

    if (lpg_bf.dbs[c->db].head != NULL) {
        (void) lpg_backfill_send(c);
    }
}


static void
lpg_backfill_result(lpg_pgasync_t *a, PGresult *res)
{
    lpg_backfill_conn_t *c = a->data;

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        lpg_log(LPG_LOG_ERR, 0, "query on \"%s\" failed: %s", a->name,
                PQresultErrorMessage(res));
        c->failed = true;
        return;
    }

    PQclear(c->res);
    c->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
}


static void
lpg_backfill_done(lpg_pgasync_t *a)
{
    lpg_backfill_conn_t *c = a->data;

    lpg_backfill_finish(c, !c->failed);

    if (lpg_bf.dbs[c->db].head != NULL && lpg_pgasync_idle(&c->a)) {
        (void) lpg_backfill_send(c);
    }
}


static void
lpg_backfill_down(lpg_pgasync_t *a, const char *err)
{
    int                  i;
    bool                 connected;
    lpg_backfill_conn_t *c = a->data;
    lpg_backfill_db_t   *d = &lpg_bf.dbs[c->db];
    lpg_backfill_req_t  *r, *next;

    connected = c->up;

    if (c->up) {
        atomic_fetch_sub(&lpg_bf.stats->db_conns, 1);
    }

    c->up = false;
    lpg_backfill_finish(c, false);

    if (connected) {
        /* lost while up: the reconnect is immediate, the queue waits */
        return;
    }

    for (i = 0; i < d->nconns; i++) {
        if (d->conns[i].up) {
            return;
        }
    }

    /*
     * The database cannot be reached (it does not exist yet, or was
     * dropped): the queued history requests are answered as failed (the
     * polls park on what the history has) instead of waiting, unanswered
     * and without a timeout, for the database to come back.  Statements
     * keep waiting.
     */
    for (r = d->head; r != NULL; r = next) {
        next = r->next;

        if (r->sql != NULL) {
            continue;
        }

        lpg_backfill_unlink(&d->head, &d->tail, r);
        lpg_bf.queued--;
        r->batch = NULL;
        r->cb(r, NULL, 0, 0, false);
    }
}


/* hands each request of the batch its rows; requests may be freed by the
 * callback, so each is detached first */
static void
lpg_backfill_finish(lpg_backfill_conn_t *c, bool ok)
{
    int                 i, n;
    lpg_bus_rec_t      *rows;
    lpg_backfill_req_t *r;

    /* a statement's rows are its own (req->res), not bus records */
    n = ok && c->res != NULL && c->batch != NULL && c->batch->sql == NULL
        ? PQntuples(c->res)
        : 0;
    rows = calloc(n > 0 ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        ok = false;
        n = 0;
    }

    for (i = 0; i < n; i++) {
        rows[i].id = atoll(PQgetvalue(c->res, i, 0));
        rows[i].channel = PQgetvalue(c->res, i, 1);
        rows[i].channel_len = PQgetlength(c->res, i, 1);
        rows[i].message = PQgetvalue(c->res, i, 2);
        rows[i].message_len = PQgetlength(c->res, i, 2);
        rows[i].create_us = atoll(PQgetvalue(c->res, i, 3));
        rows[i].db = c->db;
    }

    while ((r = c->batch) != NULL) {
        c->batch = r->next;
        if (c->batch != NULL) {
            c->batch->prev = NULL;
        }

        r->next = NULL;
        r->prev = NULL;
        r->batch = NULL;
        r->res = r->sql != NULL && ok ? c->res : NULL;
        r->cb(r, r->sql != NULL ? NULL : rows, r->sql != NULL ? 0 : n, c->bound,
              ok);
    }

    free(rows);
    PQclear(c->res);
    c->res = NULL;
}
