/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_handoff.h: hands an accepted connection to another worker.
 *
 * SO_REUSEPORT spreads connections over the workers without regard to
 * what a request is about; a request that belongs to state another
 * worker holds (a Socket.IO session) goes there with its socket and the
 * bytes already read, over the unix sockets the master made before
 * forking (one SOCK_SEQPACKET pair per worker slot; SCM_RIGHTS).  The
 * receiving worker parses the bytes as if it had read them itself.
 */

#ifndef LPG_HANDOFF_H
#define LPG_HANDOFF_H


#include "lpg_http.h"

#include <ev.h>


/* bytes of a request that can be handed over (larger: 503) */
#define LPG_HANDOFF_MAX (256 * 1024)


/* rx: this slot's receiving end (-1: none); tx[i]: slot i's sending end,
 * for n slots; all borrowed for the worker's life */
void lpg_handoff_init(struct ev_loop *loop, int slot, int rx, const int *tx,
                      int n);

/*
 * Passes c (its socket and every byte of its current request and after)
 * to the worker of slot: LPG_OK and c is gone, or LPG_ERROR (logged) and
 * c is still the caller's to answer.
 */
int lpg_handoff_pass(lpg_http_conn_t *c, int slot) LPG_MUSTCHECK;

/* the worker stops: no more connections are taken from the others */
void lpg_handoff_stop(void);


#endif /* LPG_HANDOFF_H */
