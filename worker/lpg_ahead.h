/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ahead.h: a client's last above this node's largest id, resolved
 * before it is believed stale.
 *
 * Nodes share the database (DESIGN.md), so a client that moves from node
 * A to node B may bring an id A's master fetched and B's has not yet (for
 * the milliseconds B lags).  Taken for a stale id (a reset database), the
 * stream would start from B's cursor and give that notification again.
 * A stream transport whose last is above high (lpg_bus_stale) waits here
 * instead: until a fetch begun after it came is published (the master is
 * woken at once), at most LPG_AHEAD_MAX ms; then its done callback runs
 * and the transport looks again: a last still above high is stale.  The
 * poll has its own list (lpg_poll.c) for the same rule.
 *
 * The waiter (lpg_ahead_t) lives in the transport's object, which owns it
 * and must cancel it before it is freed.
 */

#ifndef LPG_AHEAD_H
#define LPG_AHEAD_H


#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>


#define LPG_AHEAD_MAX 2000 /* ms */


typedef struct lpg_ahead_s lpg_ahead_t;

typedef void (*lpg_ahead_pt)(lpg_ahead_t *a);

struct lpg_ahead_s {
    lpg_ahead_t *prev;
    lpg_ahead_t *next;
    lpg_ahead_pt done;
    uint64_t     mark;  /* lpg_bus_fetch_mark when it came */
    int64_t      since; /* monotonic ms */
    int          db;
    bool         waiting;
};


/*
 * A waiter that exists only while it waits (for transports whose idle
 * objects should not carry one): it holds a json value (referenced) and
 * an id for its owner.  done(owner, what, last) runs after the held waiter
 * is freed and *slot set to NULL; it takes over the reference to what.
 */
typedef struct lpg_ahead_held_s lpg_ahead_held_t;
typedef void (*lpg_ahead_held_pt)(void *owner, json_t *what, int64_t last);


/* the worker's loop, once (later calls: nothing) */
void lpg_ahead_init(struct ev_loop *loop);

/* a waits for a fetch of db; done(a) runs from the loop, never in here */
void lpg_ahead_wait(lpg_ahead_t *a, int db, lpg_ahead_pt done);

/* out of the list if waiting; done is not called */
void lpg_ahead_cancel(lpg_ahead_t *a);

/* *slot (NULL) starts waiting for db, or (waiting) holds what and last
 * instead of what it held; LPG_ERROR: no memory (logged), nothing waits */
int lpg_ahead_hold(lpg_ahead_held_t **slot, int db, json_t *what, int64_t last,
                   lpg_ahead_held_pt done, void *owner);

/* cancels and frees *slot, if any; done is not called */
void lpg_ahead_drop(lpg_ahead_held_t **slot);


#endif /* LPG_AHEAD_H */
