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
#include "lpg_wsc_batch.h"
#include "lpg_ws_handshake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>


static void lpg_wso_gone(void *data);
static void lpg_wso_session_cb(lpg_session_wait_t       *sw,
                               const lpg_session_info_t *info);
static void lpg_wso_rechecked(lpg_wso_t *w, const lpg_session_info_t *info);
static void lpg_wso_recheck_cb(lpg_session_wait_t       *sw,
                               const lpg_session_info_t *info);
static void lpg_wso_upgrade(lpg_wso_t *w);
static void lpg_wso_message(lpg_wsc_t *c, const uint8_t *msg, size_t len,
                            bool binary);
static void lpg_wso_recheck(lpg_wsc_t *c);
static void lpg_wso_closing(lpg_wsc_t *c);
static void lpg_wso_free(lpg_wsc_t *c);
static void lpg_wso_forget(lpg_wso_t *w);
static void lpg_wso_subscribe(lpg_wso_t *w, lpg_odoo_ws_event_t *ev);
static void lpg_wso_free_skeys(lpg_wso_t *w);
static void lpg_wso_presence(lpg_wso_t *w, lpg_odoo_ws_event_t *ev);
static void lpg_wso_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                               size_t n, int64_t bound, bool ok);
static void lpg_wso_replay(lpg_wso_t *w, const lpg_bus_rec_t *rows, size_t n,
                           int64_t bound);
static void lpg_wso_deliver(lpg_sub_t *s);
static void lpg_wso_lost(lpg_sub_t *s);
static void lpg_wso_batch_init(lpg_wsc_batch_t *b, lpg_wso_t *w);
static void lpg_wso_batch_add(const lpg_bus_rec_t *r, void *arg);


static const lpg_sub_ops_t lpg_wso_ops = {
    "websocket",
    lpg_wso_deliver,
    lpg_wso_lost,
};

/* Odoo's /websocket as an lpg_wsc application */
static const lpg_wsc_app_t lpg_wso_app = {
    "websocket",
    lpg_wso_message,
    lpg_wso_closing,
    lpg_wso_free,
    lpg_wso_recheck,
    true,
    offsetof(lpg_shm_worker_t, ws_open),
    false,
};

static const lpg_http_ctx_t *lpg_wso_ctx;


int
lpg_websocket_init(const lpg_http_ctx_t *ctx)
{
    lpg_wsc_init(ctx);
    lpg_wso_ctx = lpg_wsc_ctx();
    lpg_ahead_init(ctx->loop);

    return LPG_OK;
}


void
lpg_websocket_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    bool public = false;
    lpg_wso_t                *w;
    const lpg_conf_t         *conf = lpg_wso_ctx->conf;
    const lpg_session_info_t *info;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    if (lpg_wsc_handshake(c, r, &w->wsc, &lpg_wso_app) != LPG_OK) {
        free(w);
        return;
    }

    w->sub.ops = &lpg_wso_ops;
    w->sub.db = lpg_odoo_pick_db(r);
    w->sub.version = lpg_odoo_version(w->sub.db);

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
            lpg_wso_forget(w);
            free(w);
            lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
            return;
        }

        switch (lpg_wso_ask(w, r, NULL, 0, lpg_wso_session_cb, &info)) {
        case LPG_OK:
            lpg_wso_session(w, info);
            break;

        case LPG_AGAIN:
            /* the 101 waits for Odoo's answer */
            lpg_http_hold(c, lpg_wso_gone, w);
            return;

        default:
            break;
        }
    }

    lpg_wso_upgrade(w);
}


/* the client went away while its session was asked */
static void
lpg_wso_gone(void *data)
{
    lpg_wso_t *w = data;

    w->wsc.conn = NULL;
    lpg_wso_forget(w);
    free(w);
}


static void
lpg_wso_session_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_wso_t *w = lpg_wso_answered(sw, NULL, NULL);

    lpg_wso_session(w, info);
    lpg_wso_upgrade(w);
}


int
lpg_wso_ask(lpg_wso_t *w, const lpg_http_request_t *r, const char *const *v,
            size_t n, lpg_session_cb_pt cb, const lpg_session_info_t **info)
{
    int            rc;
    lpg_wso_ask_t *a;

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        return LPG_ERROR;
    }

    rc = lpg_session_get_for(r, w->sub.db, w->sub.version, v, n, &a->sw, info);
    if (rc != LPG_AGAIN) {
        free(a);
        return rc;
    }

    a->sw.cb = cb;
    a->w = w;
    w->ask = a;

    return LPG_AGAIN;
}


lpg_wso_t *
lpg_wso_answered(lpg_session_wait_t *sw, json_t **pending,
                 int64_t *pending_last)
{
    lpg_wso_ask_t *a = (lpg_wso_ask_t *) sw;
    lpg_wso_t     *w = a->w;

    if (pending != NULL) {
        *pending = a->pending;
        *pending_last = a->pending_last;

    } else {
        json_decref(a->pending);
    }

    w->ask = NULL;
    free(a);

    return w;
}


