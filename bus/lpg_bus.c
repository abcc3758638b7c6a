/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bus.c: ring reading and the history of one worker.
 *
 * The history is a circular array of LPG_BUS_HISTORY decoded records in
 * ring order (id order per database).  floor[db] is the id at or below
 * which the history is not complete: the last evicted id, or at start the
 * id before the first record of db found in the ring, or the master's
 * starting cursor when the ring holds none.  LPG_BUS_UNKNOWN means "covers
 * nothing" until the next record of db arrives.  A reset marker turns the
 * database's records into LPG_BUS_DEAD ones (db -1) and sets its floor to
 * the marker's id; resets[db] is the master's reset count this history
 * is in step with.  The channel index (lpg_bus_chan.c) links each record
 * to the one before it on its channel, for lpg_bus_channels_since.
 */

#include "lpg_bus.h"
#include "lpg_bus_chan.h"
#include "lpg_record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_BUS_UNKNOWN INT64_MAX
#define LPG_BUS_DEAD    (-1) /* a record's db after a reset of its db */


static void lpg_bus_doorbell_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_bus_drain(bool notify);
static bool lpg_bus_append(const lpg_record_t *rec, int db);
static void lpg_bus_forget(int db);
static void lpg_bus_reset(int db, int64_t base, bool notify);


static struct {
    struct ev_loop    *loop;
    lpg_shm_t         *shm;
    lpg_shm_worker_t  *stats;
    lpg_ring_t        *ring;
    lpg_ring_reader_t  reader;
    lpg_bus_handlers_t h;
    ev_io              doorbell;
    char              *buf;
    size_t             buf_cap;

    lpg_bus_rec_t *hist;
    size_t         first; /* index of the oldest record */
    size_t         count;
    uint64_t       appended; /* records ever appended: the next seq */
    /* owned: lpg_bus_channels_since's findings, LPG_BUS_HISTORY at most */
    const lpg_bus_rec_t **found;

    int64_t  floor[LPG_SHM_MAX_DBS];
    int64_t  newest[LPG_SHM_MAX_DBS];
    bool     seen[LPG_SHM_MAX_DBS];
    uint64_t resets[LPG_SHM_MAX_DBS];
} lpg_bus;


int
lpg_bus_init(struct ev_loop *loop, lpg_shm_t *shm, lpg_shm_worker_t *stats,
             lpg_ring_t *ring, int doorbell, const lpg_bus_handlers_t *h)
{
    int i;

    lpg_bus.loop = loop;
    lpg_bus.shm = shm;
    lpg_bus.stats = stats;
    lpg_bus.ring = ring;
    lpg_bus.h = *h;

    lpg_bus.buf_cap = lpg_ring_max_record(ring);
    lpg_bus.buf = malloc(lpg_bus.buf_cap);
    lpg_bus.hist = calloc(LPG_BUS_HISTORY, sizeof(lpg_bus_rec_t));
    lpg_bus.found = malloc(LPG_BUS_HISTORY * sizeof(lpg_bus_rec_t *));
    if (lpg_bus.buf == NULL || lpg_bus.hist == NULL || lpg_bus.found == NULL
        || lpg_bus_chan_init() != LPG_OK)
    {
        lpg_log(LPG_LOG_EMERG, ENOMEM, "history allocation failed");
        return LPG_ERROR;
    }

    /* write every page of the history array now: the worker's RSS is its
     * full size (~6 MiB, and the channel index's 1 MiB) from the start,
     * instead of creeping up by one slot per record until the array wraps */
    for (i = 0; i < (int) (LPG_BUS_HISTORY * sizeof(lpg_bus_rec_t)); i += 4096)
    {
        ((volatile char *) lpg_bus.hist)[i] = 0;
    }

    for (i = 0; i < LPG_SHM_MAX_DBS; i++) {
        lpg_bus.floor[i] = LPG_BUS_UNKNOWN;
    }

    /* the markers still in the ring are read below, in order */
    for (i = 0; i < shm->header->ndbs; i++) {
        lpg_bus.resets[i] = atomic_load(&shm->dbs[i].resets);
    }

    /* everything still in the ring, then the master's cursors for the
     * databases it holds nothing of */
    lpg_ring_reader_init(&lpg_bus.reader, ring, true);
    lpg_bus_drain(false);

    for (i = 0; i < shm->header->ndbs; i++) {
        if (!lpg_bus.seen[i] && atomic_load(&shm->dbs[i].ready)) {
            lpg_bus.floor[i] = atomic_load(&shm->dbs[i].cursor);
        }
    }

    ev_io_init(&lpg_bus.doorbell, lpg_bus_doorbell_cb, doorbell, EV_READ);
    ev_io_start(loop, &lpg_bus.doorbell);

    return LPG_OK;
}


