/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_poll.c: the parked HTTP poll, one transport of subscriptions.
 *
 * A poll lives from its request to its answer: its session is asked
 * (lpg_session), its backfill queued when the history cannot answer it,
 * then it is answered at once or parked.  A parked poll is an attached
 * subscription (lpg_sub) and sits in a FIFO list ordered by park time,
 * one list per hold time (the timeout; session_retry for a poll whose
 * session Odoo did not tell): the polls of a list share its hold time,
 * plus a per-poll jitter of at most LPG_POLL_JITTER_MAX, so one ev_timer
 * walks the heads of the lists.  Odoo's
 * request and answer shapes are odoo/lpg_odoo_poll's, the plain GET API's
 * lpg_plain's; this file owns the poll's memory and its connection's
 * answer.
 */

#include "lpg_poll.h"
#include "lpg_metrics.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"
#include "lpg_plain.h"
#include "lpg_presence.h"
#include "lpg_session.h"
#include "lpg_sub.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>


#define LPG_POLL_JITTER_MAX 2000 /* ms */
#define LPG_POLL_LISTS      2    /* deadline lists: timeout, session_retry */


typedef struct lpg_poll_s lpg_poll_t;

struct lpg_poll_s {
    lpg_sub_t          sub; /* first: the sub is the poll */
    lpg_odoo_poll_t    q;   /* the request's id, inactivity, peek */
    lpg_http_conn_t   *conn;
    int64_t            deadline; /* monotonic ms; -1: peek */
    bool               parked;
    bool               plain;    /* GET ?channels=: a bare JSON array */
    bool               degraded; /* Odoo did not say who it is */
    bool               session_wait;
    bool               ahead;       /* on the ahead list (lpg_poll_ahead) */
    bool               ahead_done;  /* waited once: the high is the truth */
    uint64_t           ahead_mark;  /* lpg_bus_fetch_mark when it came */
    int64_t            ahead_since; /* monotonic ms */
    lpg_presence_t    *presence;    /* held while the poll lives */
    lpg_session_wait_t swait;       /* while Odoo is asked who it is */
    int                list;        /* its deadline list, while parked */

    lpg_poll_t *next; /* park-time order */
    lpg_poll_t *prev;
};


/* a deadline list: the polls of one hold time, in park order */
typedef struct {
    lpg_poll_t *head;
    lpg_poll_t *tail;
} lpg_poll_list_t;


static void lpg_poll_start(lpg_poll_t *p);
static void lpg_poll_session(lpg_poll_t *p, const lpg_session_info_t *info);
static void lpg_poll_session_cb(lpg_session_wait_t       *w,
                                const lpg_session_info_t *info);
static void lpg_poll_answer_or_park(lpg_poll_t *p, const lpg_bus_rec_t *rows,
                                    size_t n, int64_t bound);
static void lpg_poll_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                                size_t n, int64_t bound, bool ok);
static void lpg_poll_send(lpg_poll_t *p, const lpg_buf_t *list, bool failed);
static void lpg_poll_answer(lpg_poll_t *p, bool collect);
static void lpg_poll_free(lpg_poll_t *p);
static void lpg_poll_park(lpg_poll_t *p);
static void lpg_poll_gone(void *data);
static void lpg_poll_deliver(lpg_sub_t *s);
static void lpg_poll_lost(lpg_sub_t *s);
static void lpg_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_poll_ahead(lpg_poll_t *p);
static void lpg_poll_ahead_unlink(lpg_poll_t *p);
static void lpg_poll_ahead_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_poll_count(lpg_poll_t *p, bool failed, bool message);


static const lpg_sub_ops_t lpg_poll_ops = {
    "poll",
    lpg_poll_deliver,
    lpg_poll_lost,
};


static struct {
    lpg_http_ctx_t  ctx;
    lpg_poll_list_t lists[LPG_POLL_LISTS];
    size_t          parked;
    ev_timer        timer;
    int64_t         timer_at; /* monotonic ms the timer fires at */
    lpg_poll_list_t ahead;    /* polls waiting for a fetch (lpg_poll_ahead) */
    ev_timer        ahead_timer;
} lpg_poll;


