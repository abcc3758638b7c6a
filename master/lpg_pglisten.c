/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pglisten.c: the master's LISTEN connection.
 *
 * On every (re)connect it runs one setup query that reads the connection
 * limits (for a budget check deferred from the start) and LISTENs; once it
 * completes the database is marked up in shm and connected() lets the
 * fetcher catch up on what was committed while the connection was down.
 * One instance per master; not used in workers.
 */

#include "lpg_pglisten.h"
#include "lpg_pgasync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void lpg_pglisten_ready(lpg_pgasync_t *a);
static void lpg_pglisten_result(lpg_pgasync_t *a, PGresult *res);
static void lpg_pglisten_done(lpg_pgasync_t *a);
static void lpg_pglisten_notify(lpg_pgasync_t *a, const PGnotify *n);
static void lpg_pglisten_down(lpg_pgasync_t *a, const char *err);


static struct {
    const lpg_conf_t       *conf;
    lpg_pglisten_handlers_t h;
    lpg_pgasync_t           conn;
    bool                    check_budget;
    bool                    listening;
    bool                    setup_failed;
} lpg_pgl;


void
lpg_pglisten_start(const lpg_conf_t *conf, const lpg_pglisten_handlers_t *h,
                   bool check_budget)
{
    lpg_pgconn_params_t p;

    lpg_pgl.conf = conf;
    lpg_pgl.h = *h;
    lpg_pgl.check_budget = check_budget;

    memset(&lpg_pgl.conn, 0, sizeof(lpg_pgl.conn));
    lpg_pgl.conn.loop = h->loop;
    lpg_pgl.conn.name = "LISTEN";
    lpg_pgl.conn.ready = lpg_pglisten_ready;
    lpg_pgl.conn.result = lpg_pglisten_result;
    lpg_pgl.conn.done = lpg_pglisten_done;
    lpg_pgl.conn.notify = lpg_pglisten_notify;
    lpg_pgl.conn.down = lpg_pglisten_down;

    lpg_shm_set_db(h->shm, false, "connecting");

    lpg_pgconn_params(&p, conf, NULL, "lpgate master");
    lpg_pgasync_start(&lpg_pgl.conn, &p);
}


void
lpg_pglisten_reconfigure(const lpg_conf_t *conf)
{
    lpg_pgconn_params_t p;

    lpg_pgconn_params(&p, conf, NULL, "lpgate master");
    lpg_pgl.conf = conf;

    if (lpg_pgasync_same_params(&p, &lpg_pgl.conn.params)) {
        /* the old params borrowed the old conf's strings: rebind, no
         * reconnect */
        lpg_pgasync_rebind(&lpg_pgl.conn, &p);
        return;
    }

    lpg_log(LPG_LOG_NOTICE, 0,
            "database settings changed, reconnecting the LISTEN connection");

    lpg_pgasync_reset(&lpg_pgl.conn, &p);
}


void
lpg_pglisten_stop(void)
{
    lpg_pgasync_stop(&lpg_pgl.conn);
}


void
lpg_pglisten_atfork_child(void)
{
    lpg_pgasync_forget(&lpg_pgl.conn);
}


bool
lpg_pglisten_up(void)
{
    return lpg_pgl.listening;
}


static void
lpg_pglisten_ready(lpg_pgasync_t *a)
{
    char *ident, query[512];

    ident = PQescapeIdentifier(a->conn, lpg_pgl.conf->listen_channel,
                               strlen(lpg_pgl.conf->listen_channel));
    if (ident == NULL) {
        lpg_pgasync_reset(a, NULL);
        return;
    }

    snprintf(query, sizeof(query),
             "SELECT current_setting('max_connections')::int, "
             "current_setting('superuser_reserved_connections')::int; "
             "LISTEN %s",
             ident);
    PQfreemem(ident);

    lpg_pgl.setup_failed = false;

    if (lpg_pgasync_query(a, query) != LPG_OK) {
        return;
    }
}


static void
lpg_pglisten_result(lpg_pgasync_t *a, PGresult *res)
{
    char         msg[1024];
    lpg_budget_t b;

    switch (PQresultStatus(res)) {

    case PGRES_COMMAND_OK:
        return;

    case PGRES_TUPLES_OK:
        if (!lpg_pgl.check_budget || PQntuples(res) != 1) {
            return;
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
            return;
        }

        lpg_log(LPG_LOG_NOTICE, 0,
                "connection budget: (1 + %d + %d) * %d = %d < %d - %d",
                b.workers, b.max_cron_threads, b.db_maxconn,
                lpg_budget_need(&b), b.max_connections, b.reserved);
        return;

    default:
        lpg_log(LPG_LOG_ERR, 0, "LISTEN setup failed: %s",
                PQresultErrorMessage(res));
        lpg_pgl.setup_failed = true;
        return;
    }
}


static void
lpg_pglisten_done(lpg_pgasync_t *a)
{
    if (lpg_pgl.setup_failed) {
        lpg_pgasync_reset(a, NULL);
        return;
    }

    if (lpg_pgl.listening) {
        return;
    }

    lpg_pgl.listening = true;
    lpg_shm_set_db(lpg_pgl.h.shm, true, NULL);

    lpg_log(LPG_LOG_NOTICE, 0, "LISTEN connection up, listening on \"%s\"",
            lpg_pgl.conf->listen_channel);

    if (lpg_pgl.h.connected != NULL) {
        lpg_pgl.h.connected(lpg_pgl.h.data);
    }
}


static void
lpg_pglisten_notify(lpg_pgasync_t *a, const PGnotify *n)
{
    if (lpg_pgl.h.notify != NULL) {
        lpg_pgl.h.notify(lpg_pgl.h.data, n->extra);
    }
}


static void
lpg_pglisten_down(lpg_pgasync_t *a, const char *err)
{
    if (lpg_pgl.listening) {
        atomic_fetch_add(&lpg_pgl.h.shm->header->listen_reconnects, 1);
    }

    lpg_pgl.listening = false;
    lpg_shm_set_db(lpg_pgl.h.shm, false, err);
}