bool
lpg_bus_covers(int db, int64_t last)
{
    if (lpg_bus.floor[db] == LPG_BUS_UNKNOWN && !lpg_bus.seen[db]
        && atomic_load(&lpg_bus.shm->dbs[db].ready))
    {
        /* the master connected after we started: it published nothing
         * below its starting cursor */
        lpg_bus.floor[db] = atomic_load(&lpg_bus.shm->dbs[db].start);
    }

    return last >= lpg_bus.floor[db];
}


void
lpg_bus_catch_up(void)
{
    uint64_t rung;

    rung =
        atomic_load_explicit(&lpg_bus.shm->header->rung, memory_order_acquire);

    if (lpg_bus.reader.seq != UINT64_MAX && rung > lpg_bus.reader.seq) {
        /* the doorbell is read (and finds nothing) in its own turn */
        lpg_bus_drain(true);
    }
}


int64_t
lpg_bus_newest(int db)
{
    return lpg_bus.newest[db];
}


int64_t
lpg_bus_cursor(int db)
{
    return atomic_load_explicit(&lpg_bus.shm->dbs[db].cursor,
                                memory_order_acquire);
}


bool
lpg_bus_stale(int db, int64_t last)
{
    lpg_shm_db_t *sdb = &lpg_bus.shm->dbs[db];

    /*
     * high is stored before the records it covers are pushed, so a last
     * this node handed out is never above it.  A last handed out by
     * another node (DESIGN.md: nodes share the database) may be, for the
     * few milliseconds until this master fetches the same rows: a poll
     * waits for a fetch begun after it came (lpg_bus_fetched_since)
     * before it believes this.
     */
    return last > 0 && atomic_load(&sdb->ready)
        && last > atomic_load_explicit(&sdb->high, memory_order_acquire);
}


uint64_t
lpg_bus_fetch_mark(int db)
{
    return atomic_load_explicit(&lpg_bus.shm->dbs[db].fetch_begun,
                                memory_order_acquire);
}


bool
lpg_bus_fetched_since(int db, uint64_t mark)
{
    return atomic_load_explicit(&lpg_bus.shm->dbs[db].fetch_done,
                                memory_order_acquire)
        > mark;
}


const lpg_bus_rec_t *
lpg_bus_at(uint64_t seq)
{
    uint64_t oldest = lpg_bus.appended - lpg_bus.count;

    if (seq < oldest || seq >= lpg_bus.appended) {
        return NULL;
    }

    return &lpg_bus.hist[(lpg_bus.first + (size_t) (seq - oldest))
                         % LPG_BUS_HISTORY];
}


size_t
lpg_bus_since(int db, int64_t last, int64_t since_us,
              void (*cb)(const lpg_bus_rec_t *r, void *arg), void *arg)
{
    size_t         i, k, n, start;
    lpg_bus_rec_t *r;

    if (lpg_bus.count == 0) {
        return 0;
    }

    /* back from the newest to the first record that is too old */
    start = lpg_bus.count;
    for (k = lpg_bus.count; k > 0; k--) {
        r = &lpg_bus.hist[(lpg_bus.first + k - 1) % LPG_BUS_HISTORY];
        if (r->db != db) {
            continue;
        }

        if (last > 0 ? r->id <= last : r->create_us <= since_us) {
            break;
        }

        start = k - 1;
    }

    n = 0;
    for (i = start; i < lpg_bus.count; i++) {
        r = &lpg_bus.hist[(lpg_bus.first + i) % LPG_BUS_HISTORY];
        if (r->db == db && (last > 0 ? r->id > last : r->create_us > since_us))
        {
            cb(r, arg);
            n++;
        }
    }

    return n;
}


static int
lpg_bus_seq_cmp(const void *a, const void *b)
{
    const lpg_bus_rec_t *x = *(const lpg_bus_rec_t *const *) a;
    const lpg_bus_rec_t *y = *(const lpg_bus_rec_t *const *) b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}


