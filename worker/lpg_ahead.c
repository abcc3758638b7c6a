/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ahead.c: the waiters whose last is above this node's largest id
 * (lpg_ahead.h): one list per worker, one timer that looks at the
 * master's fetch counters every LPG_AHEAD_TICK while the list is not
 * empty.  The waiters are owned by their transports' objects; a held
 * waiter (lpg_ahead_hold) is allocated here while it waits and owned by
 * the slot its transport gives.
 */

#include "lpg_ahead.h"
#include "lpg_bus.h"
#include "lpg_http.h"
#include "lpg_log.h"
#include "lpg_time.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>


#define LPG_AHEAD_TICK 0.005


static struct {
    struct ev_loop *loop;
    ev_timer        timer;
    lpg_ahead_t    *head;
    lpg_ahead_t    *tail;
} lpg_ahead;


struct lpg_ahead_held_s {
    lpg_ahead_t        a; /* first: done gets it back */
    lpg_ahead_held_t **slot;
    lpg_ahead_held_pt  done;
    void              *owner;
    json_t            *what; /* referenced */
    int64_t            last;
};


static void lpg_ahead_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_ahead_held_done(lpg_ahead_t *a);


void
lpg_ahead_init(struct ev_loop *loop)
{
    if (lpg_ahead.loop != NULL) {
        return;
    }

    lpg_ahead.loop = loop;
    ev_timer_init(&lpg_ahead.timer, lpg_ahead_cb, LPG_AHEAD_TICK,
                  LPG_AHEAD_TICK);
}


void
lpg_ahead_wait(lpg_ahead_t *a, int db, lpg_ahead_pt done)
{
    a->db = db;
    a->done = done;
    a->mark = lpg_bus_fetch_mark(db);
    a->since = lpg_time_mono_ms();
    a->waiting = true;

    a->prev = lpg_ahead.tail;
    a->next = NULL;
    if (lpg_ahead.tail != NULL) {
        lpg_ahead.tail->next = a;

    } else {
        lpg_ahead.head = a;
    }

    lpg_ahead.tail = a;

    /* the master fetches now rather than at its next tick */
    lpg_http_kick();

    if (!ev_is_active(&lpg_ahead.timer)) {
        ev_timer_start(lpg_ahead.loop, &lpg_ahead.timer);
    }
}


void
lpg_ahead_cancel(lpg_ahead_t *a)
{
    if (!a->waiting) {
        return;
    }

    if (a->prev != NULL) {
        a->prev->next = a->next;

    } else {
        lpg_ahead.head = a->next;
    }

    if (a->next != NULL) {
        a->next->prev = a->prev;

    } else {
        lpg_ahead.tail = a->prev;
    }

    a->next = a->prev = NULL;
    a->waiting = false;

    if (lpg_ahead.head == NULL) {
        ev_timer_stop(lpg_ahead.loop, &lpg_ahead.timer);
    }
}


static void
lpg_ahead_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t      now = lpg_time_mono_ms();
    lpg_ahead_t *a;

    (void) loop;
    (void) w;
    (void) revents;

    /* from the head again after each done: it may cancel other waiters */
    for (;;) {
        for (a = lpg_ahead.head; a != NULL; a = a->next) {
            if (lpg_bus_fetched_since(a->db, a->mark)
                || now - a->since >= LPG_AHEAD_MAX) {
                break;
            }
        }

        if (a == NULL) {
            return;
        }

        lpg_ahead_cancel(a);
        a->done(a);
    }
}


int
lpg_ahead_hold(lpg_ahead_held_t **slot, int db, json_t *what, int64_t last,
               lpg_ahead_held_pt done, void *owner)
{
    lpg_ahead_held_t *h = *slot;

    if (h == NULL) {
        h = calloc(1, sizeof(*h));
        if (h == NULL) {
            lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
            return LPG_ERROR;
        }

        h->slot = slot;
        h->done = done;
        h->owner = owner;
        *slot = h;
        lpg_ahead_wait(&h->a, db, lpg_ahead_held_done);
    }

    json_decref(h->what);
    h->what = json_incref(what);
    h->last = last;

    return LPG_OK;
}


void
lpg_ahead_drop(lpg_ahead_held_t **slot)
{
    lpg_ahead_held_t *h = *slot;

    if (h == NULL) {
        return;
    }

    lpg_ahead_cancel(&h->a);
    json_decref(h->what);
    free(h);
    *slot = NULL;
}


static void
lpg_ahead_held_done(lpg_ahead_t *a)
{
    lpg_ahead_held_t *h = (lpg_ahead_held_t *) a;
    lpg_ahead_held_pt done = h->done;
    void             *owner = h->owner;
    json_t           *what = h->what;
    int64_t           last = h->last;

    *h->slot = NULL;
    free(h);

    done(owner, what, last);
}
