/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_send.c: the send route: checks, one INSERT through the worker's
 * pool, then a kick to the master.
 *
 * The INSERT text is built here: channel and message are lpg_json_dump
 * output (ASCII only, no control bytes), so doubling single quotes makes
 * a safe standard-conforming literal.
 */

#include "lpg_send.h"
#include "lpg_backfill.h"
#include "lpg_json.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"

#include <errno.h>
#include <fnmatch.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct {
    lpg_backfill_req_t req; /* first: the callback casts back */
    lpg_http_conn_t   *conn;
    char              *id;
    char              *sql;
    int                version;
} lpg_send_t;


static bool lpg_send_allowed(const char *channel);
static int  lpg_send_literal(lpg_buf_t *b, const lpg_buf_t *text);
static void lpg_send_done(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                          size_t n, int64_t bound, bool ok);
static void lpg_send_gone(void *data);
static void lpg_send_free(lpg_send_t *s);


static const char lpg_send_404[] = "404 Not Found\n";


void
lpg_send_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int               db, version;
    char             *id;
    json_t           *body, *params, *channel, *message;
    lpg_buf_t         sql;
    const char       *why;
    lpg_send_t       *s;
    json_error_t      e;
    const lpg_conf_t *conf = lpg_http_conf();

    db = lpg_odoo_pick_db(r);
    version = lpg_odoo_version(db);

    if ((!conf->allow_send && !conf->demo) || version >= 15) {
        lpg_http_respond(c, 404, NULL, NULL, lpg_send_404,
                         sizeof(lpg_send_404) - 1);
        return;
    }

    memset(&sql, 0, sizeof(sql));
    id = NULL;
    why = "Invalid JSON data";

    body = json_loadb(r->body, r->body_len, 0, &e);
    if (body == NULL || !json_is_object(body)) {
        goto failed;
    }

    id = json_dumps(json_object_get(body, "id") ? json_object_get(body, "id")
                                                : json_null(),
                    JSON_ENCODE_ANY | JSON_COMPACT);
    params = json_object_get(body, "params");
    channel =
        json_is_object(params) ? json_object_get(params, "channel") : NULL;
    message =
        json_is_object(params) ? json_object_get(params, "message") : NULL;

    if (channel == NULL || message == NULL) {
        why = "send() takes \"channel\" and \"message\"";
        goto failed;
    }

    if (!json_is_string(channel)) {
        why = "bus.Bus only string channels are allowed.";
        goto failed;
    }

    if (db < 0) {
        why = "404: Not Found (no such database: pass ?db=)";
        goto failed;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        why = "out of memory";
        goto failed;
    }

    if (lpg_send_check(version, channel, message, &sql, &why) != LPG_OK) {
        free(s);
        goto failed;
    }

    s->conn = c;
    s->id = id;
    s->sql = sql.data;
    s->version = version;
    s->req.db = db;
    s->req.sql = s->sql;
    s->req.cb = lpg_send_done;

    lpg_http_hold(c, lpg_send_gone, s);
    lpg_backfill_queue(&s->req);

    json_decref(body);
    return;

failed:

    lpg_odoo_rpc_error(
        c, version, id ? id : "null",
        version >= 11 ? "builtins.Exception" : "exceptions.Exception", why);
    free(id);
    json_decref(body);
    lpg_buf_free(&sql);
}


