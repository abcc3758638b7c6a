/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_poll.c: JSON-RPC poll requests, parked polls and their answers.
 *
 * Parked polls sit in the dispatcher (one subscription per channel key)
 * and in one FIFO list ordered by park time: every poll shares the same
 * timeout, plus a per-poll jitter of at most LPG_POLL_JITTER_MAX, so one
 * ev_timer walks the head of the list.  A ring record marks the polls it
 * matches ready; at the end of the doorbell's batch each ready poll is
 * answered once with every matching record newer than its last.
 */

#include "lpg_poll.h"
#include "lpg_backfill.h"
#include "lpg_bus.h"
#include "lpg_dispatch.h"
#include "lpg_json.h"
#include "lpg_presence.h"
#include "lpg_rpc.h"
#include "lpg_session.h"

#include <ctype.h>
#include <http_parser.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define LPG_POLL_JITTER_MAX 2000 /* ms */
#define LPG_POLL_KEY_MAX    4096


#define LPG_POLL_MATCHES     4
#define LPG_POLL_INLINE_KEYS 2

typedef struct lpg_poll_s lpg_poll_t;

/* a poll's database query, allocated only while one is needed */
typedef struct {
    lpg_backfill_req_t req;
    lpg_poll_t        *poll;
} lpg_poll_bf_t;

struct lpg_poll_s {
    lpg_http_conn_t   *conn;
    int                db;
    int                version;
    int64_t            last;
    int64_t            since_us; /* last == 0: records created after */
    int64_t            deadline; /* monotonic ms */
    char              *id;       /* JSON text of the request id */
    bool               ready;
    bool               parked;
    bool               backfilling;
    bool               plain;      /* GET ?channels=: a bare JSON array */
    bool               degraded;   /* Odoo did not say who it is */
    int64_t            inactivity; /* options.bus_inactivity, -1: none */
    lpg_presence_t    *presence;   /* held while the poll lives */
    lpg_session_wait_t swait;      /* while Odoo is asked who it is */
    ev_timer          *retry;      /* degraded: the short timeout, owned */
    bool               session_wait;
    int64_t            notify_us; /* of the record that woke it */
    lpg_poll_bf_t     *bf;        /* owned while backfilling */

    /* the history positions of the records that woke it while parked, so
     * the answer need not search the history (LPG_POLL_MATCHES at most;
     * more, and it searches) */
    uint64_t matches[LPG_POLL_MATCHES];
    int      nmatches; /* -1: too many */

    size_t              nkeys;
    size_t              keys_cap;
    char              **keys; /* channel json_dump text, each owned */
    size_t             *key_lens;
    lpg_dispatch_sub_t *subs;

    /* the arrays above for the usual one or two channels, so a parked
     * poll costs no allocation for them */
    char              *keys_inline[LPG_POLL_INLINE_KEYS];
    size_t             key_lens_inline[LPG_POLL_INLINE_KEYS];
    lpg_dispatch_sub_t subs_inline[LPG_POLL_INLINE_KEYS];

    lpg_poll_t *next; /* park-time order */
    lpg_poll_t *prev;
    lpg_poll_t *ready_next;
};


typedef struct {
    lpg_poll_t *poll;
    lpg_buf_t  *out;
    size_t      n;
    int64_t     min_id; /* only records above (the backfill's bound) */
    bool        failed;
} lpg_poll_collect_t;


static int    lpg_poll_parse(lpg_poll_t *p, const lpg_http_request_t *r,
                             const char **why);
static int    lpg_poll_add_key(lpg_poll_t *p, const char *db, json_t *channel);
static int    lpg_poll_add_text(lpg_poll_t *p, lpg_buf_t *b);
static void   lpg_poll_start(lpg_poll_t *p);
static void   lpg_poll_session(lpg_poll_t *p, const lpg_session_info_t *info);
static void   lpg_poll_session_cb(lpg_session_wait_t       *w,
                                  const lpg_session_info_t *info);
static void   lpg_poll_collect_init(lpg_poll_collect_t *col, lpg_poll_t *p,
                                    lpg_buf_t *out, int64_t min_id);
static size_t lpg_poll_collect(lpg_poll_t *p, lpg_buf_t *list, int64_t min_id,
                               bool *failed);
static void   lpg_poll_answer_or_park(lpg_poll_t *p, const lpg_bus_rec_t *rows,
                                      size_t n, int64_t bound);
static void   lpg_poll_backfilled(lpg_backfill_req_t  *req,
                                  const lpg_bus_rec_t *rows, size_t n,
                                  int64_t bound, bool ok);
static void   lpg_poll_send(lpg_poll_t *p, const lpg_buf_t *list, bool failed);
static void   lpg_poll_answer(lpg_poll_t *p, bool collect);
static void   lpg_poll_collect_cb(const lpg_bus_rec_t *r, void *arg);
static void   lpg_poll_free(lpg_poll_t *p);
static void   lpg_poll_park(lpg_poll_t *p);
static void   lpg_poll_gone(void *data);
static void   lpg_poll_record(const lpg_bus_rec_t *r);
static void   lpg_poll_match_cb(void *owner, void *arg);
static void   lpg_poll_batch(void);
static void   lpg_poll_lost(uint64_t n);
static void   lpg_poll_reset(int db, int64_t base);
static void   lpg_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void   lpg_poll_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static const char *lpg_poll_cors(const lpg_poll_t *p);
static int         lpg_poll_dbfilter(const char *host, size_t len);
static void        lpg_poll_count(lpg_poll_t *p, bool failed, bool message);
static char *lpg_poll_query_body(const lpg_http_request_t *r, const char **why);
static void  lpg_poll_plain_error(lpg_http_conn_t *c, const char *why);