void
lpg_wso_ask_cancel(lpg_wso_t *w)
{
    if (w->ask == NULL) {
        return;
    }

    lpg_session_cancel(&w->ask->sw);
    json_decref(w->ask->pending);
    free(w->ask);
    w->ask = NULL;
}


/* what Odoo said of the socket's session: its user and channels */
void
lpg_wso_session(lpg_wso_t *w, const lpg_session_info_t *info)
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

    lpg_wso_free_skeys(w);

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


/* the 101: the socket leaves the HTTP layer (lpg_wsc from here) */
static void
lpg_wso_upgrade(lpg_wso_t *w)
{
    lpg_log(LPG_LOG_DEBUG, 0, "websocket open: db %d, user %lld, %s", w->sub.db,
            (long long) w->uid, w->logged ? "with a session" : "public");

    lpg_wsc_upgrade(&w->wsc);
}


/* every session_ttl: Odoo is asked again (cached answers are free) */
static void
lpg_wso_recheck(lpg_wsc_t *c)
{
    lpg_wso_t                *w = lpg_wsc_data(c, lpg_wso_t, wsc);
    int                       rc;
    size_t                    n;
    const char              **v;
    lpg_http_request_t        r;
    const lpg_session_info_t *info;

    if (w->cookie == NULL || w->ask != NULL || w->wsc.closing) {
        return;
    }

    lpg_wso_session_request(w, &r);

    /* with the last subscribe's strings: the same cached answer */
    v = lpg_wso_kept_strings(w, &n);
    rc = lpg_wso_ask(w, &r, v, n, lpg_wso_recheck_cb, &info);
    free(v);

    if (rc == LPG_OK) {
        lpg_wso_rechecked(w, info);
    }
}


static void
lpg_wso_recheck_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_wso_rechecked(lpg_wso_answered(sw, NULL, NULL), info);
}


static void
lpg_wso_rechecked(lpg_wso_t *w, const lpg_session_info_t *info)
{
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
        lpg_wsc_close(&w->wsc, LPG_WS_SESSION_EXPIRED);
        return;
    }

    /* TODO: a changed channel list is used from the next subscribe on
     * (the web client re-subscribes when its channels change) */
    lpg_wso_session(w, info);
}


/* a complete message of the client (inside lpg_ws_feed: no free here) */
static void
lpg_wso_message(lpg_wsc_t *c, const uint8_t *msg, size_t len, bool binary)
{
    const char         *why;
    lpg_wso_t          *w = lpg_wsc_data(c, lpg_wso_t, wsc);
    lpg_odoo_ws_event_t ev;

    if (lpg_odoo_ws_parse(msg, len, &ev, &why) != LPG_OK) {
        /* Odoo logs it and keeps the socket */
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: message ignored: %s", why);
        return;
    }

    switch (ev.event) {
    case LPG_ODOO_WS_SUBSCRIBE:
        lpg_wso_subscribe(w, &ev);
        break;

    case LPG_ODOO_WS_PRESENCE:
        lpg_wso_presence(w, &ev);
        break;

    default:
        lpg_log(LPG_LOG_DEBUG, 0, "websocket: unknown event ignored");
        break;
    }

    lpg_odoo_ws_event_free(&ev);
}


/* Odoo's _subscribe; 17+'s selector strings ask Odoo first */
static void
lpg_wso_subscribe(lpg_wso_t *w, lpg_odoo_ws_event_t *ev)
{
    if (lpg_wso_select(w, ev) == LPG_OK) {
        lpg_wso_subscribe_now(w, ev);
    }
}


/* the channel set is replaced, then a replay */
void
lpg_wso_subscribe_now(lpg_wso_t *w, lpg_odoo_ws_event_t *ev)
{
    size_t      i;
    int64_t     last;
    lpg_buf_t   b;
    lpg_sub_t  *s = &w->sub;
    const char *db = lpg_wso_ctx->shm->dbs[s->db].name;

    if (lpg_wso_ahead(w, ev) != LPG_OK) {
        return;
    }

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
            - (int64_t) lpg_wso_ctx->conf->timeout * 1000000;
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "websocket subscribed: db \"%s\", %zu channel(s), last %lld", db,
            s->nkeys, (long long) last);

    if (lpg_sub_needs_fill(s)) {
        if (lpg_sub_fill(s, lpg_wso_backfilled) != LPG_OK) {
            lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
        }

        return;
    }

    lpg_wso_replay(w, NULL, 0, 0);
}


static void
lpg_wso_backfilled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                   int64_t bound, bool ok)
{
    lpg_wso_t *w = (lpg_wso_t *) s;

    if (!ok) {
        lpg_log(LPG_LOG_INFO, 0,
                "websocket: backfill failed, replaying from the history only");
        n = 0;
        bound = 0;
    }

    lpg_wso_replay(w, rows, n, bound);
    lpg_wsc_flush(&w->wsc);
}


