/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_presence.h: Odoo's bus_presence kept fresh without a write per poll.
 *
 * Odoo writes bus_presence and commits on every poll that carries
 * bus_inactivity.  A worker instead remembers who polls (user or 15's
 * guest, per database) and, at most once per presence_interval, writes
 * them all with ONE statement per database: last_poll = now for everyone
 * with a poll in flight or begun since the last write, last_presence =
 * the newest now - bus_inactivity seen.  The statement runs on a
 * connection opened for it inside a cron slot (max_cron_threads *
 * db_maxconn of them, shared by the workers), so the budget holds.
 */

#ifndef LPG_PRESENCE_H
#define LPG_PRESENCE_H


#include "lpg_conf.h"
#include "lpg_shm.h"

#include <ev.h>


typedef struct lpg_presence_s lpg_presence_t;


int lpg_presence_init(struct ev_loop *loop, const lpg_conf_t *conf,
                      lpg_shm_t *shm, lpg_shm_worker_t *stats) LPG_MUSTCHECK;

/*
 * A poll of user uid (or, uid 0, guest) of database db began, with Odoo's
 * bus_inactivity in ms.  The poll holds the returned entry until it ends
 * (lpg_presence_release); NULL when presence is not written.
 */
lpg_presence_t *lpg_presence_hold(int db, int64_t uid, int64_t guest,
                                  int64_t inactivity_ms);

void lpg_presence_release(lpg_presence_t *p);


#endif /* LPG_PRESENCE_H */
