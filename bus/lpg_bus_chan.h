/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bus_chan.h: the history's channel index (lpg_bus.c's helper): the
 * newest record of each (database, channel) in the history, and through
 * each record's prev, the ones before it.  Only lpg_bus.c changes it.
 */

#ifndef LPG_BUS_CHAN_H
#define LPG_BUS_CHAN_H


#include "lpg_bus.h"


int  lpg_bus_chan_init(void) LPG_MUSTCHECK;
void lpg_bus_chan_free(void);

/* the hash a record of db on channel keeps in chash */
uint32_t lpg_bus_chan_hash(int db, const char *channel, size_t len);

/* r (seq, db, channel and chash set) was just appended: r->prev becomes
 * its channel's newest record before it, and r the newest */
void lpg_bus_chan_add(lpg_bus_rec_t *r);

/* r leaves the history (evicted, or its database reset), db still its
 * own: the index forgets it if it is its channel's newest */
void lpg_bus_chan_remove(const lpg_bus_rec_t *r);

/* the newest record of (db, channel) in the history, or NULL */
const lpg_bus_rec_t *lpg_bus_chan_newest(int db, const char *channel,
                                         size_t len);


#endif /* LPG_BUS_CHAN_H */
