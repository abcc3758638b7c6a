/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsapi.c: GET <path>/ws, the plain WebSocket API (lpg_wsapi.h): the
 * upgrade and the client's ops.
 *
 * The socket is an lpg_wsc application: lpg_wsc does the upgrade, the I/O,
 * PING/PONG, the output limits and the stop.  Its channels are the plain
 * poll API's (keys as lpg_odoo_add_key makes them, so lpgate_send() rows
 * match), held in one subscription: a subscribe adds channels and replays
 * each from its own last (the new ones from the op's `last`, the ones held
 * before from what was sent), an unsubscribe drops some, a publish is the
 * send route's INSERT (lpg_send_check: allow_send, send_channels,
 * send_max_bytes), answered with the new row's id.  Ops that come while a
 * replay waits for the database or a publish runs wait in order behind it
 * (LPG_WSA_QUEUE_MAX at most).  Every bad op gets an error message; the
 * socket stays open.
 */

#include "lpg_wsapi_int.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"
#include "lpg_send.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>


static void lpg_wsa_message(lpg_wsc_t *c, const uint8_t *msg, size_t len,
                            bool binary);
static void lpg_wsa_closing(lpg_wsc_t *c);
static void lpg_wsa_op(lpg_wsa_t *w, json_t *op);
static int  lpg_wsa_db(lpg_wsa_t *w, json_t *op, const char *name);
static int  lpg_wsa_channels(lpg_wsa_t *w, json_t *op, const char *name,
                             json_t **out);
static void lpg_wsa_subscribe(lpg_wsa_t *w, json_t *op);
static void lpg_wsa_fetched(void *owner, json_t *op, int64_t last);
static void lpg_wsa_unsubscribe(lpg_wsa_t *w, json_t *op);
static int  lpg_wsa_rekey(lpg_wsa_t *w);
static int  lpg_wsa_keep_old(lpg_wsa_t *w);
static void lpg_wsa_publish(lpg_wsa_t *w, json_t *op);
static void lpg_wsa_published(lpg_backfill_req_t  *req,
                              const lpg_bus_rec_t *rows, size_t n,
                              int64_t bound, bool ok);
static void lpg_wsa_ack(lpg_wsa_t *w, const char *op);


static const lpg_wsc_app_t lpg_wsa_app = {
    "ws",
    lpg_wsa_message,
    lpg_wsa_closing,
    lpg_wsa_free,
    NULL,
    false,
    offsetof(lpg_shm_worker_t, wsapi_open),
    true,
};

const lpg_http_ctx_t *lpg_wsa_ctx;


void
lpg_wsapi_init(const lpg_http_ctx_t *ctx)
{
    lpg_wsc_init(ctx);
    lpg_wsa_ctx = lpg_wsc_ctx();
    lpg_ahead_init(ctx->loop);
}


void
lpg_wsapi_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    lpg_wsa_t *w;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    if (lpg_wsc_handshake(c, r, &w->wsc, &lpg_wsa_app) != LPG_OK) {
        free(w);
        return;
    }

    /* ?db= or the host's database; a subscribe's "db" may name one */
    w->sub.ops = &lpg_wsa_sub_ops;
    w->sub.db = lpg_odoo_pick_db(r);
    w->sub.version = lpg_odoo_version(w->sub.db);

    lpg_log(LPG_LOG_DEBUG, 0, "ws open: db %d", w->sub.db);

    lpg_wsc_upgrade(&w->wsc);
}


/* deliveries stop (lpg_wsc) */
static void
lpg_wsa_closing(lpg_wsc_t *c)
{
    lpg_wsa_t *w = lpg_wsc_data(c, lpg_wsa_t, wsc);

    lpg_ahead_drop(&w->ahead);
    lpg_sub_detach(&w->sub);
}


/* a complete message of the client (inside lpg_ws_feed: no free here) */
static void
lpg_wsa_message(lpg_wsc_t *c, const uint8_t *msg, size_t len, bool binary)
{
    json_t      *op;
    json_error_t e;
    char         why[200];
    lpg_wsa_t   *w = lpg_wsc_data(c, lpg_wsa_t, wsc);

    if (binary) {
        lpg_wsa_error(w, NULL,
                      "binary messages are not accepted: send JSON "
                      "text");
        return;
    }

    op = json_loadb((const char *) msg, len, 0, &e);
    if (op == NULL || !json_is_object(op)) {
        snprintf(why, sizeof(why), "not a JSON object%s%s",
                 op == NULL ? ": " : "", op == NULL ? e.text : "");
        json_decref(op);
        lpg_wsa_error(w, NULL, why);
        return;
    }

    if (lpg_wsa_busy(w)) {
        /* in order, behind the replay or the publish */
        if (w->queued == NULL) {
            w->queued = json_array();
        }

        if (w->queued == NULL
            || json_array_size(w->queued) >= LPG_WSA_QUEUE_MAX) {
            lpg_wsa_error(w, json_string_value(json_object_get(op, "op")),
                          "too many ops waiting: wait for the answers");
            json_decref(op);
            return;
        }

        json_array_append_new(w->queued, op);
        return;
    }

    lpg_wsa_op(w, op);
    json_decref(op);
}


