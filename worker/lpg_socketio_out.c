/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio_out.c: the records a Socket.IO socket gets: the replay of
 * a subscribe (from the history, or a backfill query when the history is
 * too short) and the records that wake its subscription, each one event
 * `notification` with {"id", "channel", "message"} on the socket's
 * namespace; the channel is the name the client subscribed (without the
 * namespace's prefix), or, for an Odoo session's channel, its JSON as
 * bus_bus holds it.
 */

#include "lpg_socketio_int.h"
#include "lpg_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


typedef struct {
    lpg_sio_nsp_t *n;
    lpg_buf_t      pkt;
    size_t         sent;
    int64_t        max_id;
    bool           filter; /* a replay: skip what was sent */
    bool           failed;
} lpg_sio_batch_t;


static void lpg_sio_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                               size_t k, int64_t bound, bool ok);
static void lpg_sio_replay(lpg_sio_nsp_t *n, const lpg_bus_rec_t *rows,
                           size_t k, int64_t bound);
static void lpg_sio_deliver(lpg_sub_t *s);
static void lpg_sio_lost(lpg_sub_t *s);
static void lpg_sio_rec(const lpg_bus_rec_t *r, void *arg);
static int  lpg_sio_channel(lpg_sio_nsp_t *n, lpg_buf_t *b,
                            const lpg_bus_rec_t *r);
static void lpg_sio_batch_end(lpg_sio_batch_t *b);


const lpg_sub_ops_t lpg_sio_sub_ops = {
    "socket.io",
    lpg_sio_deliver,
    lpg_sio_lost,
};


/* the sub is keyed and its last set: replay, now or after a backfill */
void
lpg_sio_replay_start(lpg_sio_nsp_t *n)
{
    lpg_sub_t *s = &n->sub;

    s->since_us = 0;
    if (s->last == 0) {
        /* as a poll's last 0: the notifications of the last timeout s */
        s->since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_sio.ctx.conf->timeout * 1000000;
    }

    if (lpg_sub_needs_fill(s)) {
        if (lpg_sub_fill(s, lpg_sio_backfilled) != LPG_OK) {
            lpg_log(LPG_LOG_ERR, 0, "socket.io: out of memory for a backfill");
            lpg_sio_close(n->s, "out of memory");
        }

        return;
    }

    lpg_sio_replay(n, NULL, 0, 0);
}


static void
lpg_sio_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t k,
                   int64_t bound, bool ok)
{
    lpg_sio_nsp_t *n = (lpg_sio_nsp_t *) s;
    lpg_sio_t     *sess = n->s;

    if (sess == NULL) {
        return;
    }

    if (!ok) {
        lpg_log(LPG_LOG_INFO, 0,
                "socket.io: backfill failed, replaying from the history only");
        k = 0;
        bound = 0;
    }

    lpg_sio_replay(n, rows, k, bound);
    lpg_sio_run_queued(n);
    lpg_sio_flush(sess);
}


/* rows (id <= bound), then the history above bound; then the socket is
 * attached: the ring's next records wake it */
static void
lpg_sio_replay(lpg_sio_nsp_t *n, const lpg_bus_rec_t *rows, size_t k,
               int64_t bound)
{
    lpg_sio_batch_t b;
    lpg_sub_t      *s = &n->sub;

    memset(&b, 0, sizeof(b));
    b.n = n;
    b.filter = true;

    (void) lpg_sub_rows(s, rows, k, lpg_sio_rec, &b);
    (void) lpg_sub_history(s, bound, lpg_sio_rec, &b);
    lpg_sio_batch_end(&b);
    lpg_sio_forget_old(n);

    if (b.failed || n->s == NULL || n->s->closed) {
        return;
    }

    /* everything up to both lasts is the client's now */
    if (n->old_last > s->last) {
        s->last = n->old_last;
    }
    if (n->new_last > s->last) {
        s->last = n->new_last;
    }

    if (lpg_sub_attach(s) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "socket.io: could not subscribe (no memory)");
        lpg_sio_close(n->s, "out of memory");
    }
}


/* one record: a notification event, queued on the session */
static void
lpg_sio_rec(const lpg_bus_rec_t *r, void *arg)
{
    int              len;
    char             num[32];
    size_t           i;
    int64_t          from;
    lpg_sio_batch_t *b = arg;
    lpg_sio_nsp_t   *n = b->n;

    if (b->failed || n->s == NULL || n->s->closed) {
        return;
    }

    if (b->filter) {
        /* a replay: each key from its own last */
        from = n->new_last;
        for (i = 0; i < n->nold; i++) {
            if (n->old_lens[i] == r->channel_len
                && memcmp(n->old[i], r->channel, r->channel_len) == 0)
            {
                from = n->old_last;
                break;
            }
        }

        if (r->id <= from) {
            return;
        }
    }

    b->pkt.len = 0;
    len = snprintf(num, sizeof(num), "%lld", (long long) r->id);

    if (lpg_buf_append_str(&b->pkt, "42") != LPG_OK
        || (n->name_len > 1
            && (lpg_buf_append(&b->pkt, n->name, n->name_len) != LPG_OK
                || lpg_buf_append(&b->pkt, ",", 1) != LPG_OK))
        || lpg_buf_append_str(&b->pkt, "[\"notification\",{\"id\":") != LPG_OK
        || lpg_buf_append(&b->pkt, num, len) != LPG_OK
        || lpg_buf_append_str(&b->pkt, ",\"channel\":") != LPG_OK
        || lpg_sio_channel(n, &b->pkt, r) != LPG_OK
        || lpg_buf_append_str(&b->pkt, ",\"message\":") != LPG_OK
        || lpg_buf_append(&b->pkt, r->message, r->message_len) != LPG_OK
        || lpg_buf_append_str(&b->pkt, "}]") != LPG_OK)
    {
        b->failed = true;
        lpg_sio_close(n->s, "out of memory");
        return;
    }

    lpg_sio_queue(n->s, b->pkt.data, b->pkt.len);
    b->sent++;

    if (r->id > b->max_id) {
        b->max_id = r->id;
    }
}


