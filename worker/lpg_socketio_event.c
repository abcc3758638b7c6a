/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio_event.c: the client's events on a connected Socket.IO
 * socket: `subscribe` (its replay waits for a fetch when its last is
 * above this node's ids), `unsubscribe` and `publish` (the send route's
 * INSERT), each answered by its ack (or, without one, an `error` event
 * when it fails).  Events that come while a replay, a publish or the
 * connect's session question runs wait in order (LPG_SIO_QUEUE_MAX at
 * most).
 */

#include "lpg_socketio_int.h"
#include "lpg_odoo_poll.h"
#include "lpg_send.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>


static int  lpg_sio_args(lpg_sio_nsp_t *n, int64_t ack, json_t *data,
                         const char *event, json_t **channels, json_t **last);
static void lpg_sio_subscribe(lpg_sio_nsp_t *n, int64_t ack, json_t *data);
static void lpg_sio_unsubscribe(lpg_sio_nsp_t *n, int64_t ack, json_t *data);
static int  lpg_sio_keep_old(lpg_sio_nsp_t *n);
static void lpg_sio_channels_ack(lpg_sio_nsp_t *n, int64_t ack);
static void lpg_sio_publish(lpg_sio_nsp_t *n, int64_t ack, json_t *data);
static void lpg_sio_published(lpg_backfill_req_t  *req,
                              const lpg_bus_rec_t *rows, size_t n,
                              int64_t bound, bool ok);


void
lpg_sio_event(lpg_sio_nsp_t *n, int64_t ack, json_t *data)
{
    const char *name;

    if (!n->connected || lpg_sio_busy(n)) {
        /* in order, behind the session question, replay or publish */
        if (n->queued == NULL) {
            n->queued = json_array();
        }

        if (n->queued == NULL || json_array_size(n->queued) >= LPG_SIO_QUEUE_MAX
            || json_array_append_new(
                   n->queued, json_pack("[I, O]", (json_int_t) ack, data))
                != 0)
        {
            lpg_sio_error(n, ack, NULL,
                          "too many events waiting: wait for the acks");
        }

        return;
    }

    name = json_string_value(json_array_get(data, 0));

    if (name == NULL) {
        lpg_sio_error(n, ack, NULL, "unknown event");

    } else if (strcmp(name, "subscribe") == 0) {
        lpg_sio_subscribe(n, ack, data);

    } else if (strcmp(name, "unsubscribe") == 0) {
        lpg_sio_unsubscribe(n, ack, data);

    } else if (strcmp(name, "publish") == 0) {
        lpg_sio_publish(n, ack, data);

    } else {
        lpg_sio_error(n, ack, name, "unknown event");
    }
}


/* the events that waited, in order, until one has to wait again */
void
lpg_sio_run_queued(lpg_sio_nsp_t *n)
{
    json_t *e;

    while (n->s != NULL && !n->s->closed && n->connected && !lpg_sio_busy(n)
           && n->queued != NULL && json_array_size(n->queued) > 0)
    {
        e = json_incref(json_array_get(n->queued, 0));
        json_array_remove(n->queued, 0);
        lpg_sio_event(n, json_integer_value(json_array_get(e, 0)),
                      json_array_get(e, 1));
        json_decref(e);
    }
}


/*
 * The channels of a subscribe or unsubscribe: its argument is an array
 * of names, or {"channels": [...], "last": N}.
 */
