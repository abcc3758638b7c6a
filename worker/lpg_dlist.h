/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_dlist.h: deadline lists, what the websocket and SSE transports share
 * for their timers.  Each list holds objects of one duration, so appending
 * at the tail keeps it in deadline order and one ev_timer serves a set of
 * lists (O(1) per object, whatever their number).  An object embeds one
 * link per slot (lists that never hold it at once share a slot); the lists
 * know nothing of the objects: lpg_dlist_obj() gets one back from its link.
 * Also the retire trickle: a stop's closes spread over its span.
 */

#ifndef LPG_DLIST_H
#define LPG_DLIST_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#define LPG_DLIST_TRICKLE_MS 50 /* a retiring worker's close ticks */
/* a future deadline's timer fires on this grid of the monotonic clock (at
 * most this late), so that objects due close together are served in one
 * timer run: 100,000 sockets parked over a few seconds ping in a few
 * hundred runs, not in tens of thousands */
#define LPG_DLIST_SLACK_MS 50


typedef struct lpg_dlist_link_s lpg_dlist_link_t;

/* embedded in the object (an array, one per slot); owned by the lists */
struct lpg_dlist_link_s {
    lpg_dlist_link_t *prev;
    lpg_dlist_link_t *next;
    int64_t           deadline; /* monotonic ms */
    int               list;     /* index in its set of lists, -1: in none */
};


typedef struct {
    lpg_dlist_link_t *head;
    lpg_dlist_link_t *tail;
    int               slot; /* which of an object's links it threads */
} lpg_dlist_t;


/* the one ev_timer of a set of lists, and the deadline it is set for */
typedef struct {
    ev_timer ev;
    int64_t  at; /* monotonic ms it fires at */
} lpg_dlist_timer_t;


/* the object of type whose member[slot] is the link k */
#define lpg_dlist_obj(k, type, member, slot)                                   \
    ((type *) ((char *) (k) -offsetof(type, member)                            \
               - (size_t) (slot) * sizeof(lpg_dlist_link_t)))


/* k (out of the list it is in, if any) at the tail of lists[list], or at
 * its head if first */
void lpg_dlist_push(lpg_dlist_t *lists, int list, lpg_dlist_link_t *k,
                    int64_t deadline, bool first);

/* k out of the list of lists it is in; nothing if in none */
void lpg_dlist_remove(lpg_dlist_t *lists, lpg_dlist_link_t *k);

/* the head of lists[list] taken out if its deadline is by now, or NULL */
lpg_dlist_link_t *lpg_dlist_pop_due(lpg_dlist_t *lists, int list, int64_t now);

/* the earliest deadline of the n lists' heads, INT64_MAX if all empty */
int64_t lpg_dlist_next(const lpg_dlist_t *lists, int n);

/* the timer fires by deadline, or on the next LPG_DLIST_SLACK_MS of the
 * clock for a deadline to come */
void lpg_dlist_timer_at(struct ev_loop *loop, lpg_dlist_timer_t *t,
                        int64_t deadline);

/* at the end of the timer's callback: set for the n lists' next deadline */
void lpg_dlist_timer_rearm(struct ev_loop *loop, lpg_dlist_timer_t *t,
                           const lpg_dlist_t *lists, int n);

/*
 * The retire trickle: *span_ms capped at cap_ms, t (its callback closes
 * the returned number per tick) started now and every
 * LPG_DLIST_TRICKLE_MS (or span / open when fewer are open than that
 * gives ticks), so that open objects are closed evenly over the span.
 */
size_t lpg_dlist_trickle(struct ev_loop *loop, ev_timer *t, int64_t *span_ms,
                         int64_t cap_ms, size_t open);

#endif /* LPG_DLIST_H */