/* the ops that waited, in order, until one has to wait again */
void
lpg_wsa_run_queued(lpg_wsa_t *w)
{
    json_t *op;

    while (!lpg_wsa_busy(w) && !w->wsc.closing && w->queued != NULL
           && json_array_size(w->queued) > 0)
    {
        op = json_incref(json_array_get(w->queued, 0));
        json_array_remove(w->queued, 0);
        lpg_wsa_op(w, op);
        json_decref(op);
    }
}


static void
lpg_wsa_op(lpg_wsa_t *w, json_t *op)
{
    const char *name = json_string_value(json_object_get(op, "op"));

    if (name == NULL) {
        lpg_wsa_error(w, NULL,
                      "\"op\" must be \"subscribe\", \"unsubscribe\" or "
                      "\"publish\"");

    } else if (strcmp(name, "subscribe") == 0) {
        lpg_wsa_subscribe(w, op);

    } else if (strcmp(name, "unsubscribe") == 0) {
        lpg_wsa_unsubscribe(w, op);

    } else if (strcmp(name, "publish") == 0) {
        lpg_wsa_publish(w, op);

    } else {
        lpg_wsa_error(w, name, "unknown op");
    }
}


/* the op's "db" (optional): the socket's database from then on */
static int
lpg_wsa_db(lpg_wsa_t *w, json_t *op, const char *name)
{
    int     db;
    json_t *j = json_object_get(op, "db");

    if (j != NULL) {
        if (!json_is_string(j)) {
            lpg_wsa_error(w, name, "\"db\" must be a string");
            return LPG_ERROR;
        }

        db = lpg_shm_find_db(lpg_wsa_ctx->shm, json_string_value(j),
                             json_string_length(j));
        if (db < 0) {
            lpg_wsa_error(w, name, "no such database");
            return LPG_ERROR;
        }

        if (db != w->sub.db) {
            if (w->subscribed) {
                lpg_wsa_error(w, name, "one database per connection");
                return LPG_ERROR;
            }

            w->sub.db = db;
            w->sub.version = lpg_odoo_version(db);
        }
    }

    if (w->sub.db < 0) {
        lpg_wsa_error(w, name, "no such database: pass \"db\" or ?db=");
        return LPG_ERROR;
    }

    return LPG_OK;
}


/* the op's channels: a non-empty array of channel names (borrowed) */
static int
lpg_wsa_channels(lpg_wsa_t *w, json_t *op, const char *name, json_t **out)
{
    size_t  i;
    json_t *ch, *a = json_object_get(op, "channels");

    if (!json_is_array(a) || json_array_size(a) == 0) {
        lpg_wsa_error(w, name,
                      "\"channels\" must be a non-empty array of strings");
        return LPG_ERROR;
    }

    json_array_foreach(a, i, ch)
    {
        if (!json_is_string(ch) || json_string_length(ch) == 0
            || json_string_length(ch) > LPG_WSA_CHANNEL_MAX)
        {
            lpg_wsa_error(w, name,
                          "a channel must be a string of 1 to 512 bytes");
            return LPG_ERROR;
        }
    }

    *out = a;

    return LPG_OK;
}


