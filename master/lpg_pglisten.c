/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pglisten.c: the master's LISTEN connection as a libev state machine.
 *
 * States: idle (waiting for the backoff timer), connecting (PQconnectPoll
 * driven by socket readiness), setup (one query that reads the connection
 * limits and LISTENs), listening (notifications drained on every read).
 * Any error in any state closes the connection, marks the database down in
 * shm and arms the backoff timer.  One instance per master; not used in
 * workers.
 */

#include "lpg_pglisten.h"
#include "lpg_pgconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_PGLISTEN_BACKOFF_MIN 0.1
#define LPG_PGLISTEN_BACKOFF_MAX 5.0


typedef enum {
    LPG_PGLISTEN_IDLE = 0,
    LPG_PGLISTEN_CONNECTING,
    LPG_PGLISTEN_SETUP,
    LPG_PGLISTEN_LISTENING
} lpg_pglisten_state_e;


static void lpg_pglisten_connect(void);
static void lpg_pglisten_fail(const char *what);
static void lpg_pglisten_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_pglisten_timer_cb(struct ev_loop *loop, ev_timer *w,
                                  int revents);
static void lpg_pglisten_poll_connect(void);
static void lpg_pglisten_send_setup(void);
static void lpg_pglisten_read(void);
static int  lpg_pglisten_setup_result(PGresult *res);
static void lpg_pglisten_watch(int events);


static struct {
    const lpg_conf_t       *conf;
    lpg_pglisten_handlers_t h;
    PGconn                 *conn;
    lpg_pglisten_state_e    state;
    ev_io                   io;
    ev_timer                retry;
    double                  backoff;
    bool                    check_budget;
    bool                    stopped;
    uint64_t                reconnects;
    char                    last_error[256];
    lpg_pgconn_params_t     params;
} lpg_pgl;


void
lpg_pglisten_start(const lpg_conf_t *conf, const lpg_pglisten_handlers_t *h,
                   bool check_budget)
{
    lpg_pgl.conf = conf;
    lpg_pgl.h = *h;
    lpg_pgl.check_budget = check_budget;
    lpg_pgl.backoff = LPG_PGLISTEN_BACKOFF_MIN;
    lpg_pgl.stopped = false;

    ev_init(&lpg_pgl.io, lpg_pglisten_io_cb);
    ev_init(&lpg_pgl.retry, lpg_pglisten_timer_cb);

    lpg_shm_set_db(h->shm, false, "connecting");
    lpg_pglisten_connect();
}


void
lpg_pglisten_reconfigure(const lpg_conf_t *conf)
{
    int                 i;
    bool                same;
    lpg_pgconn_params_t p;

    lpg_pgconn_params(&p, conf, NULL, "lpgate master");

    same = p.expand == lpg_pgl.params.expand;
    for (i = 0; same && i < LPG_PGCONN_NPARAMS; i++) {
        if (p.keys[i] == NULL || lpg_pgl.params.keys[i] == NULL) {
            same = p.keys[i] == lpg_pgl.params.keys[i];
            break;
        }

        same = strcmp(p.keys[i], lpg_pgl.params.keys[i]) == 0
            && strcmp(p.values[i], lpg_pgl.params.values[i]) == 0;
    }

    lpg_pgl.conf = conf;

    if (same) {
        /* params borrowed the old conf's strings: point them at the new */
        lpg_pgconn_params(&lpg_pgl.params, conf, NULL, "lpgate master");
        return;
    }

    lpg_log(LPG_LOG_NOTICE, 0,
            "database settings changed, reconnecting the LISTEN connection");

    lpg_pglisten_fail(NULL);
}


void
lpg_pglisten_stop(void)
{
    lpg_pgl.stopped = true;

    ev_io_stop(lpg_pgl.h.loop, &lpg_pgl.io);
    ev_timer_stop(lpg_pgl.h.loop, &lpg_pgl.retry);

    if (lpg_pgl.conn != NULL) {
        PQfinish(lpg_pgl.conn);
        lpg_pgl.conn = NULL;
    }
}


void
lpg_pglisten_atfork_child(void)
{
    if (lpg_pgl.h.loop == NULL) {
        return;
    }

    ev_io_stop(lpg_pgl.h.loop, &lpg_pgl.io);
    ev_timer_stop(lpg_pgl.h.loop, &lpg_pgl.retry);

    if (lpg_pgl.conn != NULL && PQsocket(lpg_pgl.conn) >= 0) {
        close(PQsocket(lpg_pgl.conn));
    }

    /* the PGconn stays allocated and untouched: it is the master's */
    lpg_pgl.conn = NULL;
    lpg_pgl.stopped = true;
}