size_t
lpg_bus_channels_since(int db, char *const *keys, const size_t *lens,
                       size_t nkeys, int64_t last,
                       void (*cb)(const lpg_bus_rec_t *r, void *arg), void *arg)
{
    size_t               i, k, n = 0;
    const lpg_bus_rec_t *r;

    for (k = 0; k < nkeys; k++) {
        for (i = 0; i < k; i++) {
            if (lens[i] == lens[k] && memcmp(keys[i], keys[k], lens[k]) == 0) {
                break;
            }
        }
        if (i < k) {
            /* the same channel twice: its records once */
            continue;
        }

        /* newest first; the ids of a database rise with its positions */
        for (r = lpg_bus_chan_newest(db, keys[k], lens[k]);
             r != NULL && r->id > last;
             r = r->prev == LPG_BUS_NONE ? NULL : lpg_bus_at(r->prev))
        {
            lpg_bus.found[n++] = r;
        }
    }

    if (nkeys > 1) {
        qsort(lpg_bus.found, n, sizeof(lpg_bus.found[0]), lpg_bus_seq_cmp);

        for (i = 0; i < n; i++) {
            cb(lpg_bus.found[i], arg);
        }

    } else {
        for (i = n; i > 0; i--) {
            cb(lpg_bus.found[i - 1], arg);
        }
    }

    return n;
}


void
lpg_bus_retire(void)
{
    ev_io_stop(lpg_bus.loop, &lpg_bus.doorbell);
}


void
lpg_bus_poll(void)
{
    lpg_bus_drain(true);
}


void
lpg_bus_stop(void)
{
    size_t i;

    if (lpg_bus.loop != NULL) {
        ev_io_stop(lpg_bus.loop, &lpg_bus.doorbell);
    }

    for (i = 0; i < lpg_bus.count; i++) {
        free((void *) lpg_bus.hist[(lpg_bus.first + i) % LPG_BUS_HISTORY]
                 .channel);
    }

    free(lpg_bus.hist);
    free(lpg_bus.buf);
    free(lpg_bus.found);
    lpg_bus_chan_free();
    lpg_bus.hist = NULL;
    lpg_bus.buf = NULL;
    lpg_bus.found = NULL;
    lpg_bus.count = 0;
}


static void
lpg_bus_doorbell_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    uint64_t n;

    if (read(w->fd, &n, sizeof(n)) == -1 && errno != EAGAIN) {
        lpg_log(LPG_LOG_ERR, errno, "read(eventfd) failed");
    }

    lpg_bus_drain(true);
}


static void
lpg_bus_drain(bool notify)
{
    int          rc, db, i;
    size_t       len;
    uint64_t     lost;
    lpg_record_t rec;

    for (;;) {
        rc = lpg_ring_read(lpg_bus.ring, &lpg_bus.reader, lpg_bus.buf,
                           lpg_bus.buf_cap, &len, &lost);

        if (rc == LPG_AGAIN) {
            break;
        }

        if (lost > 0) {
            lpg_log(LPG_LOG_WARN, 0,
                    "the ring lapped this worker: %llu record(s) lost, "
                    "polls will be answered from the database",
                    (unsigned long long) lost);

            for (i = 0; i < LPG_SHM_MAX_DBS; i++) {
                lpg_bus.floor[i] = LPG_BUS_UNKNOWN;
                lpg_bus.seen[i] = false;
            }

            /* a reset marker may be among the lost records */
            for (i = 0; i < lpg_bus.shm->header->ndbs; i++) {
                if (atomic_load(&lpg_bus.shm->dbs[i].resets)
                    != lpg_bus.resets[i]) {
                    lpg_bus_forget(i);
                    lpg_bus.resets[i] =
                        atomic_load(&lpg_bus.shm->dbs[i].resets);
                }
            }

            if (notify && lpg_bus.h.lost != NULL) {
                lpg_bus.h.lost(lost);
            }
        }

        if (rc != LPG_OK) {
            continue;
        }

        if (lpg_record_decode(lpg_bus.buf, len, &rec) != LPG_OK) {
            lpg_log(LPG_LOG_ALERT, 0, "undecodable ring record skipped");
            continue;
        }

        db = lpg_shm_find_db(lpg_bus.shm, rec.database, rec.database_len);
        if (db < 0) {
            continue;
        }

        if (lpg_record_is_reset(&rec)) {
            lpg_bus_reset(db, rec.id, notify);
            continue;
        }

        if (!lpg_bus.seen[db]) {
            lpg_bus.seen[db] = true;
            if (lpg_bus.floor[db] == LPG_BUS_UNKNOWN) {
                lpg_bus.floor[db] = rec.id - 1;
            }
        }

        if (lpg_bus_append(&rec, db) && notify && lpg_bus.h.record != NULL) {
            lpg_bus.h.record(&lpg_bus.hist[(lpg_bus.first + lpg_bus.count - 1)
                                           % LPG_BUS_HISTORY]);
        }
    }

    /* for the lag metric: records consumed so far */
    atomic_store_explicit(&lpg_bus.stats->ring_seq,
                          lpg_bus.reader.seq == UINT64_MAX
                              ? lpg_ring_head_seq(lpg_bus.ring)
                              : lpg_bus.reader.seq,
                          memory_order_relaxed);

    if (notify && lpg_bus.h.batch != NULL) {
        lpg_bus.h.batch();
    }
}