static void
lpg_wsa_subscribe(lpg_wsa_t *w, json_t *op)
{
    size_t        i;
    json_t       *add, *ch, *j;
    int64_t       last;
    lpg_sub_t    *s = &w->sub;
    lpg_strlist_t all;

    if (lpg_wsa_channels(w, op, "subscribe", &add) != LPG_OK
        || lpg_wsa_db(w, op, "subscribe") != LPG_OK)
    {
        return;
    }

    j = json_object_get(op, "last");
    if (j != NULL && (!json_is_integer(j) || json_integer_value(j) < 0)) {
        lpg_wsa_error(w, "subscribe", "\"last\" must be an integer >= 0");
        return;
    }

    if (j != NULL && !w->ahead_done
        && lpg_bus_stale(s->db, (int64_t) json_integer_value(j)))
    {
        /* another node's last, perhaps (a client that moved), that this
         * master has not fetched yet: not stale until a fetch says so;
         * the ops after this one wait in order */
        lpg_log(LPG_LOG_DEBUG, 0,
                "ws: last %lld is above this node's largest id %lld: "
                "waiting for a fetch",
                (long long) json_integer_value(j),
                (long long) lpg_bus_cursor(s->db));
        if (lpg_ahead_hold(&w->ahead, s->db, op, 0, lpg_wsa_fetched, w)
            != LPG_OK) {
            lpg_wsa_error(w, "subscribe", "out of memory");
        }

        return;
    }

    /* the union of the held channels and the new ones */
    memset(&all, 0, sizeof(all));
    if (lpg_strlist_copy(&all, &w->channels) != LPG_OK) {
        lpg_wsa_error(w, "subscribe", "out of memory");
        return;
    }

    json_array_foreach(add, i, ch)
    {
        if (lpg_strlist_add(&all, json_string_value(ch), json_string_length(ch))
            != LPG_OK)
        {
            lpg_strlist_free(&all);
            lpg_wsa_error(w, "subscribe", "out of memory");
            return;
        }
    }

    if (all.n > (uint32_t) lpg_wsa_ctx->conf->max_channels_per_poll) {
        lpg_strlist_free(&all);
        lpg_wsa_error(w, "subscribe",
                      "too many channels on one connection "
                      "(max_channels_per_poll)");
        return;
    }

    /* no last: from now; a last above every id (a reset database, an
     * old client): from what is published, as a poll */
    last = j != NULL ? (int64_t) json_integer_value(j) : lpg_bus_cursor(s->db);
    if (lpg_bus_stale(s->db, last)) {
        last = lpg_bus_cursor(s->db);
    }

    if (lpg_wsa_keep_old(w) != LPG_OK) {
        lpg_strlist_free(&all);
        lpg_wsa_error(w, "subscribe", "out of memory");
        return;
    }

    lpg_strlist_free(&w->channels);
    w->channels = all;

    /* the keys held were served up to s->last; the new ones from last */
    w->old_last = w->subscribed ? s->last : 0;
    w->new_last = last;
    s->last = w->subscribed && s->last < last ? s->last : last;

    if (lpg_wsa_rekey(w) != LPG_OK) {
        return;
    }

    lpg_log(LPG_LOG_DEBUG, 0, "ws subscribed: %u channel(s), last %lld",
            (unsigned) w->channels.n, (long long) last);

    lpg_wsa_ack(w, "subscribe");
    lpg_wsa_replay_start(w);
}


/* the fetch an ahead subscribe waited for: the op again, then the ops
 * that waited behind it */
static void
lpg_wsa_fetched(void *owner, json_t *op, int64_t last)
{
    lpg_wsa_t *w = owner;

    (void) last;

    w->ahead_done = true;
    lpg_wsa_subscribe(w, op);
    w->ahead_done = false;
    json_decref(op);

    lpg_wsa_run_queued(w);
    lpg_wsc_flush(&w->wsc);
}


/* a copy of the keys held now, for the replay's filter */
static int
lpg_wsa_keep_old(lpg_wsa_t *w)
{
    size_t     i;
    lpg_sub_t *s = &w->sub;

    lpg_wsa_forget_old(w);

    if (!w->subscribed || s->nkeys == 0) {
        return LPG_OK;
    }

    w->old = calloc(s->nkeys, sizeof(*w->old));
    w->old_lens = calloc(s->nkeys, sizeof(*w->old_lens));
    if (w->old == NULL || w->old_lens == NULL) {
        lpg_wsa_forget_old(w);
        return LPG_ERROR;
    }

    for (i = 0; i < s->nkeys; i++) {
        w->old[i] = malloc(s->key_lens[i] + 1);
        if (w->old[i] == NULL) {
            lpg_wsa_forget_old(w);
            return LPG_ERROR;
        }

        memcpy(w->old[i], s->keys[i], s->key_lens[i]);
        w->old[i][s->key_lens[i]] = '\0';
        w->old_lens[i] = s->key_lens[i];
        w->nold = i + 1;
    }

    return LPG_OK;
}


/* the sub's keys become the channels' (detached: the caller attaches) */
static int
lpg_wsa_rekey(lpg_wsa_t *w)
{
    json_t            *b;
    lpg_sub_t         *s = &w->sub;
    const char        *db = lpg_wsa_ctx->shm->dbs[s->db].name;
    lpg_strlist_iter_t it;

    lpg_sub_release(s);
    w->subscribed = w->channels.n > 0;

    memset(&it, 0, sizeof(it));
    while (lpg_strlist_next(&w->channels, &it)) {
        if (lpg_odoo_add_key_str(s, db, it.str, it.len) != LPG_OK) {
            goto failed;
        }
    }

    if (w->subscribed && s->version >= 15) {
        /* as a poll of a 15+ database: Odoo's broadcast too */
        b = json_string("broadcast");
        if (b == NULL || lpg_odoo_add_key(s, db, b) != LPG_OK) {
            json_decref(b);
            goto failed;
        }

        json_decref(b);
    }

    return LPG_OK;

failed:

    lpg_log(LPG_LOG_ERR, 0, "ws: out of memory keying the channels");
    lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);

    return LPG_ERROR;
}