static struct {
    lpg_http_ctx_t       ctx;
    lpg_dispatch_t      *dispatch;
    lpg_poll_t          *head;
    lpg_poll_t          *tail;
    lpg_poll_t          *ready;
    size_t               parked;
    ev_timer             timer;
    const lpg_bus_rec_t *current;

    /* the result list of the last answer in this batch, and the records
     * and shape it was built for (nmatches 0: none) */
    struct {
        uint64_t  matches[LPG_POLL_MATCHES];
        int       nmatches;
        int       version;
        lpg_buf_t list;
    } shared;
} lpg_poll;


int
lpg_poll_init(const lpg_http_ctx_t *ctx, int doorbell, lpg_ring_t *ring)
{
    lpg_bus_handlers_t h;

    lpg_poll.ctx = *ctx;
    lpg_poll.dispatch = lpg_dispatch_create();
    if (lpg_poll.dispatch == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "dispatcher allocation failed");
        return LPG_ERROR;
    }

    ev_init(&lpg_poll.timer, lpg_poll_timer_cb);

    if (lpg_backfill_init(ctx->loop, ctx->conf, ctx->shm, ctx->stats) != LPG_OK
        || lpg_session_init(ctx->loop, ctx->conf, ctx->shm, ctx->stats)
            != LPG_OK
        || lpg_presence_init(ctx->loop, ctx->conf, ctx->shm, ctx->stats)
            != LPG_OK)
    {
        return LPG_ERROR;
    }

    h.record = lpg_poll_record;
    h.batch = lpg_poll_batch;
    h.lost = lpg_poll_lost;
    h.reset = lpg_poll_reset;

    return lpg_bus_init(ctx->loop, ctx->shm, ctx->stats, ring, doorbell, &h);
}


size_t
lpg_poll_parked(void)
{
    return lpg_poll.parked;
}


void
lpg_poll_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int         rc, db;
    const char *why;
    lpg_poll_t *p;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    p->conn = c;

    db = lpg_poll_pick_db(r);

    p->db = db;
    p->version = lpg_poll_version(db);

    if (r->method == HTTP_GET) {
        /* the plain API: the query string becomes the JSON-RPC params */
        lpg_http_request_t q = *r;
        char              *body = lpg_poll_query_body(r, &why);

        p->plain = true;

        if (body == NULL) {
            lpg_poll_plain_error(c, why);
            lpg_poll_free(p);
            return;
        }

        q.body = body;
        q.body_len = strlen(body);
        rc = lpg_poll_parse(p, &q, &why);
        free(body);

    } else {
        rc = lpg_poll_parse(p, r, &why);
    }


    if (p->plain && (rc != LPG_OK || p->db < 0)) {
        lpg_poll_plain_error(c,
                             rc != LPG_OK ? why
                                          : "no such database: "
                                            "pass ?db=");
        lpg_poll_free(p);
        return;
    }

    if (rc != LPG_OK) {
        lpg_poll_rpc_error(c, p->version, p->id ? p->id : "null",
                           p->version >= 11 ? "builtins.Exception"
                                            : "exceptions.Exception",
                           why);
        lpg_poll_free(p);
        return;
    }

    if (rc == LPG_OK && p->db < 0) {
        lpg_poll_rpc_error(c, p->version, p->id ? p->id : "null",
                           "werkzeug.exceptions.NotFound",
                           "404: Not Found (no such database: pass ?db=)");
        lpg_poll_free(p);
        return;
    }

    /* who the session is, in Odoo's words: its channels join the poll's */
    const lpg_session_info_t *info;

    switch (lpg_session_get(r, p->db, p->version, &p->swait, &info)) {
    case LPG_OK:
        lpg_poll_session(p, info);
        break;

    case LPG_AGAIN:
        p->swait.cb = lpg_poll_session_cb;
        p->session_wait = true;
        lpg_http_hold(c, lpg_poll_gone, p);
        return;

    default:
        /* no session cookie: the public user */
        break;
    }

    lpg_poll_start(p);
}


static void
lpg_poll_session_cb(lpg_session_wait_t *w, const lpg_session_info_t *info)
{
    lpg_poll_t *p = (lpg_poll_t *) ((char *) w - offsetof(lpg_poll_t, swait));

    p->session_wait = false;
    lpg_poll_session(p, info);
    lpg_poll_start(p);
}


/* adds the session's channels and holds its presence entry */
static void
lpg_poll_session(lpg_poll_t *p, const lpg_session_info_t *info)
{
    size_t    i;
    lpg_buf_t b;

    if (!info->known) {
        /* public for now, and asked again soon (session_retry) */
        p->degraded = true;
        return;
    }

    if (info->db != p->db) {
        return;
    }

    for (i = 0; i < info->nkeys; i++) {
        memset(&b, 0, sizeof(b));

        if (lpg_buf_append(&b, info->keys[i], info->key_lens[i]) != LPG_OK
            || lpg_poll_add_text(p, &b) != LPG_OK)
        {
            lpg_log(LPG_LOG_ERR, 0,
                    "poll: out of memory adding the session's channels");
            break;
        }
    }

    if (p->inactivity >= 0) {
        /* 15's guests count only when nobody is logged in, as in Odoo */
        p->presence = lpg_presence_hold(p->db, info->uid,
                                        info->uid > 0 ? 0 : info->guest_id,
                                        p->inactivity);
    }
}


/* the poll's channels are complete: answer from the database, the
 * history, or park */
