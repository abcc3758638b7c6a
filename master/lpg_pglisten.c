/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pglisten.c: the master's LISTEN connection.
 *
 * Its application_name announces this node's claim on the server's
 * connections, "lpgate:<node_name>:<claim>" (lpg_budget.h), for the other
 * nodes' budget checks to read.  On every (re)connect it runs one setup
 * query that reads the connection limits and the other nodes' claims (for
 * a budget check deferred from the start) and LISTENs; once it
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
static void lpg_pglisten_params(lpg_pgconn_params_t *p, const lpg_conf_t *conf);
static bool lpg_pglisten_only_name_differs(lpg_pgconn_params_t *p);
static void lpg_pglisten_rename(lpg_pgasync_t *a);


static struct {
    const lpg_conf_t       *conf;
    lpg_pglisten_handlers_t h;
    lpg_pgasync_t           conn;
    bool                    check_budget;
    bool                    listening;
    bool                    setup_failed;
    /* a reloaded claim waits for the running query to announce itself */
    bool rename;
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

    lpg_pglisten_params(&p, conf);
    lpg_pgasync_start(&lpg_pgl.conn, &p);
}


void
lpg_pglisten_reconfigure(const lpg_conf_t *conf)
{
    lpg_pgconn_params_t p;

    lpg_pglisten_params(&p, conf);
    lpg_pgl.conf = conf;

    if (lpg_pgasync_same_params(&p, &lpg_pgl.conn.params)) {
        /* the old params borrowed the old conf's strings: rebind, no
         * reconnect */
        lpg_pgasync_rebind(&lpg_pgl.conn, &p);
        return;
    }

    if (lpg_pglisten_only_name_differs(&p)) {
        /* only the claim changed: announce it on the live connection
         * (SET application_name shows at once in pg_stat_activity), so
         * that a reload is no outage: no gap in LISTEN, /health stays up */
        lpg_pgasync_rebind(&lpg_pgl.conn, &p);
        lpg_pgl.rename = true;
        lpg_pglisten_rename(&lpg_pgl.conn);
        return;
    }

    lpg_log(LPG_LOG_NOTICE, 0,
            "database settings changed, reconnecting the LISTEN connection");

    lpg_pgasync_reset(&lpg_pgl.conn, &p);
}


/* p equals the connection's parameters but for application_name's value */
static bool
lpg_pglisten_only_name_differs(lpg_pgconn_params_t *p)
{
    bool same;
    char mine[sizeof(p->appname)];

    if (strcmp(p->appname, lpg_pgl.conn.params.appname) == 0) {
        return false;
    }

    /* p's application_name value points at p->appname: compare the rest
     * with the connection's name in its place */
    memcpy(mine, p->appname, sizeof(mine));
    memcpy(p->appname, lpg_pgl.conn.params.appname, sizeof(mine));
    same = lpg_pgasync_same_params(p, &lpg_pgl.conn.params);
    memcpy(p->appname, mine, sizeof(mine));

    return same;
}


/* sends the pending SET application_name when the connection is up and
 * idle; a connection that is down reconnects with the new name anyway */
static void
lpg_pglisten_rename(lpg_pgasync_t *a)
{
    char *lit, query[256];

    if (!lpg_pgl.rename) {
        return;
    }

    if (!lpg_pgl.listening || !lpg_pgasync_idle(a)) {
        /* down, in its setup or running a query: done() comes back here
         * (after a reconnect the SET repeats what the startup packet
         * said, which is harmless) */
        return;
    }

    lit =
        PQescapeLiteral(a->conn, a->params.appname, strlen(a->params.appname));
    if (lit == NULL) {
        lpg_pgasync_reset(a, NULL);
        return;
    }

    snprintf(query, sizeof(query), "SET application_name = %s", lit);
    PQfreemem(lit);

    lpg_pgl.rename = false;

    if (lpg_pgasync_query(a, query) == LPG_OK) {
        lpg_log(LPG_LOG_NOTICE, 0, "connection claim now \"%s\"",
                a->params.appname);
    }
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


/* the LISTEN connection's parameters: a changed claim (workers, db_maxconn,
 * max_cron_threads or node_name reloaded) reconnects with the new one */
static void
lpg_pglisten_params(lpg_pgconn_params_t *p, const lpg_conf_t *conf)
{
    char         name[LPG_BUDGET_CLAIM_LEN];
    lpg_budget_t b;

    memset(&b, 0, sizeof(b));
    b.workers = conf->workers;
    b.max_cron_threads = conf->max_cron_threads;
    b.db_maxconn = conf->db_maxconn;

    lpg_pgconn_params(p, conf, NULL, "lpgate master");
    lpg_budget_claim_name(conf->node_name, lpg_budget_need(&b), name,
                          sizeof(name));
    lpg_pgconn_params_appname(p, name);
}


static void
lpg_pglisten_ready(lpg_pgasync_t *a)
{
    char *ident, query[1024];

    ident = PQescapeIdentifier(a->conn, lpg_pgl.conf->listen_channel,
                               strlen(lpg_pgl.conf->listen_channel));
    if (ident == NULL) {
        lpg_pgasync_reset(a, NULL);
        return;
    }

    snprintf(query, sizeof(query), "%s; LISTEN %s", LPG_BUDGET_CLAIM_SQL,
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
    int          i;
    char         msg[2048];
    lpg_budget_t b;

    switch (PQresultStatus(res)) {

    case PGRES_COMMAND_OK:
        return;

    case PGRES_TUPLES_OK:
        if (!lpg_pgl.check_budget || PQntuples(res) < 1) {
            return;
        }

        memset(&b, 0, sizeof(b));
        b.workers = lpg_pgl.conf->workers;
        b.max_cron_threads = lpg_pgl.conf->max_cron_threads;
        b.db_maxconn = lpg_pgl.conf->db_maxconn;
        b.node_name = lpg_pgl.conf->node_name;
        b.max_connections = atoi(PQgetvalue(res, 0, 0));
        b.reserved = atoi(PQgetvalue(res, 0, 1));
        lpg_pgl.check_budget = false;

        for (i = 0; i < PQntuples(res); i++) {
            if (!PQgetisnull(res, i, 2)) {
                lpg_budget_add_claim(&b, PQgetvalue(res, i, 2));
            }
        }

        if (!lpg_budget_fits(&b)) {
            lpg_budget_explain(&b, msg, sizeof(msg));
            lpg_pgl.h.budget_failed(lpg_pgl.h.data, msg);
            return;
        }

        lpg_log(LPG_LOG_NOTICE, 0,
                "connection budget: (1 + %d + %d) * %d = %d < %d - %d; "
                "node \"%s\", %d other node(s) claim %d",
                b.workers, b.max_cron_threads, b.db_maxconn,
                lpg_budget_need(&b), b.max_connections, b.reserved, b.node_name,
                b.nothers, b.others);
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
        lpg_pglisten_rename(a);
        return;
    }

    lpg_pgl.listening = true;
    lpg_shm_set_db(lpg_pgl.h.shm, true, NULL);

    lpg_log(LPG_LOG_NOTICE, 0, "LISTEN connection up, listening on \"%s\"",
            lpg_pgl.conf->listen_channel);

    if (lpg_pgl.h.connected != NULL) {
        lpg_pgl.h.connected(lpg_pgl.h.data);
    }

    /* a claim reloaded during the setup: its startup packet may have
     * carried the old name */
    lpg_pglisten_rename(a);
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
