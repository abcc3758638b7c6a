/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch.h: the master's bus_bus reader, one query per NOTIFY batch.
 *
 * For every served database the master keeps one query connection and a
 * cursor.  A NOTIFY marks the databases it names; at the end of the loop
 * iteration each marked database runs one fetch (id > cursor), whatever
 * the number of waiting polls, appends the rows to the shared ring and
 * rings every worker's doorbell once.  Fetches of one database never
 * overlap: a NOTIFY during a fetch marks it again.
 */

#ifndef LPG_FETCH_H
#define LPG_FETCH_H


#include "lpg_conf.h"
#include "lpg_ring.h"
#include "lpg_shm.h"

#include <ev.h>


/* conf, shm and ring are borrowed for the master's life; doorbells is the
 * master's table of eventfds, -1 where a slot has none */
int lpg_fetch_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
                   lpg_ring_t *ring, const int *doorbells,
                   int nslots) LPG_MUSTCHECK;

void lpg_fetch_reconfigure(const lpg_conf_t *conf);

/* a NOTIFY payload from the LISTEN connection (borrowed for the call) */
void lpg_fetch_notify(const char *payload);

/* every database, e.g. after the LISTEN connection came back */
void lpg_fetch_all(void);

void lpg_fetch_stop(void);
void lpg_fetch_atfork_child(void);


#endif /* LPG_FETCH_H */