bool
lpg_pglisten_up(void)
{
    return lpg_pgl.state == LPG_PGLISTEN_LISTENING;
}


static void
lpg_pglisten_connect(void)
{
    lpg_pgconn_params(&lpg_pgl.params, lpg_pgl.conf, NULL, "lpgate master");

    lpg_pgl.conn = PQconnectStartParams(
        lpg_pgl.params.keys, lpg_pgl.params.values, lpg_pgl.params.expand);

    if (lpg_pgl.conn == NULL || PQstatus(lpg_pgl.conn) == CONNECTION_BAD) {
        lpg_pglisten_fail("connect");
        return;
    }

    lpg_pgl.state = LPG_PGLISTEN_CONNECTING;

    /* PQconnectStart behaves as if PGRES_POLLING_WRITING was returned */
    lpg_pglisten_watch(EV_WRITE);
}


static void
lpg_pglisten_watch(int events)
{
    struct ev_loop *loop = lpg_pgl.h.loop;
    int             fd = PQsocket(lpg_pgl.conn);

    if (fd < 0) {
        lpg_pglisten_fail("PQsocket");
        return;
    }

    if (ev_is_active(&lpg_pgl.io) && lpg_pgl.io.fd == fd
        && (lpg_pgl.io.events & (EV_READ | EV_WRITE)) == events)
    {
        return;
    }

    ev_io_stop(loop, &lpg_pgl.io);
    ev_io_set(&lpg_pgl.io, fd, events);
    ev_io_start(loop, &lpg_pgl.io);
}


/*
 * Closes the connection and arms the retry timer.  what names the failed
 * step, NULL for a deliberate reconnect; the error is logged once here.
 */
static void
lpg_pglisten_fail(const char *what)
{
    char err[256];

    if (what != NULL) {
        lpg_pgconn_error(lpg_pgl.conn, err, sizeof(err));

        /* log a repeated error once, then only at debug level */
        if (strcmp(err, lpg_pgl.last_error) != 0
            || lpg_pgl.state == LPG_PGLISTEN_LISTENING)
        {
            lpg_log(LPG_LOG_ERR, 0,
                    "LISTEN connection: %s failed: %s; retrying in %.1f s",
                    what, err, lpg_pgl.backoff);

        } else {
            lpg_log(LPG_LOG_DEBUG, 0, "LISTEN connection: %s failed: %s", what,
                    err);
        }

        snprintf(lpg_pgl.last_error, sizeof(lpg_pgl.last_error), "%s", err);
        lpg_shm_set_db(lpg_pgl.h.shm, false, err);

    } else {
        lpg_shm_set_db(lpg_pgl.h.shm, false, "reconnecting");
    }

    ev_io_stop(lpg_pgl.h.loop, &lpg_pgl.io);

    if (lpg_pgl.conn != NULL) {
        PQfinish(lpg_pgl.conn);
        lpg_pgl.conn = NULL;
    }

    lpg_pgl.state = LPG_PGLISTEN_IDLE;

    if (lpg_pgl.stopped) {
        return;
    }

    ev_timer_stop(lpg_pgl.h.loop, &lpg_pgl.retry);
    ev_timer_set(&lpg_pgl.retry, what != NULL ? lpg_pgl.backoff : 0., 0.);
    ev_timer_start(lpg_pgl.h.loop, &lpg_pgl.retry);

    if (what != NULL) {
        lpg_pgl.backoff *= 2;
        if (lpg_pgl.backoff > LPG_PGLISTEN_BACKOFF_MAX) {
            lpg_pgl.backoff = LPG_PGLISTEN_BACKOFF_MAX;
        }
    }
}


static void
lpg_pglisten_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_pgl.reconnects++;
    lpg_pglisten_connect();
}


static void
lpg_pglisten_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    switch (lpg_pgl.state) {

    case LPG_PGLISTEN_CONNECTING:
        lpg_pglisten_poll_connect();
        break;

    case LPG_PGLISTEN_SETUP:
    case LPG_PGLISTEN_LISTENING:
        lpg_pglisten_read();
        break;

    default:
        ev_io_stop(loop, w);
        break;
    }
}


static void
lpg_pglisten_poll_connect(void)
{
    switch (PQconnectPoll(lpg_pgl.conn)) {

    case PGRES_POLLING_READING:
        lpg_pglisten_watch(EV_READ);
        return;

    case PGRES_POLLING_WRITING:
        lpg_pglisten_watch(EV_WRITE);
        return;

    case PGRES_POLLING_OK:
        if (PQsetnonblocking(lpg_pgl.conn, 1) != 0) {
            lpg_pglisten_fail("PQsetnonblocking");
            return;
        }

        lpg_pglisten_send_setup();
        return;

    default:
        lpg_pglisten_fail("connect");
        return;
    }
}


