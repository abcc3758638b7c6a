/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sub.c: the subscriptions of one worker, whatever their transport.
 *
 * Attached subscriptions sit in the dispatcher (one dispatcher entry per
 * channel key) and in one list in attach order.  A ring record marks the
 * subscriptions it matches ready and notes its history position; at the
 * end of the doorbell's batch each ready one is delivered once, by its
 * transport, with every matching record newer than its last.  A lapped
 * ring makes every attached subscription lost.
 */

#include "lpg_sub.h"
#include "lpg_backfill.h"

#include <stdlib.h>
#include <string.h>


/* a sub's database query, allocated only while one is needed */
struct lpg_sub_bf_s {
    lpg_backfill_req_t req; /* first: the callback's req is the bf */
    lpg_sub_t         *sub;
    lpg_sub_filled_pt  filled;
};


typedef struct {
    const lpg_sub_t *sub;
    int64_t          min_id;
    lpg_sub_rec_pt   cb;
    void            *arg;
    size_t           n;
} lpg_sub_filter_t;


static void lpg_sub_record(const lpg_bus_rec_t *r);
static void lpg_sub_match_cb(void *owner, void *arg);
static void lpg_sub_batch(void);
static void lpg_sub_lost(uint64_t n);
static void lpg_sub_reset(int db, int64_t base);
static void lpg_sub_filter_cb(const lpg_bus_rec_t *r, void *arg);
static void lpg_sub_backfilled(lpg_backfill_req_t  *req,
                               const lpg_bus_rec_t *rows, size_t n,
                               int64_t bound, bool ok);


static struct {
    lpg_shm_t           *shm;
    lpg_dispatch_t      *dispatch;
    lpg_sub_t           *head; /* attached, oldest first */
    lpg_sub_t           *tail;
    lpg_sub_t           *ready;
    const lpg_bus_rec_t *current; /* the record being matched */

    /* the bytes of the last delivery in this batch, and the records,
     * transport and shape they were built for (nmatches 0: none) */
    struct {
        uint64_t             matches[LPG_SUB_MATCHES];
        int                  nmatches;
        int                  shape;
        const lpg_sub_ops_t *ops;
        lpg_buf_t            bytes;
    } shared;

    void (*batch_begin)(void); /* around a batch's deliveries */
    void (*batch_end)(void);
} lpg_sub;


int
lpg_sub_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
             lpg_shm_worker_t *stats, lpg_ring_t *ring, int doorbell)
{
    lpg_bus_handlers_t h;

    lpg_sub.shm = shm;
    lpg_sub.dispatch = lpg_dispatch_create();
    if (lpg_sub.dispatch == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "dispatcher allocation failed");
        return LPG_ERROR;
    }

    if (lpg_backfill_init(loop, conf, shm, stats) != LPG_OK) {
        return LPG_ERROR;
    }

    h.record = lpg_sub_record;
    h.batch = lpg_sub_batch;
    h.lost = lpg_sub_lost;
    h.reset = lpg_sub_reset;

    return lpg_bus_init(loop, shm, stats, ring, doorbell, &h);
}


