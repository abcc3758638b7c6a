/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsapi_out.c: what a /ws socket sends: the replay of a subscribe
 * (from the history, or a backfill query when the history is too short),
 * the batches of records that wake it (one TEXT frame per batch, framed
 * once for every /ws socket woken by the same records), acknowledgements
 * and errors.
 *
 * A batch is a JSON array of {"id", "channel", "message"}: the plain poll
 * API's entries (lpg_odoo_list_add with 8-14's shape, which names the
 * channel), whatever the database's version.
 */

#include "lpg_wsapi_int.h"
#include "lpg_metrics.h"
#include "lpg_odoo_poll.h"
#include "lpg_odoo_ws.h"
#include "lpg_wsc_batch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


/* the list shape of every /ws batch: 8-14's entries name the channel */
#define LPG_WSA_ENTRIES 14


static void lpg_wsa_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                               size_t n, int64_t bound, bool ok);
static void lpg_wsa_replay(lpg_wsa_t *w, const lpg_bus_rec_t *rows, size_t n,
                           int64_t bound);
static void lpg_wsa_deliver(lpg_sub_t *s);
static void lpg_wsa_lost(lpg_sub_t *s);
static void lpg_wsa_batch_init(lpg_wsc_batch_t *b, lpg_wsa_t *w);
static void lpg_wsa_batch_add(const lpg_bus_rec_t *r, void *arg);
static void lpg_wsa_replay_add(const lpg_bus_rec_t *r, void *arg);
static void lpg_wsa_delivered(lpg_wsa_t *w, size_t n);


const lpg_sub_ops_t lpg_wsa_sub_ops = {
    "ws",
    lpg_wsa_deliver,
    lpg_wsa_lost,
};


/* {"error": why, "op": op} */
void
lpg_wsa_error(lpg_wsa_t *w, const char *op, const char *why)
{
    lpg_log(LPG_LOG_DEBUG, 0, "ws: %s%s%s", op ? op : "", op ? ": " : "", why);

    lpg_wsa_reply(w, json_pack("{s:s, s:s?}", "error", why, "op", op));
}


/* sends j (taken over) as one TEXT frame */
void
lpg_wsa_reply(lpg_wsa_t *w, json_t *j)
{
    char *text;

    text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);

    if (text == NULL) {
        lpg_log(LPG_LOG_ERR, 0, "ws: out of memory for a reply: closed");
        lpg_wsc_close(&w->wsc, LPG_WS_SERVER_ERROR);
        return;
    }

    (void) lpg_wsc_text(&w->wsc, text, strlen(text));
    free(text);
}


/* the sub is keyed and its last set: replay, now or after a backfill */
void
lpg_wsa_replay_start(lpg_wsa_t *w)
{
    lpg_sub_t *s = &w->sub;

    s->since_us = 0;
    if (s->last == 0) {
        /* as a poll's last 0: the notifications of the last timeout s */
        s->since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_wsa_ctx->conf->timeout * 1000000;
    }

    if (lpg_sub_needs_fill(s)) {
        if (lpg_sub_fill(s, lpg_wsa_backfilled) != LPG_OK) {
            lpg_log(LPG_LOG_ERR, 0, "ws: out of memory for a backfill");
            lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
        }

        return;
    }

    lpg_wsa_replay(w, NULL, 0, 0);
}


static void
lpg_wsa_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                   int64_t bound, bool ok)
{
    lpg_wsa_t *w = (lpg_wsa_t *) s;

    if (!ok) {
        lpg_log(LPG_LOG_INFO, 0,
                "ws: backfill failed, replaying from the history only");
        n = 0;
        bound = 0;
    }

    lpg_wsa_replay(w, rows, n, bound);
    lpg_wsa_run_queued(w);
    lpg_wsc_flush(&w->wsc);
}


/* rows (id <= bound), then the history above bound; then the socket is
 * attached: the ring's next records wake it */
static void
lpg_wsa_replay(lpg_wsa_t *w, const lpg_bus_rec_t *rows, size_t n, int64_t bound)
{
    lpg_wsc_batch_t b;
    lpg_sub_t      *s = &w->sub;

    if (w->wsc.closing) {
        lpg_wsa_forget_old(w);
        return;
    }

    lpg_wsa_batch_init(&b, w);
    (void) lpg_sub_rows(s, rows, n, lpg_wsa_replay_add, &b);
    (void) lpg_sub_history(s, bound, lpg_wsa_replay_add, &b);
    lpg_wsc_batch_flush(&b);
    lpg_wsc_batch_free(&b);
    lpg_wsa_delivered(w, b.sent);
    lpg_wsa_forget_old(w);

    if (b.failed) {
        lpg_wsc_close(&w->wsc, LPG_WS_SERVER_ERROR);
        return;
    }

    /* everything up to both lasts is the client's now: later wake-ups
     * (and a search of the history) start above them */
    if (w->old_last > s->last) {
        s->last = w->old_last;
    }
    if (w->new_last > s->last) {
        s->last = w->new_last;
    }

    if (lpg_sub_attach(s) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "ws: could not subscribe (no memory)");
        lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
    }
}