static void
lpg_poll_start(lpg_poll_t *p)
{
    lpg_http_conn_t *c = p->conn;

    if (lpg_bus_stale(p->db, p->last)) {
        /* above every id of the database (a reset, or a client that kept
         * an old last): served from what the master has published so far,
         * so it gets every later row.  Not as last = 0 (Odoo 16+): an 8-15
         * client keeps max(last, ids), would come back with the same last
         * and get the same rows again, in a loop, for timeout seconds */
        p->last = lpg_bus_cursor(p->db);
    }

    if (p->last == 0) {
        /* Odoo: the notifications of the last timeout seconds */
        p->since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_poll.ctx.conf->timeout * 1000000;
    }

    if (p->last == 0 || !lpg_bus_covers(p->db, p->last)) {
        /* older than the history: one query, shared with this loop
         * iteration's other backfills */
        p->bf = calloc(1, sizeof(*p->bf));
        if (p->bf == NULL) {
            lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
            lpg_poll_free(p);
            return;
        }

        p->bf->poll = p;
        p->bf->req.db = p->db;
        p->bf->req.last = p->last;
        p->bf->req.since_us = p->since_us;
        p->bf->req.nkeys = p->nkeys;
        p->bf->req.keys = p->keys;
        p->bf->req.key_lens = p->key_lens;
        p->bf->req.cb = lpg_poll_backfilled;
        p->backfilling = true;
        lpg_http_hold(c, lpg_poll_gone, p);
        lpg_backfill_queue(&p->bf->req);
        return;
    }

    lpg_poll_answer_or_park(p, NULL, 0, 0);
}


static void
lpg_poll_backfilled(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                    size_t n, int64_t bound, bool ok)
{
    lpg_poll_bf_t *bf = (lpg_poll_bf_t *) req; /* req is the first member */
    lpg_poll_t    *p = bf->poll;

    p->backfilling = false;

    if (!ok) {
        /* the database is not answering: what the history has, or park */
        lpg_log(LPG_LOG_INFO, 0,
                "backfill failed, answering from the history only");
        lpg_poll_answer_or_park(p, NULL, 0, 0);
        return;
    }

    lpg_poll_answer_or_park(p, rows, n, bound);
}


/* rows (id <= bound) from the database, then the history above bound:
 * an answer when anything matches (or peek), else the poll parks */
static void
lpg_poll_answer_or_park(lpg_poll_t *p, const lpg_bus_rec_t *rows, size_t n,
                        int64_t bound)
{
    size_t             i;
    lpg_buf_t          list;
    lpg_poll_collect_t col;

    if (lpg_bus_stale(p->db, p->last)) {
        /* the ids went backwards while it was looked up: the rows are of
         * the old table; the new table's come from the history */
        p->last = 0;
        p->since_us = 0;
        n = 0;
        bound = 0;
    }

    memset(&list, 0, sizeof(list));
    lpg_poll_collect_init(&col, p, &list, 0);

    for (i = 0; i < n; i++) {
        lpg_poll_collect_cb(&rows[i], &col);
    }

    /* the history part continues the same list */
    col.min_id = bound;
    lpg_bus_since(p->db, p->last, p->since_us, lpg_poll_collect_cb, &col);

    if (col.n > 0 || p->deadline == -1 || col.failed) {
        lpg_poll_send(p, &list, col.failed);
        lpg_buf_free(&list);
        return;
    }

    lpg_buf_free(&list);
    lpg_poll_park(p);
}


/* fills p from the JSON-RPC body; on error *why says what is wrong */
static int
lpg_poll_parse(lpg_poll_t *p, const lpg_http_request_t *r, const char **why)
{
    int            rc;
    size_t         i;
    json_t        *ch, *b;
    const char    *db;
    lpg_rpc_poll_t rp;

    rc = lpg_rpc_poll_parse(r->body, r->body_len,
                            (size_t) lpg_poll.ctx.conf->max_channels_per_poll,
                            &rp, why);

    /* the id is wanted by the error answer too */
    p->id = rp.id;
    rp.id = NULL;

    if (rc != LPG_OK || p->db < 0) {
        lpg_rpc_poll_free(&rp);
        return rc;
    }

    p->last = rp.last;
    p->inactivity = rp.inactivity;
    if (rp.peek) {
        p->deadline = -1;
    }

    db = lpg_poll.ctx.shm->dbs[p->db].name;

    json_array_foreach(rp.channels, i, ch)
    {
        if (lpg_poll_add_key(p, db, ch) != LPG_OK) {
            *why = "a channel is not valid UTF-8 or too long";
            lpg_rpc_poll_free(&rp);
            return LPG_ERROR;
        }
    }

    lpg_rpc_poll_free(&rp);

    if (p->version >= 15) {
        b = json_string("broadcast");

        if (b == NULL || lpg_poll_add_key(p, db, b) != LPG_OK) {
            json_decref(b);
            *why = "out of memory";
            return LPG_ERROR;
        }

        json_decref(b);
    }

    return LPG_OK;
}


