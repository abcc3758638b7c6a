/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sse.c: GET <path>/sse, Server-Sent Events (lpg_sse.h).
 *
 * A stream is a subscription (lpg_sub) on a detached socket.  It starts
 * like a poll: from the history, or a backfill query when its last is
 * older than the history, the events written in one go, then it is
 * attached and each batch of records that wakes it is one write (its text
 * built once for every stream woken by the same records: lpg_sub_shared).
 * When the ring laps the worker the stream is filled again from the
 * database from its last, so nothing is lost and nothing repeated.  The
 * socket's output, timers and end are lpg_sse_life.c's.
 */

#include "lpg_sse_int.h"
#include "lpg_metrics.h"
#include "lpg_plain.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#define LPG_SSE_SHAPE    1 /* lpg_sub_shared: the one text shape */
#define LPG_SSE_HEAD_MAX 512


/* the events of one write being built */
typedef struct {
    lpg_buf_t *out;
    size_t     cap; /* stop adding past this many bytes (0: never) */
    size_t     n;
    int64_t    max_id;
    bool       capped;
    bool       failed;
} lpg_sse_batch_t;


static void lpg_sse_start(lpg_sse_t *s, int fd);
static void lpg_sse_fetched(lpg_ahead_t *a);
static void lpg_sse_begin(lpg_sse_t *s);
static void lpg_sse_backfilled(lpg_sub_t *sub, const lpg_bus_rec_t *rows,
                               size_t n, int64_t bound, bool ok);
static void lpg_sse_replay(lpg_sse_t *s, const lpg_bus_rec_t *rows, size_t n,
                           int64_t bound);
static void lpg_sse_deliver(lpg_sub_t *sub);
static void lpg_sse_lost(lpg_sub_t *sub);
static void lpg_sse_event(const lpg_bus_rec_t *r, void *arg);
static void lpg_sse_max_id(const lpg_bus_rec_t *r, void *arg);
static void lpg_sse_counted(lpg_sse_t *s, size_t n);


static const lpg_sub_ops_t lpg_sse_ops = {
    "sse",
    lpg_sse_deliver,
    lpg_sse_lost,
};


void
lpg_sse_init(const lpg_http_ctx_t *ctx)
{
    lpg_sse.ctx = *ctx;
    lpg_sse_life_init();
    lpg_ahead_init(ctx->loop);
}


void
lpg_sse_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int             fd;
    char           *rest, *end, id[32];
    size_t          n, rest_len;
    long long       last;
    const char     *why;
    lpg_sse_t      *s;
    lpg_odoo_poll_t q;

    if (lpg_sse.stopping) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 1\r\n", "stopping\n", 9);
        return;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    s->fd = -1;
    s->sub.ops = &lpg_sse_ops;

    memset(&q, 0, sizeof(q));
    if (lpg_plain_parse(r, &q, &s->sub, &n, &why) != LPG_OK) {
        goto invalid;
    }

    if (n == 0) {
        why = "no channels: pass ?channels=a,b";
        goto invalid;
    }

    if (r->last_event_id != NULL) {
        /* EventSource's resume: the id of the last event it received */
        why = "Last-Event-ID must be a non-negative integer";
        if (r->last_event_id_len >= sizeof(id)) {
            goto invalid;
        }

        memcpy(id, r->last_event_id, r->last_event_id_len);
        id[r->last_event_id_len] = '\0';
        errno = 0;
        last = strtoll(id, &end, 10);
        if (*id < '0' || *id > '9' || *end != '\0' || errno != 0) {
            goto invalid;
        }

        s->sub.last = last;
    }

    lpg_odoo_poll_free(&q);

    fd = lpg_http_detach(c, &rest, &rest_len);
    free(rest);

    if (fd == -1) {
        lpg_sub_release(&s->sub);
        free(s);
        return;
    }

    lpg_sse_start(s, fd);
    return;

invalid:

    lpg_odoo_poll_free(&q);
    lpg_sub_release(&s->sub);
    free(s);
    lpg_plain_error(c, why);
}


/* the head and retry written, then the events the stream's last misses */
static void
lpg_sse_start(lpg_sse_t *s, int fd)
{
    int               n;
    char              head[LPG_SSE_HEAD_MAX];
    const lpg_conf_t *conf = lpg_sse.ctx.conf;

    lpg_sse_opened(s, fd);

    /* no length, no chunks: the body ends with the connection */
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\n"
                 "Server: lpgate\r\n"
                 "Content-Type: text/event-stream\r\n"
                 "Cache-Control: no-store\r\n"
                 "X-Accel-Buffering: no\r\n"
                 "Access-Control-Allow-Origin: *\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "retry: %d\n\n",
                 conf->sse_retry);

    if (lpg_sse_send(s, head, (size_t) n, true) != LPG_OK) {
        return;
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "sse stream open: db \"%s\", %zu channel(s), last %lld",
            lpg_sse.ctx.shm->dbs[s->sub.db].name, s->sub.nkeys,
            (long long) s->sub.last);

    if (lpg_bus_stale(s->sub.db, s->sub.last)) {
        /* another node's last, perhaps (a client that moved), that this
         * master has not fetched yet: not stale until a fetch says so */
        lpg_log(LPG_LOG_DEBUG, 0,
                "sse: last %lld is above this node's largest id %lld: "
                "waiting for a fetch",
                (long long) s->sub.last, (long long) lpg_bus_cursor(s->sub.db));
        lpg_ahead_wait(&s->ahead, s->sub.db, lpg_sse_fetched);
        return;
    }

    lpg_sse_begin(s);
}