/* the keys held before a subscribe go */
void
lpg_wsa_forget_old(lpg_wsa_t *w)
{
    size_t i;

    for (i = 0; i < w->nold; i++) {
        free(w->old[i]);
    }

    free(w->old);
    free(w->old_lens);
    w->old = NULL;
    w->old_lens = NULL;
    w->nold = 0;
}


static void
lpg_wsa_batch_init(lpg_wsc_batch_t *b, lpg_wsa_t *w)
{
    lpg_wsc_batch_init(b, &w->wsc, &w->sub, LPG_WSA_ENTRIES,
                       (size_t) lpg_wsa_ctx->conf->max_answer_size / 2);
}


static void
lpg_wsa_batch_add(const lpg_bus_rec_t *r, void *arg)
{
    lpg_wsc_batch_add(arg, r);
}


/* a replay: each key from its own last */
static void
lpg_wsa_replay_add(const lpg_bus_rec_t *r, void *arg)
{
    size_t           i;
    int64_t          from;
    lpg_wsc_batch_t *b = arg;
    lpg_wsa_t       *w = (lpg_wsa_t *) b->sub;

    from = w->new_last;
    for (i = 0; i < w->nold; i++) {
        if (w->old_lens[i] == r->channel_len
            && memcmp(w->old[i], r->channel, r->channel_len) == 0)
        {
            from = w->old_last;
            break;
        }
    }

    if (r->id > from) {
        lpg_wsc_batch_add(b, r);
    }
}


static void
lpg_wsa_delivered(lpg_wsa_t *w, size_t n)
{
    atomic_fetch_add_explicit(&lpg_wsa_ctx->stats->wsapi_delivered, n,
                              memory_order_relaxed);
}


/*
 * Records woke w: the ones it wants go out as one frame, shared by the /ws
 * sockets of the batch woken by the same records (built once).
 */
static void
lpg_wsa_deliver(lpg_sub_t *s)
{
    int64_t         before;
    lpg_wsa_t      *w = (lpg_wsa_t *) s;
    lpg_wsc_batch_t b;

    if (w->dead) {
        lpg_wsa_free(&w->wsc);
        return;
    }

    if (w->wsc.closing || w->wsc.fd == -1) {
        lpg_sub_rearm(s);
        return;
    }

    before = s->last;

    lpg_wsa_batch_init(&b, w);

    if (lpg_sub_matched(s) && s->last > 0) {
        (void) lpg_wsc_batch_deliver(&b, LPG_WSA_SHAPE, lpg_wsa_batch_add, &b);

    } else {
        (void) lpg_sub_history(s, 0, lpg_wsa_batch_add, &b);
        lpg_wsc_batch_flush(&b);
    }

    lpg_wsc_batch_free(&b);
    lpg_wsa_delivered(w, b.sent);

    if (s->last > before) {
        lpg_metrics_delivered(lpg_wsa_ctx->stats, s->notify_us);
    }

    lpg_sub_rearm(s);
    lpg_wsc_flush(&w->wsc);
}


/* the ring lapped the worker: what w may have missed comes from the
 * database, then it is attached again */
static void
lpg_wsa_lost(lpg_sub_t *s)
{
    lpg_wsa_t *w = (lpg_wsa_t *) s;

    if (w->dead) {
        lpg_wsa_free(&w->wsc);
        return;
    }

    lpg_sub_detach(s);
    lpg_sub_rearm(s);

    if (w->wsc.closing || lpg_sub_filling(s)) {
        /* a replay under way covers it */
        return;
    }

    w->old_last = s->last;
    w->new_last = s->last;

    if (lpg_sub_fill(s, lpg_wsa_backfilled) != LPG_OK) {
        lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
        lpg_wsc_flush(&w->wsc);
    }
}


/* the socket is gone (lpg_wsc), or a dead one's deliver came */
void
lpg_wsa_free(lpg_wsc_t *c)
{
    lpg_wsa_t *w = lpg_wsc_data(c, lpg_wsa_t, wsc);

    lpg_ahead_drop(&w->ahead);

    if (w->sub.ready) {
        /* on the ready list: freed when its deliver comes */
        w->dead = true;
        return;
    }

    lpg_wsa_pub_free(w);
    lpg_sub_release(&w->sub);
    lpg_wsa_forget_old(w);
    lpg_strlist_free(&w->channels);
    json_decref(w->queued);
    free(w);
}