/* drops the oldest record, moving its database's floor up to it */
static void
lpg_bus_evict(void)
{
    lpg_bus_rec_t *r = &lpg_bus.hist[lpg_bus.first];

    if (r->db != LPG_BUS_DEAD) {
        lpg_bus_chan_remove(r);
        if (r->id > lpg_bus.floor[r->db] || !lpg_bus.seen[r->db]) {
            lpg_bus.floor[r->db] = r->id;
        }
    }

    free((void *) r->channel);
    lpg_bus.first = (lpg_bus.first + 1) % LPG_BUS_HISTORY;
    lpg_bus.count--;
}


static bool
lpg_bus_append(const lpg_record_t *rec, int db)
{
    char          *p;
    lpg_bus_rec_t *r;

    if (lpg_bus.count == LPG_BUS_HISTORY) {
        lpg_bus_evict();
    }

    /* by age too, so memory settles after minutes whatever the rate */
    while (lpg_bus.count > 0
           && lpg_time_mono_ms() - lpg_bus.hist[lpg_bus.first].arrived_ms
               > LPG_BUS_MAX_AGE)
    {
        lpg_bus_evict();
    }

    p = malloc(rec->channel_len + rec->message_len + 2);
    if (p == NULL) {
        /* the record is lost for this worker's history */
        lpg_log(LPG_LOG_ERR, ENOMEM, "bus id %lld dropped from the history",
                (long long) rec->id);
        lpg_bus.floor[db] = rec->id;
        return false;
    }

    memcpy(p, rec->channel, rec->channel_len);
    p[rec->channel_len] = '\0';
    memcpy(p + rec->channel_len + 1, rec->message, rec->message_len);
    p[rec->channel_len + 1 + rec->message_len] = '\0';

    r = &lpg_bus.hist[(lpg_bus.first + lpg_bus.count) % LPG_BUS_HISTORY];
    r->id = rec->id;
    r->create_us = rec->create_us;
    r->notify_us = rec->notify_us;
    r->arrived_ms = lpg_time_mono_ms();
    r->db = db;
    r->channel = p;
    r->channel_len = rec->channel_len;
    r->message = p + rec->channel_len + 1;
    r->message_len = rec->message_len;
    r->seq = lpg_bus.appended++;
    r->chash = lpg_bus_chan_hash(db, r->channel, r->channel_len);
    lpg_bus.count++;
    lpg_bus_chan_add(r);

    if (rec->id > lpg_bus.newest[db]) {
        lpg_bus.newest[db] = rec->id;
    }

    return true;
}


/* db's records leave the history (they stay in the array, in no db) */
static void
lpg_bus_forget(int db)
{
    size_t         i;
    lpg_bus_rec_t *r;

    for (i = 0; i < lpg_bus.count; i++) {
        r = &lpg_bus.hist[(lpg_bus.first + i) % LPG_BUS_HISTORY];
        if (r->db == db) {
            lpg_bus_chan_remove(r);
            r->db = LPG_BUS_DEAD;
        }
    }

    lpg_bus.newest[db] = 0;
}


/*
 * A reset marker: db's ids went backwards.  Its history is dropped, and
 * since every later record of db comes through the ring, the history
 * covers every id above base from now on.
 */
static void
lpg_bus_reset(int db, int64_t base, bool notify)
{
    lpg_log(LPG_LOG_INFO, 0,
            "database \"%s\": bus ids went backwards, history dropped",
            lpg_bus.shm->dbs[db].name);

    lpg_bus_forget(db);
    lpg_bus.floor[db] = base;
    lpg_bus.newest[db] = base;
    lpg_bus.seen[db] = true;
    lpg_bus.resets[db] = atomic_load(&lpg_bus.shm->dbs[db].resets);

    if (notify && lpg_bus.h.reset != NULL) {
        lpg_bus.h.reset(db, base);
    }
}
