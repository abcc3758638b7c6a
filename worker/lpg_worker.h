/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_worker.h: the entry point of a forked worker process.
 *
 * A worker runs the default libev loop (re-initialised after fork), accepts
 * on its slot's listening socket, serves HTTP, heartbeats its stats slot
 * and exits when told to (signals) or when the master dies (EOF on the
 * death pipe).
 */

#ifndef LPG_WORKER_H
#define LPG_WORKER_H


#include "lpg_conf.h"
#include "lpg_ring.h"
#include "lpg_shm.h"

#include <ev.h>


typedef struct {
    int               slot;
    unsigned          generation;
    int               lsock;      /* listening socket, owned */
    int               death_fd;   /* read end of the death pipe, owned */
    int               doorbell;   /* eventfd the master rings, owned */
    int               kick_fd;    /* eventfd that wakes the master's fetch */
    int               admin_fd;   /* shared admin listener, -1: none */
    int               handoff_rx; /* connections from other workers */
    int               handoff_tx[LPG_MAX_WORKERS]; /* to each slot, -1 */
    lpg_ring_t       *ring;                        /* workers only read it */
    const lpg_conf_t *conf; /* the master's copy, read-only */
    lpg_shm_t        *shm;
} lpg_worker_args_t;


/* never returns: the process exits with 0, 1 or LPG_EXIT_FATAL */
void lpg_worker_main(struct ev_loop *loop, const lpg_worker_args_t *args)
    __attribute__((noreturn));


#endif /* LPG_WORKER_H */