int
lpg_poll_init(const lpg_http_ctx_t *ctx)
{
    lpg_poll.ctx = *ctx;

    ev_init(&lpg_poll.timer, lpg_poll_timer_cb);
    ev_init(&lpg_poll.ahead_timer, lpg_poll_ahead_cb);

    lpg_odoo_db_init(ctx->conf, ctx->shm);
    lpg_odoo_poll_init(ctx);

    if (lpg_session_init(ctx->loop, ctx->conf, ctx->shm, ctx->stats) != LPG_OK
        || lpg_presence_init(ctx->loop, ctx->conf, ctx->shm, ctx->stats)
            != LPG_OK)
    {
        return LPG_ERROR;
    }

    return LPG_OK;
}


size_t
lpg_poll_parked(void)
{
    return lpg_poll.parked;
}


void
lpg_poll_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int         rc;
    const char *why;
    lpg_poll_t *p;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    p->conn = c;
    p->sub.ops = &lpg_poll_ops;

    if (r->method == HTTP_GET) {
        /* the plain API: the query string becomes the JSON-RPC params */
        size_t n;

        p->plain = true;

        if (lpg_plain_parse(r, &p->q, &p->sub, &n, &why) != LPG_OK) {
            lpg_plain_error(c, why);
            lpg_poll_free(p);
            return;
        }

        rc = LPG_OK;

    } else {
        p->sub.db = lpg_odoo_pick_db(r);
        p->sub.version = lpg_odoo_version(p->sub.db);
        rc = lpg_odoo_poll_parse(&p->q, &p->sub, r->body, r->body_len, &why);
    }

    if (p->q.peek) {
        p->deadline = -1;
    }

    if (rc != LPG_OK) {
        lpg_odoo_rpc_error(c, p->sub.version, p->q.id ? p->q.id : "null",
                           p->sub.version >= 11 ? "builtins.Exception"
                                                : "exceptions.Exception",
                           why);
        lpg_poll_free(p);
        return;
    }

    if (p->sub.db < 0) {
        lpg_odoo_rpc_error(c, p->sub.version, p->q.id ? p->q.id : "null",
                           "werkzeug.exceptions.NotFound",
                           "404: Not Found (no such database: pass ?db=)");
        lpg_poll_free(p);
        return;
    }

    /* who the session is, in Odoo's words: its channels join the poll's */
    const lpg_session_info_t *info;

    switch (lpg_session_get_for(r, p->sub.db, p->sub.version,
                                (const char *const *) p->q.strings,
                                p->q.nstrings, &p->swait, &info))
    {
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
    if (!info->known) {
        /* public for now, and asked again soon (session_retry) */
        p->degraded = true;
        return;
    }

    if (info->db < 0
        || (info->db != p->sub.db
            && lpg_odoo_switch_db(&p->sub, info->db) != LPG_OK))
    {
        return;
    }

    if (lpg_odoo_session_keys(&p->sub, info) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0,
                "poll: out of memory adding the session's channels");
    }

    if (p->q.inactivity >= 0) {
        /* 15's guests count only when nobody is logged in, as in Odoo */
        p->presence = lpg_presence_hold(p->sub.db, info->uid,
                                        info->uid > 0 ? 0 : info->guest_id,
                                        p->q.inactivity);
    }
}


/* the poll's channels are complete: answer from the database, the
 * history, or park */
static void
lpg_poll_start(lpg_poll_t *p)
{
    if (!p->ahead_done && lpg_bus_stale(p->sub.db, p->sub.last)) {
        /* another node's last, perhaps, that this master has not fetched
         * yet: not stale until a fetch begun now says so */
        lpg_poll_ahead(p);
        return;
    }

    if (lpg_bus_stale(p->sub.db, p->sub.last)) {
        /* above every id of the database (a reset, or a client that kept
         * an old last): served from what the master has published so far,
         * so it gets every later row.  Not as last = 0 (Odoo 16+): an 8-15
         * client keeps max(last, ids), would come back with the same last
         * and get the same rows again, in a loop, for timeout seconds */
        p->sub.last = lpg_bus_cursor(p->sub.db);
    }

    if (p->sub.last == 0) {
        /* Odoo: the notifications of the last timeout seconds */
        p->sub.since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_poll.ctx.conf->timeout * 1000000;
    }

    if (lpg_sub_needs_fill(&p->sub)) {
        /* older than the history: one query, shared with this loop
         * iteration's other backfills */
        if (lpg_sub_fill(&p->sub, lpg_poll_backfilled) != LPG_OK) {
            lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n",
                             5);
            lpg_poll_free(p);
            return;
        }

        lpg_http_hold(p->conn, lpg_poll_gone, p);
        return;
    }

    lpg_poll_answer_or_park(p, NULL, 0, 0);
}


