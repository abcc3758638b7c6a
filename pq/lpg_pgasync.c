/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pgasync.c: the connection state machine behind lpg_pgasync.h.
 *
 * States: down (backoff timer armed), connecting (PQconnectPoll driven by
 * socket readiness), idle, busy (a query is running).  Every failure goes
 * through lpg_pgasync_fail(), which logs once per distinct error, closes,
 * calls down() and arms the retry.
 */

#include "lpg_pgasync.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>


#define LPG_PGASYNC_BACKOFF_MIN 0.1
#define LPG_PGASYNC_BACKOFF_MAX 5.0


enum {
    LPG_PGASYNC_DOWN = 0,
    LPG_PGASYNC_CONNECTING,
    LPG_PGASYNC_IDLE,
    LPG_PGASYNC_BUSY
};


static void lpg_pgasync_set_params(lpg_pgasync_t             *a,
                                   const lpg_pgconn_params_t *p);
static void lpg_pgasync_connect(lpg_pgasync_t *a);
static void lpg_pgasync_fail(lpg_pgasync_t *a, const char *what);
static void lpg_pgasync_watch(lpg_pgasync_t *a, int events);
static void lpg_pgasync_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_pgasync_retry_cb(struct ev_loop *loop, ev_timer *w,
                                 int revents);
static void lpg_pgasync_read(lpg_pgasync_t *a);
static int lpg_pgasync_send(lpg_pgasync_t *a, const char *sql, bool single_row);


void
lpg_pgasync_start(lpg_pgasync_t *a, const lpg_pgconn_params_t *p)
{
    lpg_pgasync_set_params(a, p);
    a->backoff = LPG_PGASYNC_BACKOFF_MIN;
    a->stopped = false;
    a->state = LPG_PGASYNC_DOWN;

    ev_init(&a->io, lpg_pgasync_io_cb);
    a->io.data = a;
    ev_init(&a->retry, lpg_pgasync_retry_cb);
    a->retry.data = a;

    lpg_pgasync_connect(a);
}


int
lpg_pgasync_query(lpg_pgasync_t *a, const char *sql)
{
    return lpg_pgasync_send(a, sql, false);
}


int
lpg_pgasync_query_rows(lpg_pgasync_t *a, const char *sql)
{
    return lpg_pgasync_send(a, sql, true);
}


static int
lpg_pgasync_send(lpg_pgasync_t *a, const char *sql, bool single_row)
{
    if (a->state != LPG_PGASYNC_IDLE) {
        return LPG_AGAIN;
    }

    if (!PQsendQuery(a->conn, sql)) {
        lpg_pgasync_fail(a, "query");
        return LPG_ERROR;
    }

    if (single_row && !PQsetSingleRowMode(a->conn)) {
        /* cannot happen right after PQsendQuery; whole results then */
        lpg_log(LPG_LOG_WARN, 0, "%s connection: single-row mode refused",
                a->name);
    }

    a->state = LPG_PGASYNC_BUSY;
    lpg_pgasync_watch(a, PQflush(a->conn) == 1 ? EV_READ | EV_WRITE : EV_READ);

    return LPG_OK;
}


bool
lpg_pgasync_idle(const lpg_pgasync_t *a)
{
    return a->state == LPG_PGASYNC_IDLE;
}


void
lpg_pgasync_reset(lpg_pgasync_t *a, const lpg_pgconn_params_t *p)
{
    if (p != NULL) {
        lpg_pgasync_set_params(a, p);
    }

    lpg_pgasync_fail(a, NULL);
}


void
lpg_pgasync_rebind(lpg_pgasync_t *a, const lpg_pgconn_params_t *p)
{
    lpg_pgasync_set_params(a, p);
}


void
lpg_pgasync_stop(lpg_pgasync_t *a)
{
    a->stopped = true;

    if (a->loop == NULL) {
        return;
    }

    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->retry);

    if (a->conn != NULL) {
        PQfinish(a->conn);
        a->conn = NULL;
    }

    a->state = LPG_PGASYNC_DOWN;
}


void
lpg_pgasync_forget(lpg_pgasync_t *a)
{
    if (a->loop == NULL) {
        return;
    }

    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->retry);

    if (a->conn != NULL && PQsocket(a->conn) >= 0) {
        close(PQsocket(a->conn));
    }

    /* the PGconn stays allocated and untouched: it is the master's */
    if (a->conn != NULL) {
        a->inherited = a->conn;
    }
    a->conn = NULL;
    a->stopped = true;
}


bool
lpg_pgasync_same_params(const lpg_pgconn_params_t *a,
                        const lpg_pgconn_params_t *b)
{
    int i;

    if (a->expand != b->expand) {
        return false;
    }

    for (i = 0; i < LPG_PGCONN_NPARAMS; i++) {
        if (a->keys[i] == NULL || b->keys[i] == NULL) {
            return a->keys[i] == b->keys[i];
        }

        if (strcmp(a->keys[i], b->keys[i]) != 0
            || strcmp(a->values[i], b->values[i]) != 0)
        {
            return false;
        }
    }

    return true;
}


/* a copy whose port and appname values point at its own buffers, not the
 * source's */
static void
lpg_pgasync_set_params(lpg_pgasync_t *a, const lpg_pgconn_params_t *p)
{
    int i;

    a->params = *p;

    for (i = 0; i < LPG_PGCONN_NPARAMS && p->keys[i] != NULL; i++) {
        if (p->values[i] == p->port) {
            a->params.values[i] = a->params.port;

        } else if (p->values[i] == p->appname) {
            a->params.values[i] = a->params.appname;
        }
    }
}