static int
lpg_sio_args(lpg_sio_nsp_t *n, int64_t ack, json_t *data, const char *event,
             json_t **channels, json_t **last)
{
    size_t  i;
    json_t *a = json_array_get(data, 1), *ch;

    *last = NULL;

    if (json_is_object(a)) {
        *last = json_object_get(a, "last");
        a = json_object_get(a, "channels");
    }

    if (!json_is_array(a) || json_array_size(a) == 0) {
        lpg_sio_error(n, ack, event,
                      "channels must be a non-empty array of strings");
        return LPG_ERROR;
    }

    json_array_foreach(a, i, ch)
    {
        if (!json_is_string(ch) || json_string_length(ch) == 0
            || json_string_length(ch) > LPG_SIO_CHANNEL_MAX)
        {
            lpg_sio_error(n, ack, event,
                          "a channel must be a string of 1 to 512 bytes");
            return LPG_ERROR;
        }
    }

    if (*last != NULL
        && (!json_is_integer(*last) || json_integer_value(*last) < 0)) {
        lpg_sio_error(n, ack, event, "last must be an integer >= 0");
        return LPG_ERROR;
    }

    *channels = a;

    return LPG_OK;
}


static void
lpg_sio_subscribe(lpg_sio_nsp_t *n, int64_t ack, json_t *data)
{
    size_t     i, k, cnt;
    bool       had;
    json_t    *add, *ch, *j, *all;
    int64_t    last;
    lpg_sub_t *s = &n->sub;

    if (lpg_sio_args(n, ack, data, "subscribe", &add, &j) != LPG_OK) {
        return;
    }

    /* no last: the connect's, else from now */
    last = j != NULL        ? (int64_t) json_integer_value(j)
        : n->auth_last >= 0 ? n->auth_last
                            : lpg_bus_cursor(s->db);

    if (!n->ahead_done && lpg_bus_stale(s->db, last)) {
        /* perhaps another node's last: a fetch first, the events after
         * this one wait behind it */
        lpg_log(LPG_LOG_DEBUG, 0,
                "socket.io: subscribe: last %lld is above this node's "
                "largest id %lld: waiting for a fetch",
                (long long) last, (long long) lpg_bus_cursor(s->db));
        n->ahead_ack = ack;
        n->ahead_data = json_incref(data);
        lpg_ahead_wait(&n->ahead, s->db, lpg_sio_fetched);
        return;
    }

    all = json_copy(n->channels);
    if (all == NULL) {
        lpg_sio_error(n, ack, "subscribe", "out of memory");
        return;
    }

    json_array_foreach(add, i, ch)
    {
        had = false;
        cnt = json_array_size(all);
        for (k = 0; k < cnt && !had; k++) {
            had = json_equal(json_array_get(all, k), ch);
        }

        if (!had) {
            json_array_append(all, ch);
        }
    }

    if (json_array_size(all) > (size_t) lpg_sio.ctx.conf->max_channels_per_poll)
    {
        json_decref(all);
        lpg_sio_error(n, ack, "subscribe",
                      "too many channels on one connection "
                      "(max_channels_per_poll)");
        return;
    }

    /* one above every id after a fetch (a reset database): from now */
    if (lpg_bus_stale(s->db, last)) {
        last = lpg_bus_cursor(s->db);
    }

    if (lpg_sio_keep_old(n) != LPG_OK) {
        json_decref(all);
        lpg_sio_error(n, ack, "subscribe", "out of memory");
        return;
    }

    json_decref(n->channels);
    n->channels = all;

    n->old_last = n->subscribed ? s->last : 0;
    n->new_last = last;
    s->last = n->subscribed && s->last < last ? s->last : last;

    if (lpg_sio_rekey(n) != LPG_OK) {
        return;
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "socket.io: %s subscribed: %zu channel(s), "
            "last %lld",
            n->name, json_array_size(n->channels), (long long) last);

    lpg_sio_channels_ack(n, ack);
    lpg_sio_replay_start(n);
}


/* the fetch a connect or a subscribe waited for: it runs again, then the
 * events that waited behind it */
