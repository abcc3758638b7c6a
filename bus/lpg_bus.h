/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bus.h: a worker's view of the bus: the ring reader and the history.
 *
 * On every doorbell the worker copies the new ring records into a bounded
 * history (decoded, one allocation per record) and hands each to the poll
 * layer.  The history answers polls at once: every record of a database
 * with an id above the poll's last, if the history reaches back that far
 * (lpg_bus_covers); older ids need a database query.
 *
 * A reset marker in the ring (the database's ids went backwards, see
 * lpg_shm.h) drops the history of that database: its records stay in the
 * array, so positions keep their meaning, but belong to no database any
 * more; the floor moves to the marker's id, and the poll layer's reset
 * handler starts the database's parked polls again from it.
 */

#ifndef LPG_BUS_H
#define LPG_BUS_H


#include "lpg_ring.h"
#include "lpg_shm.h"

#include <ev.h>


#define LPG_BUS_HISTORY 65536      /* records a worker keeps, at most */
#define LPG_BUS_MAX_AGE 120000     /* ms: older records leave the history */
#define LPG_BUS_NONE    UINT64_MAX /* no record: the end of a prev chain */


typedef struct {
    int64_t     id;
    int64_t     create_us;
    int64_t     notify_us;  /* master's monotonic NOTIFY receipt */
    int64_t     arrived_ms; /* when this worker read it */
    uint64_t    seq;        /* position in the history, for lpg_bus_at */
    uint64_t    prev;       /* seq of the record before it on its channel (may
                        * have left), LPG_BUS_NONE: none (lpg_bus_chan.h) */
    int         db;
    uint32_t    chash; /* hash of (db, channel), for the channel index */
    size_t      channel_len;
    size_t      message_len;
    const char *channel; /* JSON text, owned by the history */
    const char *message;
} lpg_bus_rec_t;


typedef struct {
    /* a new record (borrowed until the next doorbell at least) */
    void (*record)(const lpg_bus_rec_t *r);
    /* the end of a doorbell's batch: answer what became ready */
    void (*batch)(void);
    /* the ring lapped this worker: records were lost */
    void (*lost)(uint64_t n);
    /* db's ids went backwards: its history is gone (after the records
     * before the marker were handed to record()); the new table's ids
     * are above base */
    void (*reset)(int db, int64_t base);
} lpg_bus_handlers_t;


int lpg_bus_init(struct ev_loop *loop, lpg_shm_t *shm, lpg_shm_worker_t *stats,
                 lpg_ring_t *ring, int doorbell,
                 const lpg_bus_handlers_t *h) LPG_MUSTCHECK;

/* true when the history holds every record of db with an id above last */
bool lpg_bus_covers(int db, int64_t last);

/*
 * Calls cb for each record of db with id > last, or (last == 0) created
 * after since_us, in id order.  Returns how many.
 */
size_t lpg_bus_since(int db, int64_t last, int64_t since_us,
                     void (*cb)(const lpg_bus_rec_t *r, void *arg), void *arg);

/*
 * Calls cb, in id order, for each record of db on one of the nkeys
 * channels (json_dump text, as a record's channel) with id > last (> 0).
 * Walks the channels' chains (lpg_bus_chan.h): the cost is the records
 * found, not the records of other channels after last.  Returns how many.
 */
size_t lpg_bus_channels_since(int db, char *const *keys, const size_t *lens,
                              size_t nkeys, int64_t last,
                              void (*cb)(const lpg_bus_rec_t *r, void *arg),
                              void *arg);

/* the record at history position seq, or NULL once it has left */
const lpg_bus_rec_t *lpg_bus_at(uint64_t seq);

/*
 * Reads the ring now if the master has rung since this worker last read
 * it: called before a request is served, so that records already rung
 * go out before the request's work (deliveries first, while a big batch
 * streams in and its answered polls come back).
 */
void lpg_bus_catch_up(void);

/* the newest id the worker has seen for db (0: none) */
int64_t lpg_bus_newest(int db);

/*
 * true when last is above every id the master knows for db (lpg_shm.h's
 * high): a last from before a reset, or one a client kept.  false while
 * the master has not read the database yet.
 */
bool lpg_bus_stale(int db, int64_t last);

/*
 * Nodes share the database: a last another node handed out may be above
 * this master's high until it fetches the same rows.  mark: the fetches
 * of db begun so far; fetched_since: true once a fetch begun after mark
 * is published, after which lpg_bus_stale is the truth for any last
 * handed out before mark was taken.
 */
uint64_t lpg_bus_fetch_mark(int db);
bool     lpg_bus_fetched_since(int db, uint64_t mark);

/* every id of db up to this one is published (the master's cursor) */
int64_t lpg_bus_cursor(int db);

/* a retiring worker: stop taking doorbells (its successor in the slot
 * takes them) and read the ring with lpg_bus_poll() instead */
void lpg_bus_retire(void);
void lpg_bus_poll(void);

void lpg_bus_stop(void);


#endif /* LPG_BUS_H */