/*
 * A poll whose last is above this master's high: nodes share the
 * database, so the client may have had that id from another node whose
 * master fetched first.  Served from the cursor now, it would get the
 * rows between the two cursors twice.  It waits (off the parked lists)
 * until a fetch begun after it came is published, the master woken at
 * once, at most LPG_POLL_AHEAD_MAX; then lpg_poll_start again, which
 * then treats a last still above high as stale (a reset).
 */
#define LPG_POLL_AHEAD_MAX  2000 /* ms */
#define LPG_POLL_AHEAD_TICK 0.005

static void
lpg_poll_ahead(lpg_poll_t *p)
{
    lpg_poll_list_t *l = &lpg_poll.ahead;

    lpg_log(LPG_LOG_DEBUG, 0,
            "poll: last %lld is above this node's largest id %lld: waiting "
            "for a fetch",
            (long long) p->sub.last, (long long) lpg_bus_cursor(p->sub.db));

    p->ahead = true;
    p->ahead_done = true;
    p->ahead_mark = lpg_bus_fetch_mark(p->sub.db);
    p->ahead_since = lpg_time_mono_ms();

    p->prev = l->tail;
    p->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = p;

    } else {
        l->head = p;
    }

    l->tail = p;

    lpg_http_kick();
    lpg_http_hold(p->conn, lpg_poll_gone, p);

    if (!ev_is_active(&lpg_poll.ahead_timer)) {
        ev_timer_set(&lpg_poll.ahead_timer, LPG_POLL_AHEAD_TICK,
                     LPG_POLL_AHEAD_TICK);
        ev_timer_start(lpg_poll.ctx.loop, &lpg_poll.ahead_timer);
    }
}


static void
lpg_poll_ahead_unlink(lpg_poll_t *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;

    } else {
        lpg_poll.ahead.head = p->next;
    }

    if (p->next != NULL) {
        p->next->prev = p->prev;

    } else {
        lpg_poll.ahead.tail = p->prev;
    }

    p->next = p->prev = NULL;
    p->ahead = false;

    if (lpg_poll.ahead.head == NULL) {
        ev_timer_stop(lpg_poll.ctx.loop, &lpg_poll.ahead_timer);
    }
}


static void
lpg_poll_ahead_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t     now = lpg_time_mono_ms();
    lpg_poll_t *p, *next;

    for (p = lpg_poll.ahead.head; p != NULL; p = next) {
        next = p->next;

        if (!lpg_bus_fetched_since(p->sub.db, p->ahead_mark)
            && now - p->ahead_since < LPG_POLL_AHEAD_MAX)
        {
            continue;
        }

        lpg_poll_ahead_unlink(p);
        lpg_poll_start(p);
    }
}


static void
lpg_poll_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                    int64_t bound, bool ok)
{
    lpg_poll_t *p = (lpg_poll_t *) s;

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
    lpg_buf_t       list;
    lpg_odoo_list_t l;

    lpg_sub_drop_if_stale(&p->sub, &n, &bound);

    memset(&list, 0, sizeof(list));
    lpg_odoo_list_init(&l, &list, p->sub.version);

    (void) lpg_sub_rows(&p->sub, rows, n, lpg_odoo_list_add, &l);

    /* the history part continues the same list */
    (void) lpg_sub_history(&p->sub, bound, lpg_odoo_list_add, &l);

    if (l.n > 0 || p->deadline == -1 || l.failed) {
        lpg_poll_send(p, &list, l.failed);
        lpg_buf_free(&list);
        return;
    }

    lpg_buf_free(&list);
    lpg_poll_park(p);
}