void
lpg_sio_fetched(lpg_ahead_t *a)
{
    lpg_sio_nsp_t *n =
        (lpg_sio_nsp_t *) ((char *) a - offsetof(lpg_sio_nsp_t, ahead));
    lpg_sio_t *s = n->s;
    json_t    *data = n->ahead_data;

    n->ahead_data = NULL;
    n->ahead_done = true;

    if (!n->connected) {
        lpg_sio_connected(n);

    } else {
        lpg_sio_subscribe(n, n->ahead_ack, data);
    }

    json_decref(data);

    /* a closed session may have freed n */
    if (s != NULL && !s->closed) {
        n->ahead_done = false;
        lpg_sio_run_queued(n);
    }

    if (s != NULL) {
        lpg_sio_flush(s);
    }
}


/* a copy of the keys held now, for the replay's filter */
static int
lpg_sio_keep_old(lpg_sio_nsp_t *n)
{
    size_t     i;
    lpg_sub_t *s = &n->sub;

    lpg_sio_forget_old(n);

    if (!n->subscribed || s->nkeys == 0) {
        return LPG_OK;
    }

    n->old = calloc(s->nkeys, sizeof(*n->old));
    n->old_lens = calloc(s->nkeys, sizeof(*n->old_lens));
    if (n->old == NULL || n->old_lens == NULL) {
        lpg_sio_forget_old(n);
        return LPG_ERROR;
    }

    for (i = 0; i < s->nkeys; i++) {
        n->old[i] = strndup(s->keys[i], s->key_lens[i]);
        if (n->old[i] == NULL) {
            lpg_sio_forget_old(n);
            return LPG_ERROR;
        }

        n->old_lens[i] = s->key_lens[i];
        n->nold = i + 1;
    }

    return LPG_OK;
}


/* the sub's keys: the namespace's prefix and each channel, and the Odoo
 * session's channels (detached: the caller attaches) */
int
lpg_sio_rekey(lpg_sio_nsp_t *n)
{
    size_t      i;
    json_t     *ch, *full;
    lpg_buf_t   b;
    lpg_sub_t  *s = &n->sub;
    const char *db = lpg_sio.ctx.shm->dbs[s->db].name;

    lpg_sub_release(s);
    n->subscribed = json_array_size(n->channels) > 0 || n->nskeys > 0;

    json_array_foreach(n->channels, i, ch)
    {
        memset(&b, 0, sizeof(b));

        if ((n->name_len > 1
             && (lpg_buf_append(&b, n->name + 1, n->name_len - 1) != LPG_OK
                 || lpg_buf_append(&b, "/", 1) != LPG_OK))
            || lpg_buf_append(&b, json_string_value(ch), json_string_length(ch))
                != LPG_OK)
        {
            lpg_buf_free(&b);
            goto failed;
        }

        full = json_stringn(b.data, b.len);
        lpg_buf_free(&b);

        if (full == NULL || lpg_odoo_add_key(s, db, full) != LPG_OK) {
            json_decref(full);
            goto failed;
        }

        json_decref(full);
    }

    for (i = 0; i < n->nskeys; i++) {
        memset(&b, 0, sizeof(b));

        if (lpg_buf_append(&b, n->skeys[i], n->skey_lens[i]) != LPG_OK
            || lpg_sub_add_key(s, &b) != LPG_OK)
        {
            goto failed;
        }
    }

    return LPG_OK;

failed:

    lpg_log(LPG_LOG_ERR, 0, "socket.io: out of memory keying the channels");
    lpg_sio_close(n->s, "out of memory");

    return LPG_ERROR;
}


static void
lpg_sio_unsubscribe(lpg_sio_nsp_t *n, int64_t ack, json_t *data)
{
    size_t  i, k;
    json_t *del, *ch, *last;

    if (lpg_sio_args(n, ack, data, "unsubscribe", &del, &last) != LPG_OK) {
        return;
    }

    json_array_foreach(del, i, ch)
    {
        for (k = 0; k < json_array_size(n->channels); k++) {
            if (json_equal(json_array_get(n->channels, k), ch)) {
                json_array_remove(n->channels, k);
                break;
            }
        }
    }

    if (lpg_sio_rekey(n) != LPG_OK) {
        return;
    }

    /* the same last: nothing to replay */
    if (n->subscribed && lpg_sub_attach(&n->sub) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "socket.io: could not subscribe (no memory)");
        lpg_sio_close(n->s, "out of memory");
        return;
    }

    lpg_sio_channels_ack(n, ack);
}


