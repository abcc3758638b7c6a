/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_budget.h: the connection-budget formula and the sizing report.
 *
 * Operators size Odoo with (1 + workers + max_cron_threads) * db_maxconn <
 * max_connections - superuser_reserved_connections; lpgate enforces the
 * same formula for itself.  Pure arithmetic and text: the caller reads the
 * server's settings and the machine's limits and passes them in.
 */

#ifndef LPG_BUDGET_H
#define LPG_BUDGET_H


#include "lpg_core.h"

#include <stdio.h>


/* descriptors a worker keeps for itself: listener, database, log, spares */
#define LPG_BUDGET_FD_RESERVE 32

/* kernel memory of one idle TCP socket, measured on the dev machine */
#define LPG_BUDGET_SOCKET_KIB 4


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
} lpg_budget_t;


/* (1 + workers + max_cron_threads) * db_maxconn */
int lpg_budget_need(const lpg_budget_t *b);

/* max_connections - superuser_reserved_connections, -1 when unknown */
int lpg_budget_allowed(const lpg_budget_t *b);

bool lpg_budget_fits(const lpg_budget_t *b);

/* the formula with the numbers filled in and what to change, for refusal */
void lpg_budget_explain(const lpg_budget_t *b, char *buf, size_t len);

/* parked polls one worker can hold within its fd limit */
long lpg_budget_polls_per_worker(const lpg_budget_t *b);

/* the --sizing report; why is the database error when max_connections
 * could not be read */
void lpg_budget_report(const lpg_budget_t *b, const char *why, FILE *out);


#endif /* LPG_BUDGET_H */
