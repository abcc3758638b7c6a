/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket.c: GET /websocket up to the socket, and Odoo's events on
 * it.
 *
 * The upgrade is checked (lpg_ws_handshake: 400, 426, 405, 505 as Odoo
 * answers them), the session of its cookies asked like a poll's (the
 * request is held meanwhile; with websocket_same_origin a cross-site
 * Origin is public and its cookie never read), then the socket leaves the
 * HTTP layer with a 101 (lpg_websocket_life.c runs it from there).  A
 * `subscribe` re-keys the socket's subscription (the client's strings plus
 * the session's channels), replays what it asks for from the history or a
 * backfill query, and attaches it: every later batch of records it wants
 * goes out as one TEXT frame, framed once for all the sockets woken by
 * the same records.  `update_presence` holds the socket's presence entry
 * (the batched bus_presence writes of polls).  The session is asked again
 * every session_ttl; a user or guest Odoo stops vouching for is closed
 * with 4001.
 */

#include "lpg_websocket_int.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"
#include "lpg_odoo_ws.h"
#include "lpg_imstatus.h"
#include "lpg_metrics.h"
#include "lpg_ws_handshake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>


/* a batch of records going out as frames: at most half of
 * max_answer_size per frame, so lpg_odoo_list_add never drops one */
typedef struct {
    lpg_wsc_t      *w;
    lpg_buf_t       list;
    lpg_odoo_list_t l;
    size_t          sent;   /* records framed */
    int64_t         max_id; /* of the records added */
    bool            failed;
} lpg_wsc_batch_t;


static void lpg_wsc_gone(void *data);
static void lpg_wsc_session_cb(lpg_session_wait_t       *sw,
                               const lpg_session_info_t *info);
static void lpg_wsc_recheck_cb(lpg_session_wait_t       *sw,
                               const lpg_session_info_t *info);
static void lpg_wsc_upgrade(lpg_wsc_t *w);
static void lpg_wsc_subscribe(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev);
static void lpg_wsc_free_skeys(lpg_wsc_t *w);
static void lpg_wsc_presence(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev);
static void lpg_wsc_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                               size_t n, int64_t bound, bool ok);
static void lpg_wsc_replay(lpg_wsc_t *w, const lpg_bus_rec_t *rows, size_t n,
                           int64_t bound);
static void lpg_wsc_deliver(lpg_sub_t *s);
static void lpg_wsc_lost(lpg_sub_t *s);
static void lpg_wsc_batch_add(const lpg_bus_rec_t *r, void *arg);
static void lpg_wsc_batch_flush(lpg_wsc_batch_t *b);
static void lpg_wsc_max_id(const lpg_bus_rec_t *r, void *arg);


static const lpg_sub_ops_t lpg_wsc_ops = {
    "websocket",
    lpg_wsc_deliver,
    lpg_wsc_lost,
};


int
lpg_websocket_init(const lpg_http_ctx_t *ctx)
{
    lpg_wsc.ctx = *ctx;
    lpg_wsc_life_init();

    return LPG_OK;
}


