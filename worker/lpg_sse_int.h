/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sse_int.h: a Server-Sent Events stream's state, private to the
 * transport's two files: lpg_sse.c (the request, the replay, the
 * deliveries) and lpg_sse_life.c (the socket's output, the deadline
 * lists, closing, the stop).
 */

#ifndef LPG_SSE_INT_H
#define LPG_SSE_INT_H


#include "lpg_ahead.h"
#include "lpg_dlist.h"
#include "lpg_sse.h"
#include "lpg_sub.h"

#include <ev.h>


/* the deadline lists: each of one duration, so appending keeps order and
 * one ev_timer serves them all */
enum {
    LPG_SSE_BEAT = 0, /* sse_heartbeat: the next comment line */
    LPG_SSE_DOOM,     /* deadline 0: freed at the next timer run */
    LPG_SSE_STALL,    /* output blocked: send_timeout */
    LPG_SSE_LISTS
};

/* a stream's link in each kind of list: BEAT and DOOM share slot 0 */
enum { LPG_SSE_SLOT_TIME = 0, LPG_SSE_SLOT_STALL, LPG_SSE_SLOTS };


typedef struct lpg_sse_s lpg_sse_t;

struct lpg_sse_s {
    lpg_sub_t sub; /* first: the sub is the stream */
    ev_io     io;
    int       fd;

    /* output the socket did not take: [off, out.len) */
    lpg_buf_t out;
    size_t    off;

    /* its last above this node's high: waiting for a fetch (owned) */
    lpg_ahead_t ahead;

    bool closing; /* no more events: closed once out is written */
    bool doomed;  /* the fd is closed; freed at the next timer run */

    lpg_dlist_link_t link[LPG_SSE_SLOTS];

    lpg_sse_t *next; /* every stream not closing */
    lpg_sse_t *prev;
};


/* the stream whose link[slot] is k */
#define lpg_sse_of(k, slot) lpg_dlist_obj(k, lpg_sse_t, link, slot)


/* the transport's globals (lpg_sse_life.c) */
typedef struct {
    lpg_http_ctx_t    ctx;
    lpg_dlist_t       lists[LPG_SSE_LISTS];
    lpg_dlist_timer_t timer;
    ev_timer          trickle;
    size_t            trickle_n; /* streams closed per trickle tick */
    lpg_sse_t        *all;
    size_t            open;
    bool              stopping;
} lpg_sse_global_t;

extern lpg_sse_global_t lpg_sse;


/* lpg_sse_life.c */
void lpg_sse_life_init(void);
void lpg_sse_opened(lpg_sse_t *s, int fd);
int  lpg_sse_send(lpg_sse_t *s, const char *p, size_t len, bool force);
void lpg_sse_finish(lpg_sse_t *s);
void lpg_sse_doom(lpg_sse_t *s);


#endif /* LPG_SSE_INT_H */
