/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sub.h: subscriptions, whatever their transport.
 *
 * A subscription is a set of channel keys of one database, a `last` id and
 * a way to deliver a batch of records.  A parked long poll is one kind; a
 * websocket is another.  Each transport embeds an lpg_sub_t in its own
 * object and gives it an ops table; this layer owns the dispatcher, is the
 * ring reader's handler (lpg_bus.h), marks the subscriptions a record
 * matches ready and, at the end of the ring batch, calls each ready one's
 * deliver once.  It also offers what every transport needs: the channel
 * keys, attaching to the dispatcher, the records a subscription wants
 * (from its matches, the history or a backfill query) and a result built
 * once per batch for all the subscriptions woken by the same records.  A
 * transport only turns records into its own bytes.
 */

#ifndef LPG_SUB_H
#define LPG_SUB_H


#include "lpg_bus.h"
#include "lpg_conf.h"
#include "lpg_dispatch.h"
#include "lpg_json.h"


#define LPG_SUB_MATCHES     4    /* record positions kept per wake-up */
#define LPG_SUB_INLINE_KEYS 2    /* channel keys stored in the sub itself */
#define LPG_SUB_KEY_MAX     4096 /* bytes of one channel key */


typedef struct lpg_sub_s    lpg_sub_t;
typedef struct lpg_sub_bf_s lpg_sub_bf_t;


/* what a transport does for its subscriptions; a static table */
typedef struct {
    const char *name; /* "poll", "websocket": for the logs */

    /*
     * Records woke s: called once at the end of the ring batch, s off the
     * ready list (s->ready false), s->matches holding the history positions
     * of the records (lpg_sub_each_match).  The transport writes them out
     * and either frees its object (lpg_sub_release first) or keeps s
     * attached after lpg_sub_rearm().
     */
    void (*deliver)(lpg_sub_t *s);

    /*
     * The ring lapped the worker: s may have missed records, which only
     * the database still has.  Called for each attached subscription (a
     * ready one at the end of the batch, instead of deliver).
     */
    void (*lost)(lpg_sub_t *s);
} lpg_sub_ops_t;


typedef void (*lpg_sub_rec_pt)(const lpg_bus_rec_t *r, void *arg);

/* a backfill's answer: rows (id <= bound, borrowed for the call) that s
 * wants; ok is false when the database could not be asked */
typedef void (*lpg_sub_filled_pt)(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                                  size_t n, int64_t bound, bool ok);


/*
 * Embedded in the transport's object, zeroed, then ops, db, version and
 * last set by the transport; everything else belongs to this layer.  The
 * transport frees its object only after lpg_sub_release(), and never while
 * s->ready (it is on the ready list: deliver comes, and frees it then).
 */
struct lpg_sub_s {
    const lpg_sub_ops_t *ops;
    int                  db;
    int                  version;   /* the Odoo version of db's shapes */
    int64_t              last;      /* records with a larger id are wanted */
    int64_t              since_us;  /* last == 0: created after this */
    int64_t              notify_us; /* of the first record that woke it */

    bool ready;    /* on the ready list */
    bool attached; /* in the dispatcher and the attached list */
    bool lapped;   /* ready when the ring lapped: lost, not deliver */

    /* the history positions of the records that woke it while attached,
     * so the answer need not search the history (LPG_SUB_MATCHES at most;
     * -1: more, search) */
    int      nmatches;
    uint64_t matches[LPG_SUB_MATCHES];

    /* channel json_dump text, each owned; the arrays point at the inline
     * ones for the usual one or two channels (no allocation) */
    size_t              nkeys;
    size_t              keys_cap;
    char              **keys;
    size_t             *key_lens;
    lpg_dispatch_sub_t *subs; /* while attached */
    char               *keys_inline[LPG_SUB_INLINE_KEYS];
    size_t              key_lens_inline[LPG_SUB_INLINE_KEYS];
    lpg_dispatch_sub_t  subs_inline[LPG_SUB_INLINE_KEYS];

    lpg_sub_bf_t *bf; /* owned while a backfill is queued */

    lpg_sub_t *ready_next;
    lpg_sub_t *next; /* attached list, in attach order */
    lpg_sub_t *prev;
};


/* the dispatcher, the backfill pool and the ring reader of the worker */
/* begin and end run around the deliveries of each ring batch (the worker
 * sends their answers in one go: lpg_http_batch); NULL: nothing */
void lpg_sub_batch_hooks(void (*begin)(void), void (*end)(void));

int lpg_sub_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
                 lpg_shm_worker_t *stats, lpg_ring_t *ring,
                 int doorbell) LPG_MUSTCHECK;

/* adds the channel text b (taken over; freed when present or on error) */
int lpg_sub_add_key(lpg_sub_t *s, lpg_buf_t *b) LPG_MUSTCHECK;

/* into the dispatcher: records of its keys now wake it */
int  lpg_sub_attach(lpg_sub_t *s) LPG_MUSTCHECK;
void lpg_sub_detach(lpg_sub_t *s);

/* after deliver, for a sub that stays attached: forget the matches */
void lpg_sub_rearm(lpg_sub_t *s);

/* detaches, cancels a backfill and frees the keys; s itself is the
 * transport's */
void lpg_sub_release(lpg_sub_t *s);

/* true when the record is one s wants: one of its keys, above last (or,
 * last == 0, created after since_us) */
bool lpg_sub_wants(const lpg_sub_t *s, const lpg_bus_rec_t *r);

/* cb for each record s wants with an id above min_id: from the history,
 * from rows, from its matches; return how many */
size_t lpg_sub_history(const lpg_sub_t *s, int64_t min_id, lpg_sub_rec_pt cb,
                       void *arg);
/* after a backfill: when the ids went backwards while it was looked up
 * (a restored database), the rows are of the old table: *n and *bound go
 * to 0 and s starts over from the history (last and since 0) */
void   lpg_sub_drop_if_stale(lpg_sub_t *s, size_t *n, int64_t *bound);
size_t lpg_sub_rows(const lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                    lpg_sub_rec_pt cb, void *arg);
size_t lpg_sub_each_match(const lpg_sub_t *s, lpg_sub_rec_pt cb, void *arg);

/* true when s has matches and the history still holds every one */
bool lpg_sub_matched(const lpg_sub_t *s);

/* true when the history cannot answer s (last == 0, or older ids) */
bool lpg_sub_needs_fill(const lpg_sub_t *s);

/* queues one backfill query for s (shared with the loop iteration's
 * others); filled is called later, never from here */
int  lpg_sub_fill(lpg_sub_t *s, lpg_sub_filled_pt filled) LPG_MUSTCHECK;
bool lpg_sub_filling(const lpg_sub_t *s);

/*
 * The bytes built for the subscriptions of one batch woken by the same
 * records: find returns them when the last ones kept are for s's matches,
 * its transport and shape (a transport's own number: Odoo's version), else
 * NULL; new empties the buffer for a build, keep marks it reusable for any
 * sub woken by the same records.  Owned here, freed at the batch's end.
 */
lpg_buf_t *lpg_sub_shared_find(const lpg_sub_t *s, int shape);
lpg_buf_t *lpg_sub_shared_new(void);
void       lpg_sub_shared_keep(const lpg_sub_t *s, int shape);

/* delivers the ready subscriptions now (graceful stop) */
void lpg_sub_flush(void);


#endif /* LPG_SUB_H */