void
lpg_websocket_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int rc;
    bool public = false;
    lpg_wsc_t                *w;
    lpg_ws_upgrade_t          u;
    lpg_ws_answer_t           ans;
    const lpg_conf_t         *conf = lpg_wsc.ctx.conf;
    const lpg_session_info_t *info;

    memset(&u, 0, sizeof(u));
    u.get = r->method == 1; /* HTTP_GET */
    u.http_major = r->http_major;
    u.http_minor = r->http_minor;
    u.host = r->host;
    u.host_len = r->host_len;
    u.origin = r->origin;
    u.origin_len = r->origin_len;
    u.upgrade = r->upgrade;
    u.upgrade_len = r->upgrade_len;
    u.connection = r->connection;
    u.connection_len = r->connection_len;
    u.key = r->ws_key;
    u.key_len = r->ws_key_len;
    u.version = r->ws_version;
    u.version_len = r->ws_version_len;

    if (lpg_ws_handshake(&u, &ans) != LPG_OK) {
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: handshake refused (%d): %s",
                ans.status, ans.body);
        lpg_http_respond(c, ans.status, NULL, ans.headers, ans.body,
                         ans.body_len);
        return;
    }

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    w->fd = -1;
    w->conn = c;
    w->sub.ops = &lpg_wsc_ops;
    w->sub.db = lpg_odoo_pick_db(r);
    w->sub.version = lpg_odoo_version(w->sub.db);
    memcpy(w->accept, ans.accept, sizeof(ans.accept));
    for (rc = 0; rc < LPG_WSC_SLOTS; rc++) {
        w->link[rc].list = -1;
    }

    if (w->sub.db < 0) {
        free(w);
        lpg_http_respond(c, 404, NULL, NULL,
                         "404 Not Found (no such database: pass ?db=)\n", 44);
        return;
    }

    if (conf->websocket_same_origin) {
        /* Odoo's ODOO_BUS_PUBLIC_SAMESITE_WS: the request's own scheme
         * and host, as a trusted proxy forwarded them */
        const char *host = r->fwd_host ? r->fwd_host : r->host;
        size_t      host_len = r->fwd_host ? r->fwd_host_len : r->host_len;
        bool        https = r->fwd_proto != NULL && r->fwd_proto_len == 5
            && strncasecmp(r->fwd_proto, "https", 5) == 0;

        if (!lpg_odoo_ws_same_origin(r->origin, r->origin_len, host, host_len,
                                     https)) {
            lpg_log(LPG_LOG_DEBUG, 0,
                    "websocket: Origin \"%.*s\" is not the request's: "
                    "served as public",
                    (int) r->origin_len, r->origin);
            public = true;
        }
    }

    if (!public && r->cookie != NULL) {
        /* kept to ask Odoo again every session_ttl */
        w->cookie = strndup(r->cookie, r->cookie_len);
        w->cookie_len = r->cookie_len;
        if (r->host != NULL) {
            w->host = strndup(r->host, r->host_len);
            w->host_len = r->host_len;
        }

        if (w->cookie == NULL || (r->host != NULL && w->host == NULL)) {
            lpg_log(LPG_LOG_ERR, errno, "strndup() failed");
            lpg_wsc_forget(w);
            free(w);
            lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
            return;
        }

        switch (lpg_session_get(r, w->sub.db, w->sub.version, &w->swait, &info))
        {
        case LPG_OK:
            lpg_wsc_session(w, info);
            break;

        case LPG_AGAIN:
            /* the 101 waits for Odoo's answer */
            w->swait.cb = lpg_wsc_session_cb;
            w->session_wait = true;
            lpg_http_hold(c, lpg_wsc_gone, w);
            return;

        default:
            break;
        }
    }

    lpg_wsc_upgrade(w);
}


/* the client went away while its session was asked */
static void
lpg_wsc_gone(void *data)
{
    lpg_wsc_t *w = data;

    w->conn = NULL;
    lpg_wsc_forget(w);
    free(w);
}


static void
lpg_wsc_session_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_wsc_t *w = (lpg_wsc_t *) ((char *) sw - offsetof(lpg_wsc_t, swait));

    w->session_wait = false;
    lpg_wsc_session(w, info);
    lpg_wsc_upgrade(w);
}


/* what Odoo said of the socket's session: its user and channels */
void
lpg_wsc_session(lpg_wsc_t *w, const lpg_session_info_t *info)
{
    size_t i;

    if (!info->known || info->db < 0) {
        /* Odoo did not answer, or not ours: public until the re-check */
        return;
    }

    if (info->db != w->sub.db && !w->subscribed) {
        w->sub.db = info->db;
        w->sub.version = lpg_odoo_version(info->db);
    }

    w->uid = info->uid;
    w->guest_id = info->guest_id;
    w->logged = info->uid > 0 || info->guest_id > 0;

    lpg_wsc_free_skeys(w);

    if (info->nkeys == 0) {
        return;
    }

    w->skeys = calloc(info->nkeys, sizeof(*w->skeys));
    w->skey_lens = calloc(info->nkeys, sizeof(*w->skey_lens));
    if (w->skeys == NULL || w->skey_lens == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        return;
    }

    for (i = 0; i < info->nkeys; i++) {
        w->skeys[i] = strndup(info->keys[i], info->key_lens[i]);
        if (w->skeys[i] == NULL) {
            lpg_log(LPG_LOG_ERR, errno, "strndup() failed");
            return;
        }

        w->skey_lens[i] = info->key_lens[i];
        w->nskeys = i + 1;
    }
}


/* the 101: the socket leaves the HTTP layer */
static void
lpg_wsc_upgrade(lpg_wsc_t *w)
{
    int    fd;
    char  *rest;
    size_t rest_len;

    fd = lpg_http_detach(w->conn, &rest, &rest_len);
    w->conn = NULL;

    if (fd == -1) {
        lpg_wsc_forget(w);
        free(w);
        return;
    }

    if (lpg_wsc_start(w, fd, rest, rest_len) != LPG_OK) {
        close(fd);
        lpg_http_detached_closed();
        lpg_wsc_forget(w);
        free(w);
    }

    free(rest);
}