static void
lpg_pgasync_connect(lpg_pgasync_t *a)
{
    a->conn = PQconnectStartParams(a->params.keys, a->params.values,
                                   a->params.expand);

    if (a->conn == NULL || PQstatus(a->conn) == CONNECTION_BAD) {
        lpg_pgasync_fail(a, "connect");
        return;
    }

    a->state = LPG_PGASYNC_CONNECTING;

    /* PQconnectStart behaves as if PGRES_POLLING_WRITING was returned */
    lpg_pgasync_watch(a, EV_WRITE);
}


static void
lpg_pgasync_watch(lpg_pgasync_t *a, int events)
{
    int fd = PQsocket(a->conn);

    if (fd < 0) {
        lpg_pgasync_fail(a, "PQsocket");
        return;
    }

    if (ev_is_active(&a->io) && a->io.fd == fd
        && (a->io.events & (EV_READ | EV_WRITE)) == events)
    {
        return;
    }

    ev_io_stop(a->loop, &a->io);
    ev_io_set(&a->io, fd, events);
    ev_io_start(a->loop, &a->io);
}


/*
 * Closes the connection and arms the retry timer.  what names the failed
 * step, NULL for a deliberate reconnect; the error is logged here, once
 * per distinct message.
 */
static void
lpg_pgasync_fail(lpg_pgasync_t *a, const char *what)
{
    char err[256];

    if (what != NULL) {
        lpg_pgconn_error(a->conn, err, sizeof(err));

        if (strcmp(err, a->last_error) != 0 || a->state >= LPG_PGASYNC_IDLE) {
            lpg_log(LPG_LOG_ERR, 0,
                    "%s connection: %s failed: %s; retrying in %.1f s", a->name,
                    what, err, a->backoff);

        } else {
            lpg_log(LPG_LOG_DEBUG, 0, "%s connection: %s failed: %s", a->name,
                    what, err);
        }

        snprintf(a->last_error, sizeof(a->last_error), "%s", err);

    } else {
        snprintf(err, sizeof(err), "reconnecting");
    }

    ev_io_stop(a->loop, &a->io);

    if (a->conn != NULL) {
        PQfinish(a->conn);
        a->conn = NULL;
    }

    a->state = LPG_PGASYNC_DOWN;

    if (a->stopped) {
        return;
    }

    ev_timer_stop(a->loop, &a->retry);
    ev_timer_set(&a->retry, what != NULL ? a->backoff : 0., 0.);
    ev_timer_start(a->loop, &a->retry);

    if (what != NULL) {
        a->backoff *= 2;
        if (a->backoff > LPG_PGASYNC_BACKOFF_MAX) {
            a->backoff = LPG_PGASYNC_BACKOFF_MAX;
        }
    }

    if (a->down != NULL) {
        a->down(a, err);
    }
}


static void
lpg_pgasync_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_pgasync_t *a = w->data;

    a->reconnects++;
    lpg_pgasync_connect(a);
}


static void
lpg_pgasync_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    lpg_pgasync_t *a = w->data;

    if (a->state != LPG_PGASYNC_CONNECTING) {
        lpg_pgasync_read(a);
        return;
    }

    switch (PQconnectPoll(a->conn)) {

    case PGRES_POLLING_READING:
        lpg_pgasync_watch(a, EV_READ);
        return;

    case PGRES_POLLING_WRITING:
        lpg_pgasync_watch(a, EV_WRITE);
        return;

    case PGRES_POLLING_OK:
        if (PQsetnonblocking(a->conn, 1) != 0) {
            lpg_pgasync_fail(a, "PQsetnonblocking");
            return;
        }

        a->state = LPG_PGASYNC_IDLE;
        a->backoff = LPG_PGASYNC_BACKOFF_MIN;
        a->last_error[0] = '\0';
        lpg_pgasync_watch(a, EV_READ);

        if (a->ready != NULL) {
            a->ready(a);
        }

        return;

    default:
        lpg_pgasync_fail(a, "connect");
        return;
    }
}


static void
lpg_pgasync_read(lpg_pgasync_t *a)
{
    PGconn   *conn = a->conn;
    PGresult *res;
    PGnotify *n;

    if (PQflush(conn) == -1) {
        lpg_pgasync_fail(a, "send");
        return;
    }

    if (!PQconsumeInput(conn) || PQstatus(conn) == CONNECTION_BAD) {
        lpg_pgasync_fail(a, "read");
        return;
    }

    while (a->state == LPG_PGASYNC_BUSY && !PQisBusy(conn)) {
        res = PQgetResult(conn);

        if (res == NULL) {
            a->state = LPG_PGASYNC_IDLE;

            if (a->done != NULL) {
                a->done(a);
            }

            break;
        }

        if (a->result != NULL) {
            a->result(a, res);
        }

        PQclear(res);

        if (a->conn != conn) {
            /* a callback reset or stopped the connection */
            return;
        }
    }

    while (a->conn == conn && (n = PQnotifies(conn)) != NULL) {
        if (a->notify != NULL) {
            a->notify(a, n);
        }

        PQfreemem(n);
    }

    if (a->conn == conn && a->state >= LPG_PGASYNC_IDLE) {
        lpg_pgasync_watch(a, PQflush(conn) == 1 ? EV_READ | EV_WRITE : EV_READ);
    }
}
