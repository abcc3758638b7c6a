/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc_int.h: what lpg_wsc.c (a websocket's socket: upgrade, reads,
 * writes, close) and lpg_wsc_time.c (its deadline lists and the stop)
 * share; nothing outside those two includes it.
 */

#ifndef LPG_WSC_INT_H
#define LPG_WSC_INT_H

#include "lpg_wsc.h"


/* the socket whose link[slot] is k */
#define lpg_wsc_of(k, slot) lpg_dlist_obj(k, lpg_wsc_t, link, slot)


/* the layer's globals */
typedef struct {
    lpg_http_ctx_t    ctx;
    bool              inited;
    lpg_dlist_t       lists[LPG_WSC_LISTS];
    lpg_dlist_timer_t timer;
    ev_timer          trickle;
    size_t            trickle_n; /* sockets closed per trickle tick */
    lpg_wsc_t        *all;
    size_t            open;
    bool              stopping;
    bool              retiring; /* the stop is a retirement (4002) */
} lpg_wsc_global_t;


/* the layer's state, owned by lpg_wsc.c */
extern lpg_wsc_global_t lpg_wsc;


void lpg_wsc_doom(lpg_wsc_t *w);
void lpg_wsc_free(lpg_wsc_t *w);
void lpg_wsc_unlink_all(lpg_wsc_t *w);
void lpg_wsc_list_push(lpg_wsc_t *w, int list, int64_t deadline);
void lpg_wsc_list_remove(lpg_wsc_t *w, int slot);
void lpg_wsc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
void lpg_wsc_trickle_cb(struct ev_loop *loop, ev_timer *t, int revents);

#endif /* LPG_WSC_INT_H */