/* the key as Odoo stores it: json_dump(c) or, 15+, json_dump([db, c]) */
static int
lpg_poll_add_key(lpg_poll_t *p, const char *db, json_t *channel)
{
    int       rc;
    json_t   *pair;
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    if (p->version >= 15) {
        pair = json_pack("[sO]", db, channel);
        rc = pair != NULL ? lpg_json_dump(&b, pair) : LPG_ERROR;
        json_decref(pair);

    } else {
        rc = lpg_json_dump(&b, channel);
    }

    if (rc != LPG_OK) {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    return lpg_poll_add_text(p, &b);
}


/* adds the channel text b (taken over, freed on error) unless present */
static int
lpg_poll_add_text(lpg_poll_t *p, lpg_buf_t *b0)
{
    size_t    i;
    char     *k;
    lpg_buf_t b = *b0;

    if (b.len > LPG_POLL_KEY_MAX) {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    for (i = 0; i < p->nkeys; i++) {
        if (p->key_lens[i] == b.len && memcmp(p->keys[i], b.data, b.len) == 0) {
            lpg_buf_free(&b);
            return LPG_OK;
        }
    }

    if (p->keys == NULL) {
        p->keys = p->keys_inline;
        p->key_lens = p->key_lens_inline;
        p->keys_cap = LPG_POLL_INLINE_KEYS;
    }

    if (p->nkeys == p->keys_cap) {
        size_t  cap = p->keys_cap * 2;
        bool    inl = p->keys == p->keys_inline;
        char  **keys = realloc(inl ? NULL : p->keys, cap * sizeof(*keys));
        size_t *lens;

        if (keys == NULL) {
            lpg_buf_free(&b);
            return LPG_ERROR;
        }

        if (inl) {
            memcpy(keys, p->keys_inline, sizeof(p->keys_inline));
        }
        p->keys = keys;

        lens = realloc(inl ? NULL : p->key_lens, cap * sizeof(*lens));
        if (lens == NULL) {
            /* keys holds the first nkeys; the old capacity still fits */
            lpg_buf_free(&b);
            return LPG_ERROR;
        }

        if (inl) {
            memcpy(lens, p->key_lens_inline, sizeof(p->key_lens_inline));
        }
        p->key_lens = lens;
        p->keys_cap = cap;
    }

    k = b.data;
    p->keys[p->nkeys] = k;
    p->key_lens[p->nkeys] = b.len;
    p->nkeys++;

    return LPG_OK;
}


static void
lpg_poll_park(lpg_poll_t *p)
{
    size_t      i;
    char        key[LPG_SHM_DBNAME + LPG_POLL_KEY_MAX + 1];
    size_t      len;
    int64_t     now;
    const char *db = lpg_poll.ctx.shm->dbs[p->db].name;

    p->subs = p->nkeys <= LPG_POLL_INLINE_KEYS
        ? p->subs_inline
        : calloc(p->nkeys, sizeof(*p->subs));
    if (p->subs == NULL) {
        lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        lpg_poll_free(p);
        return;
    }

    for (i = 0; i < p->nkeys; i++) {
        len = lpg_dispatch_key(key, sizeof(key), db, strlen(db), p->keys[i],
                               p->key_lens[i]);
        if (len == 0
            || lpg_dispatch_add(lpg_poll.dispatch, &p->subs[i], key, len, p)
                != LPG_OK)
        {
            lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n",
                             5);
            lpg_poll_free(p);
            return;
        }
    }

    now = lpg_time_mono_ms();
    p->deadline = now + (int64_t) lpg_poll.ctx.conf->timeout * 1000
        + random() % (LPG_POLL_JITTER_MAX + 1);

    if (p->degraded
        && lpg_poll.ctx.conf->session_retry < lpg_poll.ctx.conf->timeout)
    {
        /* Odoo did not say who this is: answered [] after session_retry so
         * the client asks again (its private messages wait in bus_bus);
         * a timer of its own keeps the timeout list in park order */
        p->retry = malloc(sizeof(*p->retry));
        if (p->retry != NULL) {
            ev_timer_init(p->retry, lpg_poll_retry_cb,
                          (double) lpg_poll.ctx.conf->session_retry, 0.);
            p->retry->data = p;
            ev_timer_start(lpg_poll.ctx.loop, p->retry);
        }
    }

    p->prev = lpg_poll.tail;
    p->next = NULL;
    if (lpg_poll.tail != NULL) {
        lpg_poll.tail->next = p;

    } else {
        lpg_poll.head = p;
    }

    lpg_poll.tail = p;
    lpg_poll.parked++;
    atomic_store_explicit(&lpg_poll.ctx.stats->parked, lpg_poll.parked,
                          memory_order_relaxed);
    p->parked = true;

    lpg_http_hold(p->conn, lpg_poll_gone, p);

    lpg_log(LPG_LOG_DEBUG, 0,
            "poll parked: db \"%s\", %zu channel(s), last %lld", db, p->nkeys,
            (long long) p->last);

    if (!ev_is_active(&lpg_poll.timer)) {
        ev_timer_set(&lpg_poll.timer,
                     (double) (p->deadline - now) / 1000. + 0.001, 0.);
        ev_timer_start(lpg_poll.ctx.loop, &lpg_poll.timer);
    }
}


static void
lpg_poll_collect_cb(const lpg_bus_rec_t *r, void *arg)
{
    size_t              i;
    char                num[32];
    lpg_poll_collect_t *col = arg;
    lpg_poll_t         *p = col->poll;
    lpg_buf_t          *b = col->out;

    for (i = 0; i < p->nkeys; i++) {
        if (p->key_lens[i] == r->channel_len
            && memcmp(p->keys[i], r->channel, r->channel_len) == 0)
        {
            break;
        }
    }

    if (i == p->nkeys || r->id <= col->min_id
        || (p->last > 0 ? r->id <= p->last : r->create_us <= p->since_us))
    {
        return;
    }

    /* capped: the newer ids come on the next poll (last moves up to the
     * largest id sent, and ids are appended in order) */
    if (col->out->len >= (size_t) lpg_poll.ctx.conf->max_answer_size) {
        return;
    }

    snprintf(num, sizeof(num), "%s{\"id\": %lld, ", col->n ? ", " : "",
             (long long) r->id);

    if (lpg_buf_append(b, num, strlen(num)) != LPG_OK
        || (p->version < 15
            && (lpg_buf_append(b, "\"channel\": ", 11) != LPG_OK
                || lpg_buf_append(b, r->channel, r->channel_len) != LPG_OK
                || lpg_buf_append(b, ", ", 2) != LPG_OK))
        || lpg_buf_append(b, "\"message\": ", 11) != LPG_OK
        || lpg_buf_append(b, r->message, r->message_len) != LPG_OK
        || lpg_buf_append(b, "}", 1) != LPG_OK)
    {
        col->failed = true;
    }

    col->n++;
}


static void
lpg_poll_collect_init(lpg_poll_collect_t *col, lpg_poll_t *p, lpg_buf_t *out,
                      int64_t min_id)
{
    col->poll = p;
    col->out = out;
    col->n = 0;
    col->min_id = min_id;
    col->failed = false;
}


/* appends p's matching history records to list; returns how many */
static size_t
lpg_poll_collect(lpg_poll_t *p, lpg_buf_t *list, int64_t min_id, bool *failed)
{
    lpg_poll_collect_t col;

    lpg_poll_collect_init(&col, p, list, min_id);

    lpg_bus_since(p->db, p->last, p->since_us, lpg_poll_collect_cb, &col);

    *failed = *failed || col.failed;

    return col.n;
}


/* answers p, with what the history holds for it when collect, and frees
 * it */
static void
lpg_poll_answer(lpg_poll_t *p, bool collect)
{
    bool      failed = false;
    lpg_buf_t list;

    memset(&list, 0, sizeof(list));

    if (collect) {
        (void) lpg_poll_collect(p, &list, 0, &failed);
    }

    lpg_poll_send(p, &list, failed);
    lpg_buf_free(&list);
}


/* wraps list (the result entries; the caller keeps and frees it) in the
 * JSON-RPC envelope, answers and frees p */
static void
lpg_poll_send(lpg_poll_t *p, const lpg_buf_t *list, bool failed)
{
    size_t       i;
    bool         peek = p->deadline == -1;
    const char  *id = p->id ? p->id : "null";
    lpg_buf_t    out;
    struct iovec iov[5];

    memset(&out, 0, sizeof(out));

    if (!failed && !p->plain && !peek) {
        /* the common answer: its parts copied once, into the output */
        iov[0] = (struct iovec){ "{\"jsonrpc\": \"2.0\", \"id\": ", 25 };
        iov[1] = (struct iovec){ (void *) id, strlen(id) };
        iov[2] = (struct iovec){ ", \"result\": [", 13 };
        iov[3] = (struct iovec){ list->data, list->len };
        iov[4] = (struct iovec){ "]}", 2 };

        lpg_poll_count(p, false, list->len > 0);
        lpg_http_respond_iov(p->conn, 200, "application/json", lpg_poll_cors(p),
                             iov, 5);
        lpg_poll_free(p);
        return;
    }

    if (p->plain) {
        if (lpg_buf_append(&out, "[", 1) != LPG_OK
            || (list->len
                && lpg_buf_append(&out, list->data, list->len) != LPG_OK)
            || lpg_buf_append(&out, "]", 1) != LPG_OK)
        {
            failed = true;
        }

        goto respond;
    }

    if (lpg_buf_append(&out, "{\"jsonrpc\": \"2.0\", \"id\": ", 25) != LPG_OK
        || lpg_buf_append(&out, id, strlen(id)) != LPG_OK
        || lpg_buf_append(&out, ", \"result\": ", 12) != LPG_OK
        || (peek && lpg_buf_append(&out, "{\"notifications\": ", 18) != LPG_OK)
        || lpg_buf_append(&out, "[", 1) != LPG_OK
        || (list->len && lpg_buf_append(&out, list->data, list->len) != LPG_OK)
        || lpg_buf_append(&out, "]", 1) != LPG_OK)
    {
        failed = true;
    }

    if (peek) {
        if (lpg_buf_append(&out, ", \"channels\": [", 15) != LPG_OK) {
            failed = true;
        }

        for (i = 0; i < p->nkeys; i++) {
            if ((i > 0 && lpg_buf_append(&out, ", ", 2) != LPG_OK)
                || lpg_buf_append(&out, p->keys[i], p->key_lens[i]) != LPG_OK)
            {
                failed = true;
            }
        }

        if (lpg_buf_append(&out, "]}", 2) != LPG_OK) {
            failed = true;
        }
    }

    if (lpg_buf_append(&out, "}", 1) != LPG_OK) {
        failed = true;
    }

respond:

    lpg_poll_count(p, failed, list->len > 0);

    if (failed) {
        lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);

    } else {
        lpg_http_respond(p->conn, 200, "application/json", lpg_poll_cors(p),
                         out.data, out.len);
    }

    lpg_buf_free(&out);
    lpg_poll_free(p);
}