int
lpg_send_check(int version, const json_t *channel, const json_t *message,
               lpg_buf_t *sql, const char **why)
{
    int               rc = LPG_ERROR;
    lpg_buf_t         ch, msg;
    const lpg_conf_t *conf = lpg_http_conf();

    memset(&ch, 0, sizeof(ch));
    memset(&msg, 0, sizeof(msg));

    if ((!conf->allow_send && !conf->demo) || version >= 15) {
        *why = version >= 15 ? "send: not available on Odoo 15+ databases"
                             : "send: not allowed here (allow_send)";
        return LPG_ERROR;
    }

    if (!json_is_string(channel)) {
        *why = "bus.Bus only string channels are allowed.";
        return LPG_ERROR;
    }

    if (!lpg_send_allowed(json_string_value(channel))) {
        *why = "send: this channel is not open to clients (send_channels)";
        return LPG_ERROR;
    }

    if (lpg_json_dump(&ch, channel) != LPG_OK
        || lpg_json_dump(&msg, message) != LPG_OK)
    {
        *why = "send: channel or message is not valid UTF-8";
        goto done;
    }

    if (msg.len > (size_t) conf->send_max_bytes) {
        *why = "send: message larger than send_max_bytes";
        goto done;
    }

    if (lpg_buf_append_str(sql,
                           "INSERT INTO bus_bus (channel, message, "
                           "create_date) VALUES (")
            != LPG_OK
        || lpg_send_literal(sql, &ch) != LPG_OK
        || lpg_buf_append(sql, ", ", 2) != LPG_OK
        || lpg_send_literal(sql, &msg) != LPG_OK
        || lpg_buf_append_str(sql, ", now() AT TIME ZONE 'UTC')") != LPG_OK
        || lpg_buf_append(sql, "", 0) != LPG_OK)
    {
        *why = "out of memory";
        goto done;
    }

    rc = LPG_OK;

done:

    lpg_buf_free(&ch);
    lpg_buf_free(&msg);

    return rc;
}


static bool
lpg_send_allowed(const char *channel)
{
    char        pat[256];
    size_t      len;
    const char *p, *end;

    if (lpg_http_conf()->demo && fnmatch("demo-*", channel, 0) == 0) {
        return true;
    }

    if (!lpg_http_conf()->allow_send) {
        return false;
    }

    for (p = lpg_http_conf()->send_channels; *p != '\0'; p = end) {
        while (*p == ',' || *p == ' ') {
            p++;
        }

        end = p;
        while (*end != '\0' && *end != ',') {
            end++;
        }

        len = end - p;
        while (len > 0 && p[len - 1] == ' ') {
            len--;
        }

        if (len == 0 || len >= sizeof(pat)) {
            continue;
        }

        memcpy(pat, p, len);
        pat[len] = '\0';

        if (fnmatch(pat, channel, 0) == 0) {
            return true;
        }
    }

    return false;
}


static int
lpg_send_literal(lpg_buf_t *b, const lpg_buf_t *text)
{
    size_t i;

    if (lpg_buf_append(b, "'", 1) != LPG_OK) {
        return LPG_ERROR;
    }

    for (i = 0; i < text->len; i++) {
        if ((text->data[i] == '\'' && lpg_buf_append(b, "'", 1) != LPG_OK)
            || lpg_buf_append(b, &text->data[i], 1) != LPG_OK)
        {
            return LPG_ERROR;
        }
    }

    return lpg_buf_append(b, "'", 1);
}


static void
lpg_send_done(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
              int64_t bound, bool ok)
{
    lpg_send_t *s = (lpg_send_t *) req;
    char        body[256];
    int         len;

    if (!ok) {
        lpg_odoo_rpc_error(s->conn, s->version, s->id,
                           "psycopg2.OperationalError",
                           "send: the database did not take the message");
        lpg_send_free(s);
        return;
    }

    lpg_http_kick();

    /* bus.sendone returns None */
    len =
        snprintf(body, sizeof(body),
                 "{\"jsonrpc\": \"2.0\", \"id\": %s, \"result\": null}", s->id);
    lpg_http_respond(s->conn, 200, "application/json", NULL, body, len);
    lpg_send_free(s);
}


static void
lpg_send_gone(void *data)
{
    lpg_send_t *s = data;

    /* the row may or may not be inserted: the query runs on */
    lpg_backfill_cancel(&s->req);
    lpg_send_free(s);
}


static void
lpg_send_free(lpg_send_t *s)
{
    free(s->id);
    free(s->sql);
    free(s);
}