/* every session_ttl: Odoo is asked again (cached answers are free) */
void
lpg_wsc_recheck(lpg_wsc_t *w)
{
    int                       rc;
    size_t                    n;
    const char              **v;
    lpg_http_request_t        r;
    const lpg_session_info_t *info;

    if (w->cookie == NULL || w->session_wait || w->closing) {
        return;
    }

    lpg_wsc_session_request(w, &r);

    /* with the last subscribe's strings: the same cached answer */
    v = lpg_wsc_strings(w->strings, &n);
    rc = lpg_session_get_for(&r, w->sub.db, w->sub.version, v, n, &w->swait,
                             &info);
    free(v);

    switch (rc) {
    case LPG_OK:
        lpg_wsc_recheck_cb(&w->swait, info);
        break;

    case LPG_AGAIN:
        w->swait.cb = lpg_wsc_recheck_cb;
        w->session_wait = true;
        break;

    default:
        break;
    }
}


static void
lpg_wsc_recheck_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_wsc_t *w = (lpg_wsc_t *) ((char *) sw - offsetof(lpg_wsc_t, swait));

    w->session_wait = false;

    if (!info->known) {
        /* Odoo is not answering: nothing changes */
        return;
    }

    if (w->logged
        && (info->db < 0 || info->uid != w->uid
            || (w->uid == 0 && info->guest_id != w->guest_id)))
    {
        lpg_log(LPG_LOG_INFO, 0,
                "websocket: Odoo no longer vouches for the session of "
                "user %lld: closed with 4001",
                (long long) w->uid);
        lpg_wsc_close(w, LPG_WS_SESSION_EXPIRED);
        return;
    }

    /* TODO: a changed channel list is used from the next subscribe on
     * (the web client re-subscribes when its channels change) */
    lpg_wsc_session(w, info);
}


/* a complete message of the client (inside lpg_ws_feed: no free here) */
void
lpg_wsc_message(void *data, const uint8_t *msg, size_t len, bool binary)
{
    const char         *why;
    lpg_wsc_t          *w = data;
    lpg_odoo_ws_event_t ev;

    atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_in, 1,
                              memory_order_relaxed);

    if (w->closing) {
        return;
    }

    if (lpg_odoo_ws_parse(msg, len, &ev, &why) != LPG_OK) {
        /* Odoo logs it and keeps the socket */
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: message ignored: %s", why);
        return;
    }

    switch (ev.event) {
    case LPG_ODOO_WS_SUBSCRIBE:
        lpg_wsc_subscribe(w, &ev);
        break;

    case LPG_ODOO_WS_PRESENCE:
        lpg_wsc_presence(w, &ev);
        break;

    default:
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: unknown event ignored");
        break;
    }

    lpg_odoo_ws_event_free(&ev);
}


/* Odoo's _subscribe; 17+'s selector strings ask Odoo first */
static void
lpg_wsc_subscribe(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev)
{
    if (lpg_wsc_select(w, ev) == LPG_OK) {
        lpg_wsc_subscribe_now(w, ev);
    }
}


/* the channel set is replaced, then a replay */
void
lpg_wsc_subscribe_now(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev)
{
    size_t      i;
    int64_t     last;
    lpg_buf_t   b;
    lpg_sub_t  *s = &w->sub;
    const char *db = lpg_wsc.ctx.shm->dbs[s->db].name;

    /* Odoo 16+: a last above the largest bus_bus id is reset to 0; the
     * largest id is the one the master read from the database's id
     * sequence (lpg_bus_stale), so a row committed but not fetched yet
     * does not reset a client's last */
    last = ev->last;
    if (lpg_bus_stale(s->db, last)) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "websocket: last %lld is above the largest id %lld: 0",
                (long long) last, (long long) lpg_bus_cursor(s->db));
        last = 0;
    }

    /* dispatch.subscribe: _last_notif_sent_id = max(own, last) */
    if (w->subscribed && s->last > last) {
        last = s->last;
    }

    lpg_sub_release(s);

    if (lpg_odoo_ws_keys(s, db, ev->channels) != LPG_OK) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "websocket: subscribe ignored: a channel is too long");
        w->subscribed = false;
        return;
    }

    for (i = 0; i < w->nskeys; i++) {
        memset(&b, 0, sizeof(b));

        if (lpg_buf_append(&b, w->skeys[i], w->skey_lens[i]) != LPG_OK
            || lpg_sub_add_key(s, &b) != LPG_OK)
        {
            lpg_log(LPG_LOG_ERR, 0,
                    "websocket: out of memory adding the session's channels");
            break;
        }
    }

    w->subscribed = true;
    s->last = last;
    s->since_us = 0;
    lpg_sub_rearm(s);

    if (last == 0) {
        /* Odoo's _poll: the notifications of the last TIMEOUT seconds */
        s->since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_wsc.ctx.conf->timeout * 1000000;
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "websocket subscribed: db \"%s\", %zu channel(s), last %lld", db,
            s->nkeys, (long long) last);

    if (lpg_sub_needs_fill(s)) {
        if (lpg_sub_fill(s, lpg_wsc_backfilled) != LPG_OK) {
            lpg_wsc_close(w, LPG_WS_TRY_LATER);
        }

        return;
    }

    lpg_wsc_replay(w, NULL, 0, 0);
}


