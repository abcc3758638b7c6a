/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pglisten.h: the master's one LISTEN connection, driven by libev.
 *
 * It connects without blocking, LISTENs on the configured channel, watches
 * the socket, and on any failure publishes "database down" in the shared
 * segment and reconnects with a short exponential backoff (100 ms first,
 * doubling, capped at 5 s).  Notifications are handed to a callback.
 */

#ifndef LPG_PGLISTEN_H
#define LPG_PGLISTEN_H


#include "lpg_conf.h"
#include "lpg_shm.h"
#include "lpg_budget.h"

#include <ev.h>


typedef struct {
    struct ev_loop *loop;
    lpg_shm_t      *shm;

    /* called with every NOTIFY payload; payload is borrowed for the call */
    void (*notify)(void *data, const char *payload);

    /* called once the connection is up and listening (first time and after
     * every reconnect) so the caller can fetch what it missed */
    void (*connected)(void *data);

    /* called when a deferred budget check fails: the gateway must stop */
    void (*budget_failed)(void *data, const char *msg);

    void *data;
} lpg_pglisten_handlers_t;


/* conf is borrowed until the next lpg_pglisten_reconfigure() or stop */
void lpg_pglisten_start(const lpg_conf_t              *conf,
                        const lpg_pglisten_handlers_t *h, bool check_budget);

/* reconnects when the connection parameters changed */
void lpg_pglisten_reconfigure(const lpg_conf_t *conf);

/* closes the connection politely (master shutting down) */
void lpg_pglisten_stop(void);

/* in a freshly forked worker: stop the watchers, close the socket, never
 * touch the connection again (PQfinish would talk on the master's socket) */
void lpg_pglisten_atfork_child(void);

bool lpg_pglisten_up(void);


#endif /* LPG_PGLISTEN_H */
