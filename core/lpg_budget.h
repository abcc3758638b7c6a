/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_budget.h: the connection-budget formula and the sizing report.
 *
 * Operators size Odoo with (1 + workers + max_cron_threads) * db_maxconn <
 * max_connections - superuser_reserved_connections; lpgate enforces the
 * same formula for itself.  Pure arithmetic and text: the caller reads the
 * server's settings and the machine's limits and passes them in.
 *
 * Several nodes on one server: each announces its claim, the formula's
 * left side, in the application_name of its LISTEN connection,
 * "lpgate:<node_name>:<claim>" (LPG_BUDGET_CLAIM_SQL reads them back from
 * pg_stat_activity); a node fits when its own claim plus the other nodes'
 * claims stays below the same right side.
 */

#ifndef LPG_BUDGET_H
#define LPG_BUDGET_H


#include "lpg_core.h"

#include <stdio.h>


/* descriptors a worker keeps for itself: listener, database, log, spares */
#define LPG_BUDGET_FD_RESERVE 32

/* kernel memory of one idle TCP socket, measured on the dev machine */
#define LPG_BUDGET_SOCKET_KIB 4


/* "lpgate:" node ":" claim must fit application_name (NAMEDATALEN - 1) */
#define LPG_BUDGET_CLAIM_PREFIX "lpgate:"
#define LPG_BUDGET_NODE_MAX     48
#define LPG_BUDGET_CLAIM_LEN    64

/* other nodes listed by name (the sum counts them all) */
#define LPG_BUDGET_NODES_MAX 32

/*
 * One row per other live claim: max_connections, reserved, then the
 * application_name (NULL when no other node claims: one row always comes
 * back).  The asking connection's own row is left out.
 */
#define LPG_BUDGET_CLAIM_SQL                                                   \
    "SELECT current_setting('max_connections')::int, "                         \
    "current_setting('superuser_reserved_connections')::int, "                 \
    "a.application_name FROM (SELECT 1) AS one "                               \
    "LEFT JOIN pg_stat_activity AS a "                                         \
    "ON a.application_name LIKE 'lpgate:%' AND a.pid <> pg_backend_pid()"


typedef struct {
    char name[LPG_BUDGET_NODE_MAX + 1];
    int  claim;
} lpg_budget_node_t;


typedef struct {
    int     workers;
    int     max_cron_threads;
    int     db_maxconn;
    int     max_connections; /* -1: unknown */
    int     reserved;        /* superuser_reserved_connections */
    long    fd_soft;
    long    fd_hard;
    int     ncpu;
    int64_t mem_total; /* bytes, 0: unknown */

    /* the cluster: this node's name and the other nodes' live claims */
    const char       *node_name;
    int               others;    /* sum of the other nodes' claims */
    int               nothers;   /* how many other nodes claim */
    bool              self_seen; /* a claim under this node's own name */
    lpg_budget_node_t nodes[LPG_BUDGET_NODES_MAX];
} lpg_budget_t;


/* (1 + workers + max_cron_threads) * db_maxconn */
int lpg_budget_need(const lpg_budget_t *b);

/* max_connections - superuser_reserved_connections, -1 when unknown */
int lpg_budget_allowed(const lpg_budget_t *b);

/* need + the other nodes' claims < allowed (or allowed unknown) */
bool lpg_budget_fits(const lpg_budget_t *b);

/* "lpgate:<node>:<need>" into buf (LPG_BUDGET_CLAIM_LEN bytes) */
void lpg_budget_claim_name(const char *node, int need, char *buf, size_t len);

/*
 * Counts one application_name read with LPG_BUDGET_CLAIM_SQL: another
 * node's claim is added to others; a claim under b->node_name is this node
 * (a binary upgrade's old master, or lpgate --check beside the running
 * node) and is not counted twice; anything that does not parse is ignored.
 */
void lpg_budget_add_claim(lpg_budget_t *b, const char *application_name);

/* node names: 1 to LPG_BUDGET_NODE_MAX of [A-Za-z0-9._:-] */
bool lpg_budget_node_valid(const char *node);

/* the formula with the numbers filled in and what to change, for refusal */
void lpg_budget_explain(const lpg_budget_t *b, char *buf, size_t len);

/* parked polls one worker can hold within its fd limit */
long lpg_budget_polls_per_worker(const lpg_budget_t *b);

/* the --sizing report; why is the database error when max_connections
 * could not be read */
void lpg_budget_report(const lpg_budget_t *b, const char *why, FILE *out);

/* the cluster lines of --sizing and --check, each led by indent */
void lpg_budget_cluster(const lpg_budget_t *b, const char *indent, FILE *out);


#endif /* LPG_BUDGET_H */