static void
lpg_wsc_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                   int64_t bound, bool ok)
{
    lpg_wsc_t *w = (lpg_wsc_t *) s;

    if (!ok) {
        lpg_log(LPG_LOG_INFO, 0,
                "websocket: backfill failed, replaying from the history only");
        n = 0;
        bound = 0;
    }

    lpg_wsc_replay(w, rows, n, bound);
    lpg_wsc_flush(w);
}


/* rows (id <= bound) then the history above bound go out now; then the
 * socket is attached: the ring's next records wake it */
static void
lpg_wsc_replay(lpg_wsc_t *w, const lpg_bus_rec_t *rows, size_t n, int64_t bound)
{
    lpg_wsc_batch_t b;

    if (w->closing) {
        return;
    }

    memset(&b, 0, sizeof(b));
    b.w = w;
    lpg_odoo_list_init(&b.l, &b.list, 16);

    (void) lpg_sub_rows(&w->sub, rows, n, lpg_wsc_batch_add, &b);
    (void) lpg_sub_history(&w->sub, bound, lpg_wsc_batch_add, &b);
    lpg_wsc_batch_flush(&b);
    lpg_buf_free(&b.list);

    if (b.failed) {
        lpg_wsc_close(w, LPG_WS_SERVER_ERROR);
        return;
    }

    if (lpg_sub_attach(&w->sub) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "websocket: could not subscribe (no memory)");
        lpg_wsc_close(w, LPG_WS_TRY_LATER);
    }
}


static void
lpg_wsc_batch_add(const lpg_bus_rec_t *r, void *arg)
{
    size_t           before;
    lpg_wsc_batch_t *b = arg;

    if (b->list.len >= (size_t) lpg_wsc.ctx.conf->max_answer_size / 2) {
        lpg_wsc_batch_flush(b);
    }

    before = b->l.n;
    lpg_odoo_list_add(r, &b->l);

    if (b->l.n > before && r->id > b->max_id) {
        b->max_id = r->id;
    }

    if (b->l.failed) {
        b->failed = true;
    }
}


/* the records added so far as one frame; last moves past them */
static void
lpg_wsc_batch_flush(lpg_wsc_batch_t *b)
{
    lpg_buf_t frame;

    if (b->l.n == 0 || b->failed) {
        return;
    }

    memset(&frame, 0, sizeof(frame));

    if (lpg_odoo_ws_frame(&frame, &b->list) != LPG_OK) {
        b->failed = true;

    } else {
        (void) lpg_wsc_send(b->w, (const uint8_t *) frame.data, frame.len);
    }

    lpg_buf_free(&frame);

    b->sent += b->l.n;
    b->list.len = 0;
    b->l.n = 0;

    if (b->max_id > b->w->sub.last) {
        b->w->sub.last = b->max_id;
    }
}


static void
lpg_wsc_max_id(const lpg_bus_rec_t *r, void *arg)
{
    int64_t *max = arg;

    if (r->id > *max) {
        *max = r->id;
    }
}


/*
 * Records woke w: the ones it wants go out as one frame.  The sockets of
 * one batch woken by the same records (a broadcast, a busy channel) share
 * the frame, built once: server frames are not masked, the bytes are the
 * same for all.
 */