static const char *
lpg_poll_cors(const lpg_poll_t *p)
{
    /* cors="*" on the poll route from Odoo 13 */
    return p->version >= 13 ? "Access-Control-Allow-Origin: *\r\n" : NULL;
}


void
lpg_poll_rpc_error(lpg_http_conn_t *c, int version, const char *id,
                   const char *name, const char *msg)
{
    lpg_poll_rpc_fail(c, version, id, 200,
                      version >= 10 ? "Odoo Server Error"
                                    : "OpenERP Server Error",
                      name, msg);
}


void
lpg_poll_rpc_fail(lpg_http_conn_t *c, int version, const char *id, int code,
                  const char *title, const char *name, const char *msg)
{
    char   *text, *body;
    json_t *data, *err;
    size_t  len;

    data = json_pack("{s:s, s:s, s:s, s:[s]}", "name", name, "debug", "",
                     "message", msg, "arguments", msg);
    if (data != NULL && version >= 12) {
        json_object_set_new(data, "exception_type",
                            json_string("internal_error"));
        json_object_set_new(data, "context", json_object());
    }

    err = json_pack("{s:i, s:s, s:o}", "code", code, "message", title, "data",
                    data);
    text = err != NULL ? json_dumps(err, JSON_PRESERVE_ORDER) : NULL;
    json_decref(err);

    if (text == NULL) {
        lpg_http_respond(c, 500, NULL, NULL, "error\n", 6);
        return;
    }

    len = strlen(text) + strlen(id) + 64;
    body = malloc(len);
    if (body == NULL) {
        free(text);
        lpg_http_respond(c, 500, NULL, NULL, "error\n", 6);
        return;
    }

    len =
        snprintf(body, len, "{\"jsonrpc\": \"2.0\", \"id\": %s, \"error\": %s}",
                 id, text);

    atomic_fetch_add_explicit(&lpg_poll.ctx.stats->answered_error, 1,
                              memory_order_relaxed);

    lpg_http_respond(
        c, 200, "application/json",
        version >= 13 ? "Access-Control-Allow-Origin: *\r\n" : NULL, body, len);
    free(body);
    free(text);
}