static void
lpg_poll_park(lpg_poll_t *p)
{
    int64_t     now, hold, jitter;
    const char *db = lpg_poll.ctx.shm->dbs[p->sub.db].name;

    if (lpg_sub_attach(&p->sub) != LPG_OK) {
        lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        lpg_poll_free(p);
        return;
    }

    now = lpg_time_mono_ms();
    hold = (int64_t) lpg_poll.ctx.conf->timeout * 1000;
    jitter = LPG_POLL_JITTER_MAX;
    p->list = 0;

    if (p->degraded
        && lpg_poll.ctx.conf->session_retry < lpg_poll.ctx.conf->timeout)
    {
        /* Odoo did not say who this is: answered [] after session_retry so
         * the client asks again (its private messages wait in bus_bus);
         * the list of that hold time keeps the timeout list in park order */
        hold = (int64_t) lpg_poll.ctx.conf->session_retry * 1000;
        jitter = hold / 4 < jitter ? hold / 4 : jitter;
        p->list = 1;
    }

    p->deadline = now + hold + random() % (jitter + 1);

    p->prev = lpg_poll.lists[p->list].tail;
    p->next = NULL;
    if (lpg_poll.lists[p->list].tail != NULL) {
        lpg_poll.lists[p->list].tail->next = p;

    } else {
        lpg_poll.lists[p->list].head = p;
    }

    lpg_poll.lists[p->list].tail = p;
    lpg_poll.parked++;
    atomic_store_explicit(&lpg_poll.ctx.stats->parked, lpg_poll.parked,
                          memory_order_relaxed);
    p->parked = true;

    lpg_http_hold(p->conn, lpg_poll_gone, p);

    lpg_log(LPG_LOG_DEBUG, 0,
            "poll parked: db \"%s\", %zu channel(s), last %lld, held %lld ms "
            "(list %d)",
            db, p->sub.nkeys, (long long) p->sub.last, (long long) hold,
            p->list);

    if (!ev_is_active(&lpg_poll.timer) || p->deadline < lpg_poll.timer_at) {
        /* (the first parked, or the first of a shorter list) */
        ev_timer_stop(lpg_poll.ctx.loop, &lpg_poll.timer);
        ev_timer_set(&lpg_poll.timer,
                     (double) (p->deadline - now) / 1000. + 0.001, 0.);
        ev_timer_start(lpg_poll.ctx.loop, &lpg_poll.timer);
        lpg_poll.timer_at = p->deadline;
    }
}


/* answers p, with what the history holds for it when collect, and frees
 * it */
static void
lpg_poll_answer(lpg_poll_t *p, bool collect)
{
    lpg_buf_t       list;
    lpg_odoo_list_t l;

    memset(&list, 0, sizeof(list));
    lpg_odoo_list_init(&l, &list, p->sub.version);

    if (collect) {
        (void) lpg_sub_history(&p->sub, 0, lpg_odoo_list_add, &l);
    }

    lpg_poll_send(p, &list, l.failed);
    lpg_buf_free(&list);
}


/* wraps list (the result entries; the caller keeps and frees it) in the
 * answer's shape, answers and frees p */
static void
lpg_poll_send(lpg_poll_t *p, const lpg_buf_t *list, bool failed)
{
    int          n;
    bool         peek = p->deadline == -1;
    const char  *id = p->q.id ? p->q.id : "null";
    const char  *cors = lpg_odoo_cors(p->sub.version);
    lpg_buf_t    out;
    struct iovec iov[5];

    if (!failed && !p->plain && !peek) {
        n = lpg_odoo_poll_iov(iov, id, list);

        lpg_poll_count(p, false, list->len > 0);
        lpg_http_respond_iov(p->conn, 200, "application/json", cors, iov, n);
        lpg_poll_free(p);
        return;
    }

    memset(&out, 0, sizeof(out));

    if (p->plain ? lpg_plain_body(&out, list) != LPG_OK
                 : lpg_odoo_poll_body(&out, id, peek, &p->sub, list) != LPG_OK)
    {
        failed = true;
    }

    lpg_poll_count(p, failed, list->len > 0);

    if (failed) {
        lpg_http_respond(p->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);

    } else {
        lpg_http_respond(p->conn, 200, "application/json", cors, out.data,
                         out.len);
    }

    lpg_buf_free(&out);
    lpg_poll_free(p);
}


static void
lpg_poll_free(lpg_poll_t *p)
{
    lpg_sub_release(&p->sub);

    if (p->ahead) {
        lpg_poll_ahead_unlink(p);
    }

    if (p->parked) {
        /* unlink from the timeout list */
        if (p->prev != NULL) {
            p->prev->next = p->next;

        } else if (lpg_poll.lists[p->list].head == p) {
            lpg_poll.lists[p->list].head = p->next;
        }

        if (p->next != NULL) {
            p->next->prev = p->prev;

        } else if (lpg_poll.lists[p->list].tail == p) {
            lpg_poll.lists[p->list].tail = p->prev;
        }

        lpg_poll.parked--;
        atomic_store_explicit(&lpg_poll.ctx.stats->parked, lpg_poll.parked,
                              memory_order_relaxed);
    }

    lpg_presence_release(p->presence);

    lpg_odoo_poll_free(&p->q);
    free(p);
}


