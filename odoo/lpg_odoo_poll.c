/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_poll.c: Odoo's poll request and answer shapes (see
 * lpg_odoo_poll.h), and the JSON-RPC error answers of every Odoo route.
 *
 * Nothing here owns a connection or a subscription's life: the transport
 * (worker/lpg_poll.c for a parked HTTP poll) calls in to parse a request
 * into a subscription and to turn records into Odoo's bytes.
 */

#include "lpg_odoo_poll.h"
#include "lpg_odoo_db.h"
#include "lpg_rpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int lpg_odoo_poll_channel(lpg_odoo_poll_t *q, lpg_sub_t *s,
                                 const char *db, const char *str, size_t len,
                                 const char **why);
static int lpg_odoo_poll_string(lpg_odoo_poll_t *q, const char *str,
                                size_t len);


static lpg_http_ctx_t lpg_odoo_poll;


void
lpg_odoo_poll_init(const lpg_http_ctx_t *ctx)
{
    lpg_odoo_poll = *ctx;
}


int
lpg_odoo_poll_parse(lpg_odoo_poll_t *q, lpg_sub_t *s, const char *body,
                    size_t len, const char **why)
{
    int            rc;
    size_t         i;
    json_t        *ch, *b;
    const char    *db;
    lpg_rpc_poll_t rp;

    rc = lpg_rpc_poll_parse(body, len,
                            (size_t) lpg_odoo_poll.conf->max_channels_per_poll,
                            &rp, why);

    /* the id is wanted by the error answer too */
    q->id = rp.id;
    rp.id = NULL;

    if (rc != LPG_OK || s->db < 0) {
        lpg_rpc_poll_free(&rp);
        return rc;
    }

    s->last = rp.last;
    q->inactivity = rp.inactivity;
    q->peek = rp.peek;

    db = lpg_odoo_poll.shm->dbs[s->db].name;

    /* the fast reader's plain strings, or jansson's */
    for (i = 0; i < rp.nfast; i++) {
        rc = lpg_odoo_poll_channel(q, s, db, rp.fast[i].p, rp.fast[i].len, why);
        if (rc != LPG_OK) {
            lpg_rpc_poll_free(&rp);
            return rc;
        }
    }

    json_array_foreach(rp.channels, i, ch)
    {
        rc = lpg_odoo_poll_channel(q, s, db, json_string_value(ch),
                                   json_string_length(ch), why);
        if (rc != LPG_OK) {
            lpg_rpc_poll_free(&rp);
            return rc;
        }
    }

    lpg_rpc_poll_free(&rp);

    if (s->version >= 15) {
        b = json_string("broadcast");

        if (b == NULL || lpg_odoo_add_key(s, db, b) != LPG_OK) {
            json_decref(b);
            *why = "out of memory";
            return LPG_ERROR;
        }

        json_decref(b);
    }

    return LPG_OK;
}


void
lpg_odoo_poll_free(lpg_odoo_poll_t *q)
{
    size_t i;

    for (i = 0; i < q->nstrings; i++) {
        free(q->strings[i]);
    }

    free(q->strings);
    free(q->id);
    q->id = NULL;
    q->strings = NULL;
    q->nstrings = 0;
}


/* one string channel of a poll, str (len bytes): kept for 16+'s session
 * lookup, then a key unless it selects */
static int
lpg_odoo_poll_channel(lpg_odoo_poll_t *q, lpg_sub_t *s, const char *db,
                      const char *str, size_t len, const char **why)
{
    if (s->version >= 16 && lpg_odoo_poll_string(q, str, len) != LPG_OK) {
        *why = "out of memory";
        return LPG_ERROR;
    }

    if (lpg_session_selector(s->version, str, len)) {
        return LPG_OK;
    }

    if (lpg_odoo_add_key_str(s, db, str, len) != LPG_OK) {
        *why = "a channel is not valid UTF-8 or too long";
        return LPG_ERROR;
    }

    return LPG_OK;
}


/* keeps a copy of the string channel str for the session lookup */
static int
lpg_odoo_poll_string(lpg_odoo_poll_t *q, const char *str, size_t len)
{
    char *copy, **a;

    if (memchr(str, '\0', len) != NULL) {
        /* "\u0000": not a string Odoo could match anyway */
        return LPG_OK;
    }

    a = realloc(q->strings, (q->nstrings + 1) * sizeof(*a));
    if (a == NULL) {
        return LPG_ERROR;
    }

    q->strings = a;
    copy = strndup(str, len);
    if (copy == NULL) {
        return LPG_ERROR;
    }

    q->strings[q->nstrings++] = copy;

    return LPG_OK;
}


