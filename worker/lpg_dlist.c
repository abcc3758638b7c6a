/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_dlist.c: deadline lists (intrusive FIFO lists of one duration each,
 * walked by one ev_timer) and the retire trickle, for the websocket and
 * SSE transports.  What a deadline means is the caller's: this file only
 * keeps the lists and the timer.
 */

#include "lpg_core.h"
#include "lpg_dlist.h"
#include "lpg_time.h"


void
lpg_dlist_push(lpg_dlist_t *lists, int list, lpg_dlist_link_t *k,
               int64_t deadline, bool first)
{
    lpg_dlist_t *l = &lists[list];

    if (k->list != -1) {
        lpg_dlist_remove(lists, k);
    }

    if (first && l->head != NULL) {
        k->prev = NULL;
        k->next = l->head;
        l->head->prev = k;
        l->head = k;

    } else {
        k->prev = l->tail;
        k->next = NULL;
        if (l->tail != NULL) {
            l->tail->next = k;

        } else {
            l->head = k;
        }

        l->tail = k;
    }

    k->deadline = deadline;
    k->list = list;
}


void
lpg_dlist_remove(lpg_dlist_t *lists, lpg_dlist_link_t *k)
{
    lpg_dlist_t *l;

    if (k->list == -1) {
        return;
    }

    l = &lists[k->list];

    if (k->prev != NULL) {
        k->prev->next = k->next;

    } else {
        l->head = k->next;
    }

    if (k->next != NULL) {
        k->next->prev = k->prev;

    } else {
        l->tail = k->prev;
    }

    k->prev = NULL;
    k->next = NULL;
    k->list = -1;
}


lpg_dlist_link_t *
lpg_dlist_pop_due(lpg_dlist_t *lists, int list, int64_t now)
{
    lpg_dlist_link_t *k = lists[list].head;

    if (k == NULL || k->deadline > now) {
        return NULL;
    }

    lpg_dlist_remove(lists, k);

    return k;
}


int64_t
lpg_dlist_next(const lpg_dlist_t *lists, int n)
{
    int     i;
    int64_t next = INT64_MAX;

    for (i = 0; i < n; i++) {
        if (lists[i].head != NULL && lists[i].head->deadline < next) {
            next = lists[i].head->deadline;
        }
    }

    return next;
}


void
lpg_dlist_timer_at(struct ev_loop *loop, lpg_dlist_timer_t *t, int64_t deadline)
{
    int64_t now, d;

    if (ev_is_active(&t->ev) && deadline >= t->at) {
        return;
    }

    now = lpg_time_mono_ms();

    if (deadline > now) {
        /* on the grid: the neighbours due before the next step come too */
        deadline += LPG_DLIST_SLACK_MS - 1;
        deadline -= deadline % LPG_DLIST_SLACK_MS;

        if (ev_is_active(&t->ev) && deadline >= t->at) {
            return;
        }
    }

    d = deadline - now;
    d = d < 1 ? 1 : d;

    ev_timer_stop(loop, &t->ev);
    ev_timer_set(&t->ev, (double) d / 1000., 0.);
    ev_timer_start(loop, &t->ev);
    t->at = now + d;
}


void
lpg_dlist_timer_rearm(struct ev_loop *loop, lpg_dlist_timer_t *t,
                      const lpg_dlist_t *lists, int n)
{
    int64_t next = lpg_dlist_next(lists, n);

    if (next != INT64_MAX) {
        ev_timer_stop(loop, &t->ev);
        t->at = INT64_MAX;
        lpg_dlist_timer_at(loop, t, next);
    }
}


size_t
lpg_dlist_trickle(struct ev_loop *loop, ev_timer *t, int64_t *span_ms,
                  int64_t cap_ms, size_t open)
{
    size_t  ticks;
    int64_t tick_ms;

    if (*span_ms > cap_ms) {
        *span_ms = cap_ms;
    }

    ticks = *span_ms > LPG_DLIST_TRICKLE_MS
        ? (size_t) (*span_ms / LPG_DLIST_TRICKLE_MS)
        : 1;

    /* fewer connections than ticks: one per tick, the ticks spread over
     * the whole span (40 over 8 s: one every 200 ms, not all within 2 s) */
    tick_ms = LPG_DLIST_TRICKLE_MS;
    if (open > 0 && open < ticks) {
        tick_ms = *span_ms / (int64_t) open;
        ticks = open;
    }

    ev_timer_set(t, 0., (double) tick_ms / 1000.);
    ev_timer_start(loop, t);

    return (open + ticks - 1) / ticks;
}