static void
lpg_wsc_deliver(lpg_sub_t *s)
{
    int64_t         max, before;
    lpg_buf_t      *shared;
    lpg_wsc_t      *w = (lpg_wsc_t *) s;
    lpg_wsc_batch_t b;

    if (w->dead) {
        lpg_wsc_free(w);
        return;
    }

    if (w->closing || w->fd == -1) {
        lpg_sub_rearm(s);
        return;
    }

    before = s->last;

    if (lpg_sub_matched(s) && s->last > 0) {
        shared = lpg_sub_shared_find(s, LPG_ODOO_WS_SHAPE(s->version));

        if (shared == NULL) {
            memset(&b, 0, sizeof(b));
            b.w = w;
            lpg_odoo_list_init(&b.l, &b.list, 16);
            (void) lpg_sub_each_match(s, lpg_wsc_batch_add, &b);

            if (!b.failed && b.l.n == (size_t) s->nmatches) {
                shared = lpg_sub_shared_new();

                if (lpg_odoo_ws_frame(shared, &b.list) == LPG_OK) {
                    lpg_sub_shared_keep(s, LPG_ODOO_WS_SHAPE(s->version));

                } else {
                    shared = NULL;
                }
            }

            if (shared == NULL) {
                lpg_wsc_batch_flush(&b);
            }

            lpg_buf_free(&b.list);
        }

        if (shared != NULL) {
            max = s->last;
            (void) lpg_sub_each_match(s, lpg_wsc_max_id, &max);
            (void) lpg_wsc_send(w, (const uint8_t *) shared->data, shared->len);
            s->last = max;
        }

    } else {
        memset(&b, 0, sizeof(b));
        b.w = w;
        lpg_odoo_list_init(&b.l, &b.list, 16);
        (void) lpg_sub_history(s, 0, lpg_wsc_batch_add, &b);
        lpg_wsc_batch_flush(&b);
        lpg_buf_free(&b.list);
    }

    if (s->last > before) {
        /* the same latency histogram as polls */
        lpg_metrics_delivered(lpg_wsc.ctx.stats, s->notify_us);
    }

    lpg_sub_rearm(s);
    lpg_wsc_flush(w);
}


/* the ring lapped the worker: what w may have missed comes from the
 * database, then it is attached again */
static void
lpg_wsc_lost(lpg_sub_t *s)
{
    lpg_wsc_t *w = (lpg_wsc_t *) s;

    if (w->dead) {
        lpg_wsc_free(w);
        return;
    }

    lpg_sub_detach(s);
    lpg_sub_rearm(s);

    if (w->closing) {
        return;
    }

    if (lpg_sub_fill(s, lpg_wsc_backfilled) != LPG_OK) {
        lpg_wsc_close(w, LPG_WS_TRY_LATER);
        lpg_wsc_flush(w);
    }
}


/* Odoo's _update_bus_presence: the batched writes of polls */
static void
lpg_wsc_presence(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev)
{
    const char     *why;
    lpg_presence_t *old = w->presence;

    if (!w->logged) {
        return;
    }

    w->presence = lpg_presence_hold(
        w->sub.db, w->uid, w->uid > 0 ? 0 : w->guest_id, ev->inactivity);
    lpg_presence_release(old);

    /* the statuses come back as a bus notification on the user's own
     * channel, in the database's version shape (lpg_imstatus_notify) */
    if (ev->im_status != NULL
        && lpg_imstatus_notify(w->sub.db, w->sub.version, w->uid,
                               w->uid > 0 ? 0 : w->guest_id, ev->im_status,
                               ev->inactivity, &why)
            != LPG_OK)
    {
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: im_status not answered: %s", why);
    }
}


/* frees what w holds besides its socket */
void
lpg_wsc_forget(lpg_wsc_t *w)
{
    if (w->session_wait) {
        lpg_session_cancel(&w->swait);
        w->session_wait = false;
    }

    lpg_sub_release(&w->sub);
    lpg_presence_release(w->presence);
    w->presence = NULL;

    lpg_wsc_free_skeys(w);
    free(w->cookie);
    free(w->host);
    json_decref(w->strings);
    json_decref(w->pending);
    w->strings = NULL;
    w->pending = NULL;
    w->cookie = NULL;
    w->host = NULL;
}


/* the session's channels go */
static void
lpg_wsc_free_skeys(lpg_wsc_t *w)
{
    size_t i;

    for (i = 0; i < w->nskeys; i++) {
        free(w->skeys[i]);
    }

    free(w->skeys);
    free(w->skey_lens);
    w->nskeys = 0;
    w->skeys = NULL;
    w->skey_lens = NULL;
}
