/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_dispatch.h: the worker's index of parked polls by channel.
 *
 * It replaces Odoo's ImDispatch: a canonical key (database, '\0', channel
 * in json_dump text) maps to the subscriptions parked on it.  The caller
 * owns the subscription nodes (embedded in its poll object) and the polls;
 * the index owns only its channel entries, freed when their last
 * subscription leaves.  Pure code: no libev, no libpq.
 */

#ifndef LPG_DISPATCH_H
#define LPG_DISPATCH_H


#include "lpg_core.h"


typedef struct lpg_dispatch_s      lpg_dispatch_t;
typedef struct lpg_dispatch_chan_s lpg_dispatch_chan_t;


/* one poll's presence on one channel; embedded in the caller's poll */
typedef struct lpg_dispatch_sub_s {
    struct lpg_dispatch_sub_s *next;
    struct lpg_dispatch_sub_s *prev;
    lpg_dispatch_chan_t       *chan;
    void                      *owner;
} lpg_dispatch_sub_t;


typedef void (*lpg_dispatch_cb_pt)(void *owner, void *arg);


lpg_dispatch_t *lpg_dispatch_create(void);
void            lpg_dispatch_destroy(lpg_dispatch_t *d);

/* key is a copy-in: the index keeps its own; sub must stay put until
 * removed */
int lpg_dispatch_add(lpg_dispatch_t *d, lpg_dispatch_sub_t *sub,
                     const char *key, size_t len, void *owner) LPG_MUSTCHECK;

/* removing a sub that was never added (chan == NULL) is a no-op */
void lpg_dispatch_remove(lpg_dispatch_t *d, lpg_dispatch_sub_t *sub);

/*
 * Calls cb(owner, arg) for every subscription on key.  cb may remove the
 * subscription it is called for (and others of the same owner) but must
 * not add to the index.  Returns the number of calls.
 */
size_t lpg_dispatch_match(lpg_dispatch_t *d, const char *key, size_t len,
                          lpg_dispatch_cb_pt cb, void *arg);

/* the hash of a key (FNV-1a, 64 bit), for other tables of channel keys */
uint64_t lpg_dispatch_hash(const char *key, size_t len);

size_t lpg_dispatch_channels(const lpg_dispatch_t *d);
size_t lpg_dispatch_subs(const lpg_dispatch_t *d);

/* builds the canonical key "db\0channel" into buf; returns its length or
 * 0 when it does not fit */
size_t lpg_dispatch_key(char *buf, size_t cap, const char *db, size_t db_len,
                        const char *channel, size_t channel_len);


#endif /* LPG_DISPATCH_H */