static void
lpg_poll_free(lpg_poll_t *p)
{
    size_t i;

    if (p->subs != NULL) {
        for (i = 0; i < p->nkeys; i++) {
            lpg_dispatch_remove(lpg_poll.dispatch, &p->subs[i]);
        }
    }

    if (p->parked) {
        /* unlink from the timeout list */
        if (p->prev != NULL) {
            p->prev->next = p->next;

        } else if (lpg_poll.head == p) {
            lpg_poll.head = p->next;
        }

        if (p->next != NULL) {
            p->next->prev = p->prev;

        } else if (lpg_poll.tail == p) {
            lpg_poll.tail = p->prev;
        }

        lpg_poll.parked--;
        atomic_store_explicit(&lpg_poll.ctx.stats->parked, lpg_poll.parked,
                              memory_order_relaxed);
    }

    for (i = 0; i < p->nkeys; i++) {
        free(p->keys[i]);
    }

    lpg_presence_release(p->presence);

    if (p->retry != NULL) {
        ev_timer_stop(lpg_poll.ctx.loop, p->retry);
        free(p->retry);
    }

    if (p->keys != p->keys_inline) {
        free(p->keys);
    }
    if (p->key_lens != p->key_lens_inline) {
        free(p->key_lens);
    }
    if (p->subs != p->subs_inline) {
        free(p->subs);
    }
    free(p->bf);
    free(p->id);
    free(p);
}


/* the client went away while parked: free at once */
static void
lpg_poll_gone(void *data)
{
    lpg_poll_t *p = data;

    if (p->backfilling) {
        lpg_backfill_cancel(&p->bf->req);
    }

    if (p->session_wait) {
        lpg_session_cancel(&p->swait);
    }

    lpg_log(LPG_LOG_DEBUG, 0, "poll freed: client closed the connection");

    if (p->ready) {
        /* it is on the ready list: answered (and freed) there as gone */
        p->conn = NULL;
        return;
    }

    lpg_poll_free(p);
}


static void
lpg_poll_record(const lpg_bus_rec_t *r)
{
    size_t      len;
    char        key[LPG_SHM_DBNAME + LPG_POLL_KEY_MAX + 1];
    const char *db = lpg_poll.ctx.shm->dbs[r->db].name;

    len = lpg_dispatch_key(key, sizeof(key), db, strlen(db), r->channel,
                           r->channel_len);
    if (len == 0) {
        return;
    }

    lpg_poll.current = r;
    lpg_dispatch_match(lpg_poll.dispatch, key, len, lpg_poll_match_cb, NULL);
}


static void
lpg_poll_match_cb(void *owner, void *arg)
{
    lpg_poll_t          *p = owner;
    const lpg_bus_rec_t *r = lpg_poll.current;

    if (r->id <= p->last) {
        return;
    }

    /* a record matching two of its channels comes once */
    if (p->nmatches > 0 && p->matches[p->nmatches - 1] == r->seq) {
        return;
    }

    if (p->nmatches >= 0 && p->nmatches < LPG_POLL_MATCHES) {
        p->matches[p->nmatches++] = r->seq;
    } else {
        p->nmatches = -1;
    }

    if (p->ready) {
        return;
    }

    p->ready = true;
    p->notify_us = r->notify_us;
    p->ready_next = lpg_poll.ready;
    lpg_poll.ready = p;
}


/*
 * Answers p from the records that woke it, or by searching the history.
 * The polls of one batch woken by the same records (a broadcast) share
 * the result list, built once.
 */
static void
lpg_poll_answer_matches(lpg_poll_t *p)
{
    lpg_poll_collect_t col;
    int                i;

    for (i = 0; i < p->nmatches; i++) {
        if (lpg_bus_at(p->matches[i]) == NULL) {
            break;
        }
    }

    if (p->nmatches <= 0 || i < p->nmatches) {
        lpg_poll_answer(p, true);
        return;
    }

    if (p->last > 0 && lpg_poll.shared.nmatches == p->nmatches
        && lpg_poll.shared.version == p->version
        && memcmp(lpg_poll.shared.matches, p->matches,
                  (size_t) p->nmatches * sizeof(p->matches[0]))
            == 0)
    {
        lpg_poll_send(p, &lpg_poll.shared.list, false);
        return;
    }

    lpg_buf_free(&lpg_poll.shared.list);
    lpg_poll.shared.nmatches = 0;

    lpg_poll_collect_init(&col, p, &lpg_poll.shared.list, 0);

    for (i = 0; i < p->nmatches; i++) {
        lpg_poll_collect_cb(lpg_bus_at(p->matches[i]), &col);
    }

    /* every matched record is above p->last and fits the size cap
     * (matches are few), so the list is the same for any poll woken
     * by these records */
    if (!col.failed && p->last > 0 && (size_t) col.n == (size_t) p->nmatches) {
        lpg_poll.shared.nmatches = p->nmatches;
        lpg_poll.shared.version = p->version;
        memcpy(lpg_poll.shared.matches, p->matches,
               (size_t) p->nmatches * sizeof(p->matches[0]));
    }

    lpg_poll_send(p, &lpg_poll.shared.list, col.failed);
}