/* the key of a string channel of len bytes, as lpg_odoo_add_key */
int
lpg_odoo_add_key_str(lpg_sub_t *s, const char *db, const char *str, size_t len)
{
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    if ((s->version >= 15
         && (lpg_buf_append(&b, "[", 1) != LPG_OK
             || lpg_json_dump_string(&b, db, strlen(db)) != LPG_OK
             || lpg_buf_append(&b, ",", 1) != LPG_OK))
        || lpg_json_dump_string(&b, str, len) != LPG_OK
        || (s->version >= 15 && lpg_buf_append(&b, "]", 1) != LPG_OK))
    {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    /* b is the sub's now, or freed */
    return lpg_sub_add_key(s, &b);
}


/* the key as Odoo stores it: json_dump(c) or, 15+, json_dump([db, c]) */
int
lpg_odoo_add_key(lpg_sub_t *s, const char *db, json_t *channel)
{
    int       rc;
    json_t   *pair;
    lpg_buf_t b;

    if (json_is_string(channel)) {
        return lpg_odoo_add_key_str(s, db, json_string_value(channel),
                                    json_string_length(channel));
    }

    memset(&b, 0, sizeof(b));

    if (s->version >= 15) {
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

    return lpg_sub_add_key(s, &b);
}


int
lpg_odoo_session_keys(lpg_sub_t *s, const lpg_session_info_t *info)
{
    size_t    i;
    lpg_buf_t b;

    for (i = 0; i < info->nkeys; i++) {
        memset(&b, 0, sizeof(b));

        if (lpg_buf_append(&b, info->keys[i], info->key_lens[i]) != LPG_OK
            || lpg_sub_add_key(s, &b) != LPG_OK)
        {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/*
 * Odoo serves a poll from its session's database (request.db is the
 * session's): the poll moves to db, and so do the client's channels so
 * far, named with it from 15 on.  LPG_ERROR leaves s as it was.  s is not
 * attached yet: its keys are rewritten in place.
 */
int
lpg_odoo_switch_db(lpg_sub_t *s, int db)
{
    int         rc, version;
    size_t      i;
    json_t     *ch, *c, *pair;
    lpg_buf_t  *texts;
    const char *name = lpg_odoo_poll.shm->dbs[db].name;

    version = lpg_odoo_version(db);

    texts = calloc(s->nkeys + 1, sizeof(*texts));
    if (texts == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        return LPG_ERROR;
    }

    rc = LPG_OK;

    for (i = 0; i < s->nkeys && rc == LPG_OK; i++) {
        ch = json_loadb(s->keys[i], s->key_lens[i], JSON_DECODE_ANY, NULL);
        c = s->version >= 15 ? json_array_get(ch, 1) : ch;

        if (c == NULL) {
            rc = LPG_ERROR;

        } else if (version >= 15) {
            pair = json_pack("[sO]", name, c);
            rc = pair != NULL ? lpg_json_dump(&texts[i], pair) : LPG_ERROR;
            json_decref(pair);

        } else {
            rc = lpg_json_dump(&texts[i], c);
        }

        json_decref(ch);

        if (texts[i].len > LPG_SUB_KEY_MAX) {
            rc = LPG_ERROR;
        }
    }

    if (rc != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0,
                "poll: its channels could not move to "
                "the session's database \"%s\"",
                name);
        for (i = 0; i < s->nkeys; i++) {
            lpg_buf_free(&texts[i]);
        }

        free(texts);
        return LPG_ERROR;
    }

    for (i = 0; i < s->nkeys; i++) {
        free(s->keys[i]);
        s->keys[i] = texts[i].data;
        s->key_lens[i] = texts[i].len;
    }

    free(texts);
    s->db = db;
    s->version = version;

    return LPG_OK;
}


void
lpg_odoo_list_init(lpg_odoo_list_t *l, lpg_buf_t *out, int version)
{
    l->out = out;
    l->n = 0;
    l->version = version;
    l->failed = false;
}


/* one record the subscription wants, as the version's entry */
void
lpg_odoo_list_add(const lpg_bus_rec_t *r, void *arg)
{
    char             num[32];
    lpg_odoo_list_t *l = arg;
    lpg_buf_t       *b = l->out;

    /* capped: the newer ids come on the next poll (last moves up to the
     * largest id sent, and ids are appended in order) */
    if (b->len >= (size_t) lpg_odoo_poll.conf->max_answer_size) {
        return;
    }

    snprintf(num, sizeof(num), "%s{\"id\": %lld, ", l->n ? ", " : "",
             (long long) r->id);

    if (lpg_buf_append(b, num, strlen(num)) != LPG_OK
        || (l->version < 15
            && (lpg_buf_append(b, "\"channel\": ", 11) != LPG_OK
                || lpg_buf_append(b, r->channel, r->channel_len) != LPG_OK
                || lpg_buf_append(b, ", ", 2) != LPG_OK))
        || lpg_buf_append(b, "\"message\": ", 11) != LPG_OK
        || lpg_buf_append(b, r->message, r->message_len) != LPG_OK
        || lpg_buf_append(b, "}", 1) != LPG_OK)
    {
        l->failed = true;
    }

    l->n++;
}


int
lpg_odoo_poll_iov(struct iovec *iov, const char *id, const lpg_buf_t *list)
{
    /* the common answer: its parts copied once, into the output */
    iov[0] = (struct iovec){ "{\"jsonrpc\": \"2.0\", \"id\": ", 25 };
    iov[1] = (struct iovec){ (void *) id, strlen(id) };
    iov[2] = (struct iovec){ ", \"result\": [", 13 };
    iov[3] = (struct iovec){ list->data, list->len };
    iov[4] = (struct iovec){ "]}", 2 };

    return 5;
}


int
lpg_odoo_poll_body(lpg_buf_t *out, const char *id, bool peek,
                   const lpg_sub_t *s, const lpg_buf_t *list)
{
    size_t i;
    bool   failed = false;

    if (lpg_buf_append(out, "{\"jsonrpc\": \"2.0\", \"id\": ", 25) != LPG_OK
        || lpg_buf_append(out, id, strlen(id)) != LPG_OK
        || lpg_buf_append(out, ", \"result\": ", 12) != LPG_OK
        || (peek && lpg_buf_append(out, "{\"notifications\": ", 18) != LPG_OK)
        || lpg_buf_append(out, "[", 1) != LPG_OK
        || (list->len && lpg_buf_append(out, list->data, list->len) != LPG_OK)
        || lpg_buf_append(out, "]", 1) != LPG_OK)
    {
        failed = true;
    }

    if (peek) {
        if (lpg_buf_append(out, ", \"channels\": [", 15) != LPG_OK) {
            failed = true;
        }

        for (i = 0; i < s->nkeys; i++) {
            if ((i > 0 && lpg_buf_append(out, ", ", 2) != LPG_OK)
                || lpg_buf_append(out, s->keys[i], s->key_lens[i]) != LPG_OK)
            {
                failed = true;
            }
        }

        if (lpg_buf_append(out, "]}", 2) != LPG_OK) {
            failed = true;
        }
    }

    if (lpg_buf_append(out, "}", 1) != LPG_OK) {
        failed = true;
    }

    return failed ? LPG_ERROR : LPG_OK;
}


const char *
lpg_odoo_cors(int version)
{
    /* cors="*" on the poll route from Odoo 13 */
    return version >= 13 ? "Access-Control-Allow-Origin: *\r\n" : NULL;
}


void
lpg_odoo_rpc_error(lpg_http_conn_t *c, int version, const char *id,
                   const char *name, const char *msg)
{
    lpg_odoo_rpc_fail(c, version, id, 200,
                      version >= 10 ? "Odoo Server Error"
                                    : "OpenERP Server Error",
                      name, msg);
}


void
lpg_odoo_rpc_fail(lpg_http_conn_t *c, int version, const char *id, int code,
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

    atomic_fetch_add_explicit(&lpg_odoo_poll.stats->answered_error, 1,
                              memory_order_relaxed);

    lpg_http_respond(
        c, 200, "application/json",
        version >= 13 ? "Access-Control-Allow-Origin: *\r\n" : NULL, body, len);
    free(body);
    free(text);
}