/* rows (id <= bound) then the history above bound go out now; then the
 * socket is attached: the ring's next records wake it */
static void
lpg_wso_replay(lpg_wso_t *w, const lpg_bus_rec_t *rows, size_t n, int64_t bound)
{
    lpg_wsc_batch_t b;

    if (w->wsc.closing) {
        return;
    }

    lpg_wso_batch_init(&b, w);
    (void) lpg_sub_rows(&w->sub, rows, n, lpg_wso_batch_add, &b);
    (void) lpg_sub_history(&w->sub, bound, lpg_wso_batch_add, &b);
    lpg_wsc_batch_flush(&b);
    lpg_wsc_batch_free(&b);

    if (b.failed) {
        lpg_wsc_close(&w->wsc, LPG_WS_SERVER_ERROR);
        return;
    }

    if (lpg_sub_attach(&w->sub) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "websocket: could not subscribe (no memory)");
        lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
    }
}


static void
lpg_wso_batch_init(lpg_wsc_batch_t *b, lpg_wso_t *w)
{
    lpg_wsc_batch_init(b, &w->wsc, &w->sub, 16,
                       (size_t) lpg_wso_ctx->conf->max_answer_size / 2);
}


static void
lpg_wso_batch_add(const lpg_bus_rec_t *r, void *arg)
{
    lpg_wsc_batch_add(arg, r);
}


/*
 * Records woke w: the ones it wants go out as one frame.  The sockets of
 * one batch woken by the same records (a broadcast, a busy channel) share
 * the frame, built once: server frames are not masked, the bytes are the
 * same for all.
 */
static void
lpg_wso_deliver(lpg_sub_t *s)
{
    int64_t         before;
    lpg_wso_t      *w = (lpg_wso_t *) s;
    lpg_wsc_batch_t b;

    if (w->dead) {
        lpg_wso_free(&w->wsc);
        return;
    }

    if (w->wsc.closing || w->wsc.fd == -1) {
        lpg_sub_rearm(s);
        return;
    }

    before = s->last;

    lpg_wso_batch_init(&b, w);

    if (lpg_sub_matched(s) && s->last > 0) {
        (void) lpg_wsc_batch_deliver(&b, LPG_ODOO_WS_SHAPE(s->version),
                                     lpg_wso_batch_add, &b);

    } else {
        (void) lpg_sub_history(s, 0, lpg_wso_batch_add, &b);
        lpg_wsc_batch_flush(&b);
    }

    lpg_wsc_batch_free(&b);

    if (s->last > before) {
        /* the same latency histogram as polls */
        lpg_metrics_delivered(lpg_wso_ctx->stats, s->notify_us);
    }

    lpg_sub_rearm(s);
    lpg_wsc_flush(&w->wsc);
}


/* the ring lapped the worker: what w may have missed comes from the
 * database, then it is attached again */
static void
lpg_wso_lost(lpg_sub_t *s)
{
    lpg_wso_t *w = (lpg_wso_t *) s;

    if (w->dead) {
        lpg_wso_free(&w->wsc);
        return;
    }

    lpg_sub_detach(s);
    lpg_sub_rearm(s);

    if (w->wsc.closing) {
        return;
    }

    if (lpg_sub_fill(s, lpg_wso_backfilled) != LPG_OK) {
        lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
        lpg_wsc_flush(&w->wsc);
    }
}


/* Odoo's _update_bus_presence: the batched writes of polls */
static void
lpg_wso_presence(lpg_wso_t *w, lpg_odoo_ws_event_t *ev)
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


/* deliveries stop (lpg_wsc) */
static void
lpg_wso_closing(lpg_wsc_t *c)
{
    lpg_wso_t *w = lpg_wsc_data(c, lpg_wso_t, wsc);

    lpg_sub_detach(&w->sub);
}


/* the socket is gone (lpg_wsc), or a dead one's deliver came */
static void
lpg_wso_free(lpg_wsc_t *c)
{
    lpg_wso_t *w = lpg_wsc_data(c, lpg_wso_t, wsc);

    if (w->sub.ready) {
        /* on the ready list: freed when its deliver comes */
        w->dead = true;
        return;
    }

    lpg_wso_forget(w);
    free(w);
}


/* frees what w holds besides its socket */
static void
lpg_wso_forget(lpg_wso_t *w)
{
    lpg_wso_ask_cancel(w);

    lpg_wso_ahead_forget(w);
    lpg_sub_release(&w->sub);
    lpg_presence_release(w->presence);
    w->presence = NULL;

    lpg_wso_free_skeys(w);
    free(w->cookie);
    free(w->host);
    lpg_strlist_free(&w->strs);
    w->cookie = NULL;
    w->host = NULL;
}


/* the session's channels go */
static void
lpg_wso_free_skeys(lpg_wso_t *w)
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