static void
lpg_poll_batch(void)
{
    lpg_poll_t *p, *next;

    p = lpg_poll.ready;
    lpg_poll.ready = NULL;

    for (; p != NULL; p = next) {
        next = p->ready_next;

        if (p->conn == NULL) {
            lpg_poll_free(p);
            continue;
        }

        lpg_poll_answer_matches(p);
    }

    lpg_buf_free(&lpg_poll.shared.list);
    lpg_poll.shared.nmatches = 0;
}


/*
 * The ring lapped us: parked polls may have missed records.  They get []
 * now and re-poll with their last, which the history no longer covers,
 * so the answer comes from the database.
 */
static void
lpg_poll_lost(uint64_t n)
{
    while (lpg_poll.head != NULL) {
        lpg_poll_answer(lpg_poll.head, false);
    }
}


/*
 * db's ids went backwards (lpg_bus.h): its parked polls stay parked but
 * start again from base, so every row of the new table wakes them, the
 * one whose NOTIFY revealed the reset included.  (Answered [] instead,
 * an 8-15 client would come back with its old last, be served from the
 * cursor, and miss the rows published in between.)  Ready ones are
 * answered by the batch with the records that woke them.
 */
static void
lpg_poll_reset(int db, int64_t base)
{
    lpg_poll_t *p;

    for (p = lpg_poll.head; p != NULL; p = p->next) {
        if (p->db == db && !p->ready) {
            p->last = base;
            p->since_us = 0;
        }
    }
}


static void
lpg_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t     now, horizon;
    lpg_poll_t *p, *next;

    now = lpg_time_mono_ms();

    /* polls parked in the same jitter window may be due out of order */
    for (p = lpg_poll.head; p != NULL; p = next) {
        next = p->next;

        if (p->deadline - LPG_POLL_JITTER_MAX > now) {
            break;
        }

        if (p->deadline <= now && !p->ready) {
            lpg_poll_answer(p, false);
        }
    }

    if (lpg_poll.head != NULL) {
        /* the head is not always the first due: jitter reorders */
        horizon = lpg_poll.head->deadline - LPG_POLL_JITTER_MAX - now;
        if (horizon < 50) {
            horizon = 50;
        }

        ev_timer_set(w, (double) horizon / 1000., 0.);
        ev_timer_start(loop, w);
    }
}


static void
lpg_poll_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_poll_t *p = w->data;

    if (!p->ready) {
        lpg_poll_answer(p, false);
    }
}


void
lpg_poll_shutdown(void)
{
    while (lpg_poll.head != NULL) {
        if (lpg_poll.head->ready) {
            lpg_poll_batch();
            continue;
        }

        lpg_poll_answer(lpg_poll.head, false);
    }
}


/* Odoo's order: ?db=, then dbfilter on the Host header, then the only
 * database served; -1 when none (an error for the client) */
int
lpg_poll_pick_db(const lpg_http_request_t *r)
{
    int         db;
    const char *q, *e;
    lpg_shm_t  *shm = lpg_poll.ctx.shm;

    for (q = r->query; q != NULL && q < r->query + r->query_len; q = e + 1) {
        e = memchr(q, '&', r->query + r->query_len - q);
        if (e == NULL) {
            e = r->query + r->query_len;
        }

        if (e - q > 3 && memcmp(q, "db=", 3) == 0) {
            return lpg_shm_find_db(shm, q + 3, e - q - 3);
        }
    }

    if (lpg_poll.ctx.conf->dbfilter[0] != '\0' && r->host != NULL) {
        db = lpg_poll_dbfilter(r->host, r->host_len);
        if (db >= 0) {
            return db;
        }
    }

    return shm->header->ndbs == 1 ? 0 : -1;
}