static void
lpg_pglisten_send_setup(void)
{
    char *ident, query[512];

    ident = PQescapeIdentifier(lpg_pgl.conn, lpg_pgl.conf->listen_channel,
                               strlen(lpg_pgl.conf->listen_channel));
    if (ident == NULL) {
        lpg_pglisten_fail("PQescapeIdentifier");
        return;
    }

    snprintf(query, sizeof(query),
             "SELECT current_setting('max_connections')::int, "
             "current_setting('superuser_reserved_connections')::int; "
             "LISTEN %s",
             ident);
    PQfreemem(ident);

    if (!PQsendQuery(lpg_pgl.conn, query)) {
        lpg_pglisten_fail("LISTEN");
        return;
    }

    lpg_pgl.state = LPG_PGLISTEN_SETUP;

    /* a non-blocking send may leave bytes to flush */
    lpg_pglisten_watch(PQflush(lpg_pgl.conn) == 1 ? EV_READ | EV_WRITE
                                                  : EV_READ);
}


static void
lpg_pglisten_read(void)
{
    PGresult *res;
    PGnotify *n;

    if (PQflush(lpg_pgl.conn) == -1) {
        lpg_pglisten_fail("send");
        return;
    }

    if (!PQconsumeInput(lpg_pgl.conn)
        || PQstatus(lpg_pgl.conn) == CONNECTION_BAD) {
        lpg_pglisten_fail("read");
        return;
    }

    while (!PQisBusy(lpg_pgl.conn)) {
        res = PQgetResult(lpg_pgl.conn);
        if (res == NULL) {
            if (lpg_pgl.state == LPG_PGLISTEN_SETUP) {
                /* both statements done: the setup query is complete */
                lpg_pgl.state = LPG_PGLISTEN_LISTENING;
                lpg_pgl.backoff = LPG_PGLISTEN_BACKOFF_MIN;
                lpg_pgl.last_error[0] = '\0';
                lpg_shm_set_db(lpg_pgl.h.shm, true, NULL);

                lpg_log(LPG_LOG_NOTICE, 0,
                        "LISTEN connection up, listening on \"%s\"",
                        lpg_pgl.conf->listen_channel);

                if (lpg_pgl.h.connected != NULL) {
                    lpg_pgl.h.connected(lpg_pgl.h.data);
                }
            }

            break;
        }

        if (lpg_pglisten_setup_result(res) != LPG_OK) {
            PQclear(res);
            lpg_pglisten_fail(lpg_pgl.state == LPG_PGLISTEN_SETUP ? "LISTEN"
                                                                  : "read");
            return;
        }

        PQclear(res);

        if (lpg_pgl.conn == NULL) {
            /* a handler stopped us */
            return;
        }
    }

    while ((n = PQnotifies(lpg_pgl.conn)) != NULL) {
        if (lpg_pgl.h.notify != NULL) {
            lpg_pgl.h.notify(lpg_pgl.h.data, n->extra);
        }

        PQfreemem(n);
    }

    if (lpg_pgl.conn != NULL && lpg_pgl.state >= LPG_PGLISTEN_SETUP) {
        lpg_pglisten_watch(PQflush(lpg_pgl.conn) == 1 ? EV_READ | EV_WRITE
                                                      : EV_READ);
    }
}


static int
lpg_pglisten_setup_result(PGresult *res)
{
    char         msg[1024];
    lpg_budget_t b;

    switch (PQresultStatus(res)) {

    case PGRES_COMMAND_OK:
        return LPG_OK;

    case PGRES_TUPLES_OK:
        if (!lpg_pgl.check_budget || PQntuples(res) != 1) {
            return LPG_OK;
        }

        memset(&b, 0, sizeof(b));
        b.workers = lpg_pgl.conf->workers;
        b.max_cron_threads = lpg_pgl.conf->max_cron_threads;
        b.db_maxconn = lpg_pgl.conf->db_maxconn;
        b.max_connections = atoi(PQgetvalue(res, 0, 0));
        b.reserved = atoi(PQgetvalue(res, 0, 1));
        lpg_pgl.check_budget = false;

        if (!lpg_budget_fits(&b)) {
            lpg_budget_explain(&b, msg, sizeof(msg));
            lpg_pgl.h.budget_failed(lpg_pgl.h.data, msg);

        } else {
            lpg_log(LPG_LOG_NOTICE, 0,
                    "connection budget: (1 + %d + %d) * %d = %d < %d - %d",
                    b.workers, b.max_cron_threads, b.db_maxconn,
                    lpg_budget_need(&b), b.max_connections, b.reserved);
        }

        return LPG_OK;

    default:
        return LPG_ERROR;
    }
}