int
lpg_sub_add_key(lpg_sub_t *s, lpg_buf_t *b0)
{
    size_t    i;
    lpg_buf_t b = *b0;

    if (b.len > LPG_SUB_KEY_MAX) {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    for (i = 0; i < s->nkeys; i++) {
        if (s->key_lens[i] == b.len && memcmp(s->keys[i], b.data, b.len) == 0) {
            lpg_buf_free(&b);
            return LPG_OK;
        }
    }

    if (s->keys == NULL) {
        s->keys = s->keys_inline;
        s->key_lens = s->key_lens_inline;
        s->keys_cap = LPG_SUB_INLINE_KEYS;
    }

    if (s->nkeys == s->keys_cap) {
        size_t  cap = s->keys_cap * 2;
        bool    inl = s->keys == s->keys_inline;
        char  **keys = realloc(inl ? NULL : s->keys, cap * sizeof(*keys));
        size_t *lens;

        if (keys == NULL) {
            lpg_buf_free(&b);
            return LPG_ERROR;
        }

        if (inl) {
            memcpy(keys, s->keys_inline, sizeof(s->keys_inline));
        }
        s->keys = keys;

        lens = realloc(inl ? NULL : s->key_lens, cap * sizeof(*lens));
        if (lens == NULL) {
            /* keys holds the first nkeys; the old capacity still fits */
            lpg_buf_free(&b);
            return LPG_ERROR;
        }

        if (inl) {
            memcpy(lens, s->key_lens_inline, sizeof(s->key_lens_inline));
        }
        s->key_lens = lens;
        s->keys_cap = cap;
    }

    if (b.cap > b.len + 1 + 16) {
        /* kept while the subscription lives: no spare capacity (a key
         * buffer starts at 256 bytes, for a key of ten) */
        char *k = malloc(b.len + 1);

        if (k != NULL) {
            memcpy(k, b.data, b.len + 1);
            free(b.data);
            b.data = k;
            b.cap = b.len + 1;
        }
    }

    s->keys[s->nkeys] = b.data;
    s->key_lens[s->nkeys] = b.len;
    s->nkeys++;

    return LPG_OK;
}


int
lpg_sub_attach(lpg_sub_t *s)
{
    size_t      i, len;
    char        key[LPG_SHM_DBNAME + LPG_SUB_KEY_MAX + 1];
    const char *db = lpg_sub.shm->dbs[s->db].name;

    if (s->subs == NULL) {
        s->subs = s->nkeys <= LPG_SUB_INLINE_KEYS
            ? s->subs_inline
            : calloc(s->nkeys, sizeof(*s->subs));
        if (s->subs == NULL) {
            return LPG_ERROR;
        }
    }

    for (i = 0; i < s->nkeys; i++) {
        len = lpg_dispatch_key(key, sizeof(key), db, strlen(db), s->keys[i],
                               s->key_lens[i]);
        if (len == 0
            || lpg_dispatch_add(lpg_sub.dispatch, &s->subs[i], key, len, s)
                != LPG_OK)
        {
            while (i-- > 0) {
                lpg_dispatch_remove(lpg_sub.dispatch, &s->subs[i]);
            }
            return LPG_ERROR;
        }
    }

    s->prev = lpg_sub.tail;
    s->next = NULL;
    if (lpg_sub.tail != NULL) {
        lpg_sub.tail->next = s;

    } else {
        lpg_sub.head = s;
    }

    lpg_sub.tail = s;
    s->attached = true;

    return LPG_OK;
}


void
lpg_sub_detach(lpg_sub_t *s)
{
    size_t i;

    if (!s->attached) {
        return;
    }

    for (i = 0; i < s->nkeys; i++) {
        lpg_dispatch_remove(lpg_sub.dispatch, &s->subs[i]);
    }

    if (s->prev != NULL) {
        s->prev->next = s->next;

    } else {
        lpg_sub.head = s->next;
    }

    if (s->next != NULL) {
        s->next->prev = s->prev;

    } else {
        lpg_sub.tail = s->prev;
    }

    s->next = NULL;
    s->prev = NULL;
    s->attached = false;
}


void
lpg_sub_rearm(lpg_sub_t *s)
{
    s->nmatches = 0;
    s->notify_us = 0;
    s->lapped = false;
}


void
lpg_sub_release(lpg_sub_t *s)
{
    size_t i;

    lpg_sub_detach(s);

    if (s->bf != NULL) {
        lpg_backfill_cancel(&s->bf->req);
        free(s->bf);
        s->bf = NULL;
    }

    for (i = 0; i < s->nkeys; i++) {
        free(s->keys[i]);
    }

    if (s->keys != s->keys_inline) {
        free(s->keys);
    }
    if (s->key_lens != s->key_lens_inline) {
        free(s->key_lens);
    }
    if (s->subs != s->subs_inline) {
        free(s->subs);
    }

    s->nkeys = 0;
    s->keys_cap = 0;
    s->keys = NULL;
    s->key_lens = NULL;
    s->subs = NULL;
}


bool
lpg_sub_wants(const lpg_sub_t *s, const lpg_bus_rec_t *r)
{
    size_t i;

    for (i = 0; i < s->nkeys; i++) {
        if (s->key_lens[i] == r->channel_len
            && memcmp(s->keys[i], r->channel, r->channel_len) == 0)
        {
            break;
        }
    }

    return i < s->nkeys
        && (s->last > 0 ? r->id > s->last : r->create_us > s->since_us);
}


static void
lpg_sub_filter_cb(const lpg_bus_rec_t *r, void *arg)
{
    lpg_sub_filter_t *f = arg;

    if (r->id <= f->min_id || !lpg_sub_wants(f->sub, r)) {
        return;
    }

    f->n++;
    f->cb(r, f->arg);
}


size_t
lpg_sub_history(const lpg_sub_t *s, int64_t min_id, lpg_sub_rec_pt cb,
                void *arg)
{
    lpg_sub_filter_t f = { s, min_id, cb, arg, 0 };

    if (s->last > 0) {
        /* the chains hold only s's channels: no filter to run again */
        return lpg_bus_channels_since(s->db, s->keys, s->key_lens, s->nkeys,
                                      s->last > min_id ? s->last : min_id, cb,
                                      arg);
    }

    lpg_bus_since(s->db, s->last, s->since_us, lpg_sub_filter_cb, &f);

    return f.n;
}


void
lpg_sub_drop_if_stale(lpg_sub_t *s, size_t *n, int64_t *bound)
{
    if (lpg_bus_stale(s->db, s->last)) {
        s->last = 0;
        s->since_us = 0;
        *n = 0;
        *bound = 0;
    }
}


size_t
lpg_sub_rows(const lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
             lpg_sub_rec_pt cb, void *arg)
{
    size_t           i;
    lpg_sub_filter_t f = { s, 0, cb, arg, 0 };

    for (i = 0; i < n; i++) {
        lpg_sub_filter_cb(&rows[i], &f);
    }

    return f.n;
}


size_t
lpg_sub_each_match(const lpg_sub_t *s, lpg_sub_rec_pt cb, void *arg)
{
    int                  i;
    const lpg_bus_rec_t *r;
    lpg_sub_filter_t     f = { s, 0, cb, arg, 0 };

    for (i = 0; i < s->nmatches; i++) {
        r = lpg_bus_at(s->matches[i]);
        if (r != NULL) {
            lpg_sub_filter_cb(r, &f);
        }
    }

    return f.n;
}


bool
lpg_sub_matched(const lpg_sub_t *s)
{
    int i;

    if (s->nmatches <= 0) {
        return false;
    }

    for (i = 0; i < s->nmatches; i++) {
        if (lpg_bus_at(s->matches[i]) == NULL) {
            return false;
        }
    }

    return true;
}


bool
lpg_sub_needs_fill(const lpg_sub_t *s)
{
    return s->last == 0 || !lpg_bus_covers(s->db, s->last);
}


int
lpg_sub_fill(lpg_sub_t *s, lpg_sub_filled_pt filled)
{
    if (s->bf == NULL) {
        s->bf = calloc(1, sizeof(*s->bf));
        if (s->bf == NULL) {
            return LPG_ERROR;
        }
    }

    s->bf->filled = filled;
    s->bf->sub = s;
    s->bf->req.db = s->db;
    s->bf->req.last = s->last;
    s->bf->req.since_us = s->since_us;
    s->bf->req.nkeys = s->nkeys;
    s->bf->req.keys = s->keys;
    s->bf->req.key_lens = s->key_lens;
    s->bf->req.cb = lpg_sub_backfilled;
    lpg_backfill_queue(&s->bf->req);

    return LPG_OK;
}


bool
lpg_sub_filling(const lpg_sub_t *s)
{
    return s->bf != NULL;
}


static void
lpg_sub_backfilled(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
                   int64_t bound, bool ok)
{
    lpg_sub_bf_t     *bf = (lpg_sub_bf_t *) req;
    lpg_sub_t        *s = bf->sub;
    lpg_sub_filled_pt filled = bf->filled;

    /* the rows are the backfill's: the bf may go before the callback */
    s->bf = NULL;
    free(bf);

    filled(s, rows, n, bound, ok);
}


static void
lpg_sub_record(const lpg_bus_rec_t *r)
{
    size_t      len;
    char        key[LPG_SHM_DBNAME + LPG_SUB_KEY_MAX + 1];
    const char *db = lpg_sub.shm->dbs[r->db].name;

    len = lpg_dispatch_key(key, sizeof(key), db, strlen(db), r->channel,
                           r->channel_len);
    if (len == 0) {
        return;
    }

    lpg_sub.current = r;
    lpg_dispatch_match(lpg_sub.dispatch, key, len, lpg_sub_match_cb, NULL);
}


static void
lpg_sub_match_cb(void *owner, void *arg)
{
    lpg_sub_t           *s = owner;
    const lpg_bus_rec_t *r = lpg_sub.current;

    if (r->id <= s->last) {
        return;
    }

    /* a record matching two of its channels comes once */
    if (s->nmatches > 0 && s->matches[s->nmatches - 1] == r->seq) {
        return;
    }

    if (s->nmatches >= 0 && s->nmatches < LPG_SUB_MATCHES) {
        s->matches[s->nmatches++] = r->seq;
    } else {
        s->nmatches = -1;
    }

    if (s->ready) {
        return;
    }

    s->ready = true;
    s->notify_us = r->notify_us;
    s->ready_next = lpg_sub.ready;
    lpg_sub.ready = s;
}


void
lpg_sub_batch_hooks(void (*begin)(void), void (*end)(void))
{
    lpg_sub.batch_begin = begin;
    lpg_sub.batch_end = end;
}


static void
lpg_sub_batch(void)
{
    lpg_sub_t *s, *next;

    s = lpg_sub.ready;
    lpg_sub.ready = NULL;

    if (s != NULL && lpg_sub.batch_begin != NULL) {
        lpg_sub.batch_begin();
    }

    for (; s != NULL; s = next) {
        next = s->ready_next;
        s->ready = false;
        s->ready_next = NULL;

        if (s->lapped) {
            s->ops->lost(s);

        } else {
            s->ops->deliver(s);
        }
    }

    if (lpg_sub.batch_end != NULL) {
        lpg_sub.batch_end();
    }

    lpg_buf_free(&lpg_sub.shared.bytes);
    lpg_sub.shared.nmatches = 0;
}


void
lpg_sub_flush(void)
{
    lpg_sub_batch();
}


/*
 * The ring lapped us: attached subscriptions may have missed records.
 * Their transports tell them (a poll gets [] now and re-polls with its
 * last, which the history no longer covers, so the answer comes from the
 * database); a ready one learns it at the end of the batch.
 */
static void
lpg_sub_lost(uint64_t n)
{
    lpg_sub_t *s, *next;

    for (s = lpg_sub.head; s != NULL; s = next) {
        next = s->next;

        if (s->ready) {
            s->lapped = true;
            continue;
        }

        s->ops->lost(s);
    }
}


lpg_buf_t *
lpg_sub_shared_find(const lpg_sub_t *s, int shape)
{
    if (lpg_sub.shared.nmatches > 0 && lpg_sub.shared.nmatches == s->nmatches
        && lpg_sub.shared.shape == shape && lpg_sub.shared.ops == s->ops
        && memcmp(lpg_sub.shared.matches, s->matches,
                  (size_t) s->nmatches * sizeof(s->matches[0]))
            == 0)
    {
        return &lpg_sub.shared.bytes;
    }

    return NULL;
}


lpg_buf_t *
lpg_sub_shared_new(void)
{
    lpg_buf_free(&lpg_sub.shared.bytes);
    lpg_sub.shared.nmatches = 0;

    return &lpg_sub.shared.bytes;
}


void
lpg_sub_shared_keep(const lpg_sub_t *s, int shape)
{
    if (s->nmatches <= 0) {
        return;
    }

    lpg_sub.shared.nmatches = s->nmatches;
    lpg_sub.shared.shape = shape;
    lpg_sub.shared.ops = s->ops;
    memcpy(lpg_sub.shared.matches, s->matches,
           (size_t) s->nmatches * sizeof(s->matches[0]));
}


/*
 * db's ids went backwards (lpg_bus.h): its attached subscriptions stay
 * attached but start again from base, so every row of the new table
 * wakes them, the one whose NOTIFY revealed the reset included.
 * (Answered [] instead, an 8-15 client would come back with its old
 * last, be served from the cursor, and miss the rows published in
 * between.)  Ready ones are delivered by the batch with the records
 * that woke them.
 */
static void
lpg_sub_reset(int db, int64_t base)
{
    lpg_sub_t *s;

    for (s = lpg_sub.head; s != NULL; s = s->next) {
        if (s->db == db && !s->ready) {
            s->last = base;
            s->since_us = 0;
        }
    }
}