/* appends s[0..len) to b with POSIX ERE metacharacters escaped */
static int
lpg_poll_re_escape(lpg_buf_t *b, const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (strchr(".[]{}()\\*+?^$|", s[i]) != NULL
            && lpg_buf_append(b, "\\", 1) != LPG_OK)
        {
            return LPG_ERROR;
        }

        if (lpg_buf_append(b, &s[i], 1) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/* the one database whose name the dbfilter matches for this host */
static int
lpg_poll_dbfilter(const char *host, size_t len)
{
    int         i, found, rc;
    size_t      hlen, dlen;
    regex_t     re;
    lpg_buf_t   pat;
    const char *f, *d, *dot, *rest;
    lpg_shm_t  *shm = lpg_poll.ctx.shm;

    /* %h: the host without its port; %d: its first label, www. skipped */
    for (hlen = 0; hlen < len && host[hlen] != ':'; hlen++) {
        /* void */
    }

    d = host;
    dot = memchr(host, '.', hlen);
    dlen = dot ? (size_t) (dot - host) : hlen;
    if (dlen == 3 && memcmp(host, "www", 3) == 0 && dot != NULL) {
        rest = dot + 1;
        d = rest;
        dot = memchr(rest, '.', host + hlen - rest);
        dlen = dot ? (size_t) (dot - rest) : (size_t) (host + hlen - rest);
    }

    memset(&pat, 0, sizeof(pat));
    rc = lpg_buf_append(&pat, "^(", 2);

    for (f = lpg_poll.ctx.conf->dbfilter; *f != '\0' && rc == LPG_OK; f++) {
        if (f[0] == '%' && f[1] == 'h') {
            rc = lpg_poll_re_escape(&pat, host, hlen);
            f++;

        } else if (f[0] == '%' && f[1] == 'd') {
            rc = lpg_poll_re_escape(&pat, d, dlen);
            f++;

        } else {
            rc = lpg_buf_append(&pat, f, 1);
        }
    }

    if (rc != LPG_OK || lpg_buf_append(&pat, ")", 1) != LPG_OK
        || regcomp(&re, pat.data, REG_EXTENDED | REG_NOSUB) != 0)
    {
        lpg_log(LPG_LOG_WARN, 0,
                "dbfilter \"%s\" is not a valid regular "
                "expression",
                lpg_poll.ctx.conf->dbfilter);
        lpg_buf_free(&pat);
        return -1;
    }

    lpg_buf_free(&pat);

    found = -1;
    for (i = 0; i < shm->header->ndbs; i++) {
        if (regexec(&re, shm->dbs[i].name, 0, NULL, 0) == 0) {
            if (found >= 0) {
                /* several: Odoo cannot choose either */
                found = -1;
                break;
            }

            found = i;
        }
    }

    regfree(&re);

    return found;
}


int
lpg_poll_version(int db)
{
    int v;

    v = db >= 0 ? atomic_load(&lpg_poll.ctx.shm->dbs[db].version) : 0;
    if (v != 0) {
        return v;
    }

    return lpg_poll.ctx.conf->odoo_version ? lpg_poll.ctx.conf->odoo_version
                                           : 14;
}


/* %XX and '+' decoding of one query value into b */
static int
lpg_poll_unescape(lpg_buf_t *b, const char *s, size_t len)
{
    char   c, hex[3];
    size_t i;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c == '+') {
            c = ' ';

        } else if (c == '%' && i + 2 < len && isxdigit((unsigned char) s[i + 1])
                   && isxdigit((unsigned char) s[i + 2]))
        {
            hex[0] = s[i + 1];
            hex[1] = s[i + 2];
            hex[2] = '\0';
            c = (char) strtol(hex, NULL, 16);
            i += 2;
        }

        if (lpg_buf_append(b, &c, 1) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/*
 * GET <path>/poll?channels=a,b&last=N as the body of an equivalent
 * JSON-RPC call (caller frees); NULL with *why on a malformed query.
 */
static char *
lpg_poll_query_body(const lpg_http_request_t *r, const char **why)
{
    char       *text, *end;
    json_t     *params, *channels, *body, *str;
    long long   last;
    lpg_buf_t   v;
    const char *q, *e, *eq, *c, *ce;

    channels = json_array();
    params = json_pack("{s:o, s:i}", "channels", channels, "last", 0);
    body = json_pack("{s:o}", "params", params);
    memset(&v, 0, sizeof(v));
    *why = "malformed query string";

    if (body == NULL) {
        return NULL;
    }

    for (q = r->query; q != NULL && q < r->query + r->query_len; q = e + 1) {
        e = memchr(q, '&', r->query + r->query_len - q);
        if (e == NULL) {
            e = r->query + r->query_len;
        }

        eq = memchr(q, '=', e - q);
        if (eq == NULL) {
            continue;
        }

        v.len = 0;
        if (lpg_poll_unescape(&v, eq + 1, e - eq - 1) != LPG_OK
            || lpg_buf_append(&v, "", 0) != LPG_OK)
        {
            goto failed;
        }

        if (eq - q == 4 && memcmp(q, "last", 4) == 0) {
            last = strtoll(v.data, &end, 10);
            if (*v.data == '\0' || *end != '\0' || last < 0) {
                *why = "last must be a non-negative integer";
                goto failed;
            }

            json_object_set_new(params, "last", json_integer(last));

        } else if (eq - q == 8 && memcmp(q, "channels", 8) == 0) {
            for (c = v.data; c < v.data + v.len; c = ce + 1) {
                ce = memchr(c, ',', v.data + v.len - c);
                if (ce == NULL) {
                    ce = v.data + v.len;
                }

                if (ce == c) {
                    continue;
                }

                str = json_stringn(c, ce - c);
                if (str == NULL) {
                    *why = "a channel is not valid UTF-8";
                    goto failed;
                }

                json_array_append_new(channels, str);
            }
        }
    }

    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    lpg_buf_free(&v);

    return text;

failed:

    json_decref(body);
    lpg_buf_free(&v);

    return NULL;
}


static void
lpg_poll_plain_error(lpg_http_conn_t *c, const char *why)
{
    char   *text;
    json_t *j;

    j = json_pack("{s:s}", "error", why);
    text = j != NULL ? json_dumps(j, 0) : NULL;
    json_decref(j);

    if (text == NULL) {
        lpg_http_respond(c, 500, NULL, NULL, "error\n", 6);
        return;
    }

    lpg_http_respond(c, 400, "application/json",
                     "Access-Control-Allow-Origin: *\r\n", text, strlen(text));
    free(text);
}


/* the answer counters and, for a poll a record woke, the latency from the
 * master's NOTIFY receipt to now (the reply is written at once) */
static void
lpg_poll_count(lpg_poll_t *p, bool failed, bool message)
{
    int                 i;
    int64_t             us;
    lpg_shm_worker_t   *st = lpg_poll.ctx.stats;
    static const double bounds[] = LPG_SHM_LAT_BOUNDS;

    if (failed) {
        atomic_fetch_add_explicit(&st->answered_refused, 1,
                                  memory_order_relaxed);
        return;
    }

    atomic_fetch_add_explicit(message ? &st->answered_message
                                      : &st->answered_timeout,
                              1, memory_order_relaxed);

    if (!message || p->notify_us == 0) {
        return;
    }

    us = lpg_time_mono_us() - p->notify_us;
    if (us < 0) {
        us = 0;
    }

    for (i = 0; i < LPG_SHM_LAT_BUCKETS - 1; i++) {
        if ((double) us / 1e6 <= bounds[i]) {
            break;
        }
    }

    atomic_fetch_add_explicit(&st->lat[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->lat_sum_us, (uint64_t) us,
                              memory_order_relaxed);
}