/* the ack of a subscribe or unsubscribe: {"channels": [held now]} */
static void
lpg_sio_channels_ack(lpg_sio_nsp_t *n, int64_t ack)
{
    if (ack >= 0) {
        lpg_sio_send(n, LPG_SIO_ACK, ack,
                     json_pack("[{s:O}]", "channels", n->channels));
    }
}


/* the send route's INSERT, acknowledged with the row's id */
static void
lpg_sio_publish(lpg_sio_nsp_t *n, int64_t ack, json_t *data)
{
    json_t     *a = json_array_get(data, 1), *channel, *message, *full;
    lpg_buf_t   sql, b;
    const char *why = "out of memory";

    channel = json_is_object(a) ? json_object_get(a, "channel") : NULL;
    message = json_is_object(a) ? json_object_get(a, "message") : NULL;

    if (channel == NULL || message == NULL) {
        lpg_sio_error(n, ack, "publish",
                      "publish takes {\"channel\", \"message\"}");
        return;
    }

    if (!json_is_string(channel) || json_string_length(channel) == 0
        || json_string_length(channel) > LPG_SIO_CHANNEL_MAX)
    {
        lpg_sio_error(n, ack, "publish",
                      "a channel must be a string of 1 to 512 bytes");
        return;
    }

    memset(&sql, 0, sizeof(sql));
    memset(&b, 0, sizeof(b));

    /* the namespace's channel: its prefix and the name */
    if ((n->name_len > 1
         && (lpg_buf_append(&b, n->name + 1, n->name_len - 1) != LPG_OK
             || lpg_buf_append(&b, "/", 1) != LPG_OK))
        || lpg_buf_append(&b, json_string_value(channel),
                          json_string_length(channel))
            != LPG_OK)
    {
        full = NULL;

    } else {
        full = json_stringn(b.data, b.len);
    }

    lpg_buf_free(&b);

    if (full == NULL
        || lpg_send_check(n->sub.version, full, message, &sql, &why) != LPG_OK
        || lpg_buf_append_str(&sql, " RETURNING id") != LPG_OK)
    {
        json_decref(full);
        lpg_buf_free(&sql);
        lpg_sio_error(n, ack, "publish", why);
        return;
    }

    json_decref(full);
    free(n->pub_sql);
    n->pub_sql = sql.data;
    memset(&n->pub, 0, sizeof(n->pub));
    n->pub.db = n->sub.db;
    n->pub.sql = n->pub_sql;
    n->pub.cb = lpg_sio_published;
    n->pub_ack = ack;
    n->publishing = true;

    lpg_backfill_queue(&n->pub);
}


static void
lpg_sio_published(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t k,
                  int64_t bound, bool ok)
{
    lpg_sio_nsp_t *n =
        (lpg_sio_nsp_t *) ((char *) req - offsetof(lpg_sio_nsp_t, pub));
    lpg_sio_t  *s = n->s;
    const char *id = NULL;

    n->publishing = false;

    if (ok && req->res != NULL && PQntuples(req->res) == 1) {
        id = PQgetvalue(req->res, 0, 0);
        lpg_http_kick();
    }

    if (s == NULL) {
        return;
    }

    if (id == NULL) {
        lpg_sio_error(n, n->pub_ack, "publish",
                      "publish: the database did not take the message");

    } else if (n->pub_ack >= 0) {
        lpg_sio_send(
            n, LPG_SIO_ACK, n->pub_ack,
            json_pack("[{s:I}]", "id", (json_int_t) strtoll(id, NULL, 10)));
    }

    lpg_sio_run_queued(n);
    lpg_sio_flush(s);
}