/* the client went away while parked: free at once */
static void
lpg_poll_gone(void *data)
{
    lpg_poll_t *p = data;

    if (p->session_wait) {
        lpg_session_cancel(&p->swait);
    }

    lpg_log(LPG_LOG_DEBUG, 0, "poll freed: client closed the connection");

    if (p->sub.ready) {
        /* it is on the ready list: freed there, unanswered */
        p->conn = NULL;
        return;
    }

    /* lpg_sub_release() cancels a queued backfill */
    lpg_poll_free(p);
}


/*
 * Answers p from the records that woke it, or by searching the history.
 * The polls of one batch woken by the same records (a broadcast) share
 * the result list, built once.
 */
static void
lpg_poll_deliver(lpg_sub_t *s)
{
    lpg_poll_t     *p = (lpg_poll_t *) s;
    lpg_buf_t      *list;
    lpg_odoo_list_t l;

    if (p->conn == NULL) {
        lpg_poll_free(p);
        return;
    }

    if (!lpg_sub_matched(s)) {
        lpg_poll_answer(p, true);
        return;
    }

    if (s->last > 0) {
        list = lpg_sub_shared_find(s, s->version);
        if (list != NULL) {
            lpg_poll_send(p, list, false);
            return;
        }
    }

    list = lpg_sub_shared_new();
    lpg_odoo_list_init(&l, list, s->version);

    (void) lpg_sub_each_match(s, lpg_odoo_list_add, &l);

    /* every matched record is above last and fits the size cap (matches
     * are few), so the list is the same for any poll woken by these
     * records */
    if (!l.failed && s->last > 0 && l.n == (size_t) s->nmatches) {
        lpg_sub_shared_keep(s, s->version);
    }

    lpg_poll_send(p, list, l.failed);
}


/*
 * The ring lapped us: p may have missed records.  It gets [] now and
 * re-polls with its last, which the history no longer covers, so the
 * answer comes from the database.
 */
static void
lpg_poll_lost(lpg_sub_t *s)
{
    lpg_poll_t *p = (lpg_poll_t *) s;

    if (p->conn == NULL) {
        lpg_poll_free(p);
        return;
    }

    lpg_poll_answer(p, false);
}


static void
lpg_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int         i;
    int64_t     now, horizon, h;
    lpg_poll_t *p, *next;

    now = lpg_time_mono_ms();
    horizon = INT64_MAX;

    for (i = 0; i < LPG_POLL_LISTS; i++) {
        /* polls parked in the same jitter window may be due out of order */
        for (p = lpg_poll.lists[i].head; p != NULL; p = next) {
            next = p->next;

            if (p->deadline - LPG_POLL_JITTER_MAX > now) {
                break;
            }

            if (p->deadline <= now && !p->sub.ready) {
                lpg_poll_answer(p, false);
            }
        }

        if (lpg_poll.lists[i].head != NULL) {
            /* the head is not always the first due: jitter reorders */
            h = lpg_poll.lists[i].head->deadline - LPG_POLL_JITTER_MAX - now;
            horizon = h < horizon ? h : horizon;
        }
    }

    if (horizon != INT64_MAX) {
        if (horizon < 50) {
            horizon = 50;
        }

        ev_timer_set(w, (double) horizon / 1000., 0.);
        ev_timer_start(loop, w);
        lpg_poll.timer_at = now + horizon;
    }
}


void
lpg_poll_shutdown(void)
{
    int i;

    while (lpg_poll.ahead.head != NULL) {
        lpg_poll_answer(lpg_poll.ahead.head, false);
    }

    for (i = 0; i < LPG_POLL_LISTS; i++) {
        while (lpg_poll.lists[i].head != NULL) {
            if (lpg_poll.lists[i].head->sub.ready) {
                lpg_sub_flush();
                continue;
            }

            lpg_poll_answer(lpg_poll.lists[i].head, false);
        }
    }
}


/* the answer counters and, for a poll a record woke, the latency from the
 * master's NOTIFY receipt to now (the reply is written at once) */
static void
lpg_poll_count(lpg_poll_t *p, bool failed, bool message)
{
    lpg_shm_worker_t *st = lpg_poll.ctx.stats;

    if (failed) {
        atomic_fetch_add_explicit(&st->answered_refused, 1,
                                  memory_order_relaxed);
        return;
    }

    atomic_fetch_add_explicit(message ? &st->answered_message
                                      : &st->answered_timeout,
                              1, memory_order_relaxed);

    if (message) {
        lpg_metrics_delivered(st, p->sub.notify_us);
    }
}