/*
 * The channel as the client named it: a string channel (15+: the second
 * element of [db, name]) without the namespace's prefix; another channel
 * (an Odoo session's) as its JSON.
 */
static int
lpg_sio_channel(lpg_sio_nsp_t *n, lpg_buf_t *b, const lpg_bus_rec_t *r)
{
    int          rc;
    json_t      *j, *name;
    size_t       plen = n->name_len > 1 ? n->name_len : 0;
    const char  *v;
    json_error_t e;

    j = json_loadb(r->channel, r->channel_len, JSON_DECODE_ANY, &e);
    name = j;

    if (json_is_array(j) && json_array_size(j) == 2) {
        name = json_array_get(j, 1);
    }

    if (!json_is_string(name)) {
        json_decref(j);
        return lpg_buf_append(b, r->channel, r->channel_len);
    }

    v = json_string_value(name);

    /* "/chat" serves "chat/<name>" */
    if (plen > 0 && json_string_length(name) > plen
        && memcmp(v, n->name + 1, plen - 1) == 0 && v[plen - 1] == '/')
    {
        rc = lpg_json_dump_string(b, v + plen, json_string_length(name) - plen);

    } else {
        rc = lpg_json_dump_string(b, v, json_string_length(name));
    }

    json_decref(j);

    return rc;
}


/* the batch's records are out: last moves past them */
static void
lpg_sio_batch_end(lpg_sio_batch_t *b)
{
    lpg_sio_nsp_t *n = b->n;

    lpg_buf_free(&b->pkt);

    if (b->sent > 0) {
        atomic_fetch_add_explicit(&lpg_sio.ctx.stats->sio_delivered, b->sent,
                                  memory_order_relaxed);
    }

    if (b->max_id > n->sub.last) {
        n->sub.last = b->max_id;
    }
}


/* records woke n: the ones it wants go out, one event each */
static void
lpg_sio_deliver(lpg_sub_t *s)
{
    int64_t         before;
    lpg_sio_nsp_t  *n = (lpg_sio_nsp_t *) s;
    lpg_sio_batch_t b;

    if (n->dead) {
        lpg_sio_nsp_free(n);
        return;
    }

    if (n->s == NULL || n->s->closed) {
        lpg_sub_rearm(s);
        return;
    }

    before = s->last;
    memset(&b, 0, sizeof(b));
    b.n = n;

    if (lpg_sub_matched(s) && s->last > 0) {
        (void) lpg_sub_each_match(s, lpg_sio_rec, &b);

    } else {
        (void) lpg_sub_history(s, 0, lpg_sio_rec, &b);
    }

    lpg_sio_batch_end(&b);

    if (s->last > before) {
        lpg_metrics_delivered(lpg_sio.ctx.stats, s->notify_us);
    }

    lpg_sub_rearm(s);

    if (n->s != NULL) {
        lpg_sio_flush(n->s);
    }
}


/* the ring lapped the worker: what n may have missed comes from the
 * database, then it is attached again */
static void
lpg_sio_lost(lpg_sub_t *s)
{
    lpg_sio_nsp_t *n = (lpg_sio_nsp_t *) s;

    if (n->dead) {
        lpg_sio_nsp_free(n);
        return;
    }

    lpg_sub_detach(s);
    lpg_sub_rearm(s);

    if (n->s == NULL || n->s->closed || lpg_sub_filling(s)) {
        return;
    }

    n->old_last = s->last;
    n->new_last = s->last;

    if (lpg_sub_fill(s, lpg_sio_backfilled) != LPG_OK) {
        lpg_sio_close(n->s, "out of memory");
    }
}


/* the keys held before a subscribe go */
void
lpg_sio_forget_old(lpg_sio_nsp_t *n)
{
    size_t i;

    for (i = 0; i < n->nold; i++) {
        free(n->old[i]);
    }

    free(n->old);
    free(n->old_lens);
    n->old = NULL;
    n->old_lens = NULL;
    n->nold = 0;
}


/* n is out of its session (n->s NULL): what it waits for is cancelled */
void
lpg_sio_nsp_stop(lpg_sio_nsp_t *n)
{
    if (n->session_wait) {
        lpg_session_cancel(&n->swait);
        n->session_wait = false;
    }

    lpg_ahead_cancel(&n->ahead);
    json_decref(n->ahead_data);
    n->ahead_data = NULL;

    if (n->publishing) {
        /* the row may or may not be inserted: the query runs on */
        lpg_backfill_cancel(&n->pub);
        n->publishing = false;
    }
}


/* n is out of its session (n->s NULL): freed now, or at its deliver */
void
lpg_sio_nsp_free(lpg_sio_nsp_t *n)
{
    size_t i;

    lpg_sio_nsp_stop(n);

    if (n->sub.ready) {
        /* on the ready list: freed when its deliver comes */
        n->dead = true;
        return;
    }

    lpg_sub_release(&n->sub);
    lpg_sio_forget_old(n);

    for (i = 0; i < n->nskeys; i++) {
        free(n->skeys[i]);
    }

    free(n->skeys);
    free(n->skey_lens);
    free(n->cookie);
    free(n->pub_sql);
    json_decref(n->channels);
    json_decref(n->queued);
    free(n);
}