static void
lpg_wsa_unsubscribe(lpg_wsa_t *w, json_t *op)
{
    size_t  i;
    json_t *del, *ch;

    if (lpg_wsa_channels(w, op, "unsubscribe", &del) != LPG_OK) {
        return;
    }

    json_array_foreach(del, i, ch)
    {
        (void) lpg_strlist_remove(&w->channels, json_string_value(ch),
                                  json_string_length(ch));
    }

    if (w->sub.db < 0 || lpg_wsa_rekey(w) != LPG_OK) {
        lpg_wsa_ack(w, "unsubscribe");
        return;
    }

    /* the same last: nothing to replay */
    if (w->subscribed && lpg_sub_attach(&w->sub) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "ws: could not subscribe (no memory)");
        lpg_wsc_close(&w->wsc, LPG_WS_TRY_LATER);
        return;
    }

    lpg_wsa_ack(w, "unsubscribe");
}


/* {"op": op, "channels": [the channels held now]} */
static void
lpg_wsa_ack(lpg_wsa_t *w, const char *op)
{
    json_t            *a;
    lpg_strlist_iter_t it;

    a = json_array();
    memset(&it, 0, sizeof(it));
    while (a != NULL && lpg_strlist_next(&w->channels, &it)) {
        if (json_array_append_new(a, json_stringn(it.str, it.len)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }

    /* NULL (no memory) is answered by lpg_wsa_reply */
    lpg_wsa_reply(
        w, a != NULL ? json_pack("{s:s, s:o}", "op", op, "channels", a) : NULL);
}


/* the send route's INSERT, answered with the row's id */
static void
lpg_wsa_publish(lpg_wsa_t *w, json_t *op)
{
    json_t        *channel, *message;
    lpg_buf_t      sql;
    const char    *why;
    lpg_wsa_pub_t *p;

    channel = json_object_get(op, "channel");
    message = json_object_get(op, "message");

    if (channel == NULL || message == NULL) {
        lpg_wsa_error(w, "publish",
                      "publish takes \"channel\" and "
                      "\"message\"");
        return;
    }

    if (lpg_wsa_db(w, op, "publish") != LPG_OK) {
        return;
    }

    memset(&sql, 0, sizeof(sql));

    if (lpg_send_check(w->sub.version, channel, message, &sql, &why) != LPG_OK
        || lpg_buf_append_str(&sql, " RETURNING id") != LPG_OK)
    {
        lpg_buf_free(&sql);
        lpg_wsa_error(w, "publish", why);
        return;
    }

    /* one at a time: the ops behind it wait (lpg_wsa_busy) */
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        lpg_buf_free(&sql);
        lpg_wsa_error(w, "publish", "out of memory");
        return;
    }

    p->w = w;
    p->sql = sql.data;
    p->req.db = w->sub.db;
    p->req.sql = p->sql;
    p->req.cb = lpg_wsa_published;
    w->pub = p;

    lpg_backfill_queue(&p->req);
}


void
lpg_wsa_pub_free(lpg_wsa_t *w)
{
    if (w->pub == NULL) {
        return;
    }

    /* the row may or may not be inserted: the query runs on */
    lpg_backfill_cancel(&w->pub->req);
    free(w->pub->sql);
    free(w->pub);
    w->pub = NULL;
}


static void
lpg_wsa_published(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
                  int64_t bound, bool ok)
{
    lpg_wsa_pub_t *p = (lpg_wsa_pub_t *) req;
    lpg_wsa_t     *w = p->w;
    const char    *id = NULL;

    if (ok && req->res != NULL && PQntuples(req->res) == 1) {
        id = PQgetvalue(req->res, 0, 0);
    }

    if (id == NULL) {
        lpg_wsa_error(w, "publish",
                      "publish: the database did not take the message");

    } else {
        lpg_http_kick();
        lpg_wsa_reply(w,
                      json_pack("{s:s, s:I}", "op", "publish", "id",
                                (json_int_t) strtoll(id, NULL, 10)));
    }

    w->pub = NULL;
    free(p->sql);
    free(p);

    lpg_wsa_run_queued(w);
    lpg_wsc_flush(&w->wsc);
}