static void
lpg_sse_fetched(lpg_ahead_t *a)
{
    lpg_sse_t *s = (lpg_sse_t *) ((char *) a - offsetof(lpg_sse_t, ahead));

    if (!s->doomed && !s->closing) {
        lpg_sse_begin(s);
    }
}


/* the events the stream's last misses: the history, or a backfill */
static void
lpg_sse_begin(lpg_sse_t *s)
{
    const lpg_conf_t *conf = lpg_sse.ctx.conf;

    if (lpg_bus_stale(s->sub.db, s->sub.last)) {
        /* above every id of the database: from what the master has
         * published so far (as a poll, lpg_poll.c) */
        s->sub.last = lpg_bus_cursor(s->sub.db);
    }

    if (s->sub.last == 0) {
        /* as a poll's last 0: the notifications of the last timeout s */
        s->sub.since_us =
            (int64_t) time(NULL) * 1000000 - (int64_t) conf->timeout * 1000000;
    }

    if (lpg_sub_needs_fill(&s->sub)) {
        if (lpg_sub_fill(&s->sub, lpg_sse_backfilled) != LPG_OK) {
            lpg_log(LPG_LOG_ERR, ENOMEM, "sse: backfill not queued, closed");
            lpg_sse_doom(s);
        }

        return;
    }

    lpg_sse_replay(s, NULL, 0, 0);
}


static void
lpg_sse_backfilled(lpg_sub_t *sub, const lpg_bus_rec_t *rows, size_t n,
                   int64_t bound, bool ok)
{
    lpg_sse_t *s = (lpg_sse_t *) sub;

    if (s->doomed || s->closing) {
        return;
    }

    if (!ok) {
        /* as a poll: the history's part now, the rows when it reconnects
         * (its last then is still below them) */
        lpg_log(LPG_LOG_INFO, 0,
                "sse: backfill failed, the stream is closed for a retry");
        lpg_sse_finish(s);
        return;
    }

    lpg_sse_replay(s, rows, n, bound);
}


/*
 * rows (id <= bound, from the database), then the history above bound, as
 * one write; then the stream is attached: later records wake it.  A replay
 * larger than max_answer_size stops there and the stream closes once it
 * is written: the client comes back with its Last-Event-ID for the rest.
 */
static void
lpg_sse_replay(lpg_sse_t *s, const lpg_bus_rec_t *rows, size_t n, int64_t bound)
{
    lpg_buf_t       text;
    lpg_sse_batch_t b;

    lpg_sub_drop_if_stale(&s->sub, &n, &bound);

    memset(&text, 0, sizeof(text));
    memset(&b, 0, sizeof(b));
    b.out = &text;
    b.cap = (size_t) lpg_sse.ctx.conf->max_answer_size / 2;

    (void) lpg_sub_rows(&s->sub, rows, n, lpg_sse_event, &b);
    (void) lpg_sub_history(&s->sub, bound, lpg_sse_event, &b);

    if (b.failed) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "sse: replay dropped, stream closed");
        lpg_buf_free(&text);
        lpg_sse_doom(s);
        return;
    }

    if (b.n > 0) {
        s->sub.last = b.max_id;
        s->sub.since_us = 0;
        lpg_sse_counted(s, b.n);

        if (lpg_sse_send(s, text.data, text.len, true) != LPG_OK) {
            lpg_buf_free(&text);
            return;
        }
    }

    lpg_buf_free(&text);

    if (b.capped) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "sse: replay past max_answer_size / 2: closed after it for "
                "a resume");
        lpg_sse_finish(s);
        return;
    }

    if (lpg_sub_attach(&s->sub) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "sse: not attached, stream closed");
        lpg_sse_finish(s);
    }
}


/*
 * The records that woke s, as events.  The streams of one batch woken by
 * the same records (a broadcast) share the text, built once; a socket
 * that takes it at once costs no copy.
 */
static void
lpg_sse_deliver(lpg_sub_t *sub)
{
    lpg_sse_t      *s = (lpg_sse_t *) sub;
    lpg_buf_t      *text;
    lpg_sse_batch_t b;

    if (s->doomed || s->closing) {
        return;
    }

    memset(&b, 0, sizeof(b));

    if (!lpg_sub_matched(sub)) {
        /* more records than the matches keep, or gone from the history:
         * search the history from last */
        lpg_buf_t own;

        memset(&own, 0, sizeof(own));
        b.out = &own;
        (void) lpg_sub_history(sub, 0, lpg_sse_event, &b);
        lpg_sub_rearm(sub);

        if (!b.failed && b.n > 0) {
            sub->last = b.max_id;
            sub->since_us = 0;
            lpg_sse_counted(s, b.n);
            (void) lpg_sse_send(s, own.data, own.len, false);

        } else if (b.failed) {
            lpg_log(LPG_LOG_ERR, ENOMEM, "sse: events dropped, stream closed");
            lpg_sse_doom(s);
        }

        lpg_buf_free(&own);
        return;
    }

    text = sub->last > 0 ? lpg_sub_shared_find(sub, LPG_SSE_SHAPE) : NULL;

    if (text != NULL) {
        (void) lpg_sub_each_match(sub, lpg_sse_max_id, &b);

    } else {
        text = lpg_sub_shared_new();
        b.out = text;
        (void) lpg_sub_each_match(sub, lpg_sse_event, &b);

        if (b.failed) {
            lpg_log(LPG_LOG_ERR, ENOMEM, "sse: events dropped, stream closed");
            lpg_sub_rearm(sub);
            lpg_sse_doom(s);
            return;
        }

        /* every match is above last (lpg_sub), so the text is the same
         * for any stream woken by these records */
        if (sub->last > 0 && b.n == (size_t) sub->nmatches) {
            lpg_sub_shared_keep(sub, LPG_SSE_SHAPE);
        }
    }

    lpg_sub_rearm(sub);

    if (b.n == 0) {
        return;
    }

    sub->last = b.max_id;
    sub->since_us = 0;
    lpg_sse_counted(s, b.n);
    (void) lpg_sse_send(s, text->data, text->len, false);
}


/*
 * The ring lapped the worker: s may have missed records that only the
 * database still has.  It leaves the dispatcher and is filled again from
 * its last, exactly as at its start (rows, then the history above them),
 * then attached again.
 */
static void
lpg_sse_lost(lpg_sub_t *sub)
{
    lpg_sse_t *s = (lpg_sse_t *) sub;

    lpg_sub_detach(sub);
    lpg_sub_rearm(sub);

    if (s->doomed || s->closing || lpg_sub_filling(sub)) {
        return;
    }

    lpg_log(LPG_LOG_INFO, 0,
            "sse: the ring lapped the worker, refilled "
            "from the database");

    if (lpg_sub_fill(sub, lpg_sse_backfilled) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "sse: backfill not queued, closed");
        lpg_sse_doom(s);
    }
}


/* one record as an event; raw CR and LF, only ever JSON whitespace in
 * valid JSON text, become spaces so the data stays on one line */
static void
lpg_sse_event(const lpg_bus_rec_t *r, void *arg)
{
    int              k;
    char             num[48], *p, *e;
    size_t           start;
    lpg_sse_batch_t *b = arg;

    if (b->failed || b->capped) {
        return;
    }

    if (b->cap > 0 && b->out->len >= b->cap) {
        b->capped = true;
        return;
    }

    start = b->out->len;
    k = snprintf(num, sizeof(num), "id: %lld\ndata: ", (long long) r->id);

    if (lpg_buf_append(b->out, num, (size_t) k) != LPG_OK
        || lpg_buf_append(b->out, "{\"channel\": ", 12) != LPG_OK
        || lpg_buf_append(b->out, r->channel, r->channel_len) != LPG_OK
        || lpg_buf_append(b->out, ", \"message\": ", 13) != LPG_OK
        || lpg_buf_append(b->out, r->message, r->message_len) != LPG_OK
        || lpg_buf_append(b->out, "}\n\n", 3) != LPG_OK)
    {
        b->failed = true;
        return;
    }

    /* the data part: after "id: N\ndata: ", before "}\n\n" */
    e = b->out->data + b->out->len - 3;
    for (p = b->out->data + start + k; p < e; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }

    b->n++;
    b->max_id = r->id > b->max_id ? r->id : b->max_id;
}


static void
lpg_sse_max_id(const lpg_bus_rec_t *r, void *arg)
{
    lpg_sse_batch_t *b = arg;

    b->n++;
    b->max_id = r->id > b->max_id ? r->id : b->max_id;
}


/* n records sent: the transport's counter and the latency histogram */
static void
lpg_sse_counted(lpg_sse_t *s, size_t n)
{
    atomic_fetch_add_explicit(&lpg_sse.ctx.stats->sse_delivered, n,
                              memory_order_relaxed);
    lpg_metrics_delivered(lpg_sse.ctx.stats, s->sub.notify_us);
}
