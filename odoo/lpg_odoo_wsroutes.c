/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_wsroutes.c: the routes under /websocket/ (see
 * lpg_odoo_wsroutes.h).
 *
 * A JSON request is parsed at once into an lpg_odoo_wsreq_t, which owns
 * its request id, its client strings and its parsed params, then waits
 * for its session (lpg_session_get_for) and, for a peek older than the
 * worker's history, for one backfill query; it is freed when answered or
 * when its client goes away.  A peek's subscription is never attached: it
 * only borrows lpg_sub's record selection.
 */

#include "lpg_odoo_wsroutes.h"
#include "lpg_bus.h"
#include "lpg_imstatus.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"
#include "lpg_odoo_ws.h"
#include "lpg_presence.h"
#include "lpg_session.h"
#include "lpg_sub.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define LPG_WSROUTES_PREFIX "/websocket/"


typedef struct {
    lpg_sub_t          sub; /* first: the peek's records */
    lpg_session_wait_t swait;
    lpg_http_conn_t   *conn;
    char              *id;      /* JSON text, owned */
    char             **strings; /* the client's channels, owned */
    size_t             nstrings;
    json_t            *ids; /* update: im_status_ids_by_model, owned */
    int64_t            inactivity;
    bool               peek; /* else update_bus_presence */
    bool               waiting;
} lpg_odoo_wsreq_t;


static void lpg_wsroutes_health(lpg_http_conn_t *c);
static void lpg_wsroutes_json(lpg_http_conn_t *c, const lpg_http_request_t *r,
                              bool peek);
static int  lpg_wsroutes_parse(lpg_odoo_wsreq_t *q, json_t *params,
                               const char **why);
static void lpg_wsroutes_session_cb(lpg_session_wait_t       *w,
                                    const lpg_session_info_t *info);
static void lpg_wsroutes_go(lpg_odoo_wsreq_t         *q,
                            const lpg_session_info_t *info);
static void lpg_wsroutes_update(lpg_odoo_wsreq_t         *q,
                                const lpg_session_info_t *info);
static void lpg_wsroutes_filled(lpg_sub_t *s, const lpg_bus_rec_t *rows,
                                size_t n, int64_t bound, bool ok);
static void lpg_wsroutes_answer(lpg_odoo_wsreq_t *q, const lpg_bus_rec_t *rows,
                                size_t n, int64_t bound);
static void lpg_wsroutes_gone(void *data);
static void lpg_wsroutes_free(lpg_odoo_wsreq_t *q);


static const lpg_sub_ops_t lpg_wsroutes_ops = {
    "peek_notifications",
    NULL, /* never attached */
    NULL,
};

static const char lpg_wsroutes_cors[] = "Access-Control-Allow-Origin: *\r\n";

static lpg_http_ctx_t lpg_wsroutes;


void
lpg_odoo_wsroutes_init(const lpg_http_ctx_t *ctx)
{
    lpg_wsroutes = *ctx;
}


bool
lpg_odoo_wsroutes_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    size_t      plen = sizeof(LPG_WSROUTES_PREFIX) - 1, nlen;
    const char *name, *allow;
    bool        get;

    if (r->path_len <= plen || memcmp(r->path, LPG_WSROUTES_PREFIX, plen) != 0)
    {
        return false;
    }

    name = r->path + plen;
    nlen = r->path_len - plen;

#define lpg_wsroutes_is(s) (nlen == sizeof(s) - 1 && memcmp(name, s, nlen) == 0)

    if (lpg_wsroutes_is("health")) {
        get = true;

    } else if (lpg_wsroutes_is("peek_notifications")
               || lpg_wsroutes_is("update_bus_presence"))
    {
        get = false;

    } else {
        lpg_http_respond(c, 404, NULL, NULL, "404 Not Found\n", 14);
        return true;
    }

    if (get && r->method != HTTP_GET && r->method != HTTP_HEAD) {
        allow = "Allow: GET, HEAD\r\n";

    } else if (!get && r->method == HTTP_OPTIONS) {
        /* CORS preflight of Odoo's cors="*" routes */
        lpg_http_respond(c, 200, NULL,
                         "Access-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: POST\r\n"
                         "Access-Control-Allow-Headers: Origin, "
                         "X-Requested-With, Content-Type, Accept, "
                         "Authorization\r\n"
                         "Access-Control-Max-Age: 86400\r\n",
                         "", 0);
        return true;

    } else if (!get && r->method != HTTP_POST) {
        allow = "Allow: POST, OPTIONS\r\n";

    } else {
        allow = NULL;
    }

    if (allow != NULL) {
        lpg_http_respond(c, 405, NULL, allow, "405 Method Not Allowed\n", 23);
        return true;
    }

    if (get) {
        lpg_wsroutes_health(c);

    } else {
        lpg_wsroutes_json(c, r, lpg_wsroutes_is("peek_notifications"));
    }

#undef lpg_wsroutes_is

    return true;
}


/* Odoo's {"status": "pass"} while lpgate is healthy (the rules of
 * <longpolling_path>/health), else 503 and why */
static void
lpg_wsroutes_health(lpg_http_conn_t *c)
{
    int  len;
    bool ok;
    char why[512], body[700];

    ok =
        lpg_shm_healthy(lpg_wsroutes.shm, lpg_time_mono_ms(), why, sizeof(why));

    if (ok) {
        len = snprintf(body, sizeof(body), "{\"status\": \"pass\"}");

    } else {
        json_t *j = json_string(why);
        char   *text = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

        len = snprintf(body, sizeof(body),
                       "{\"status\": \"fail\", \"reason\": %s}",
                       text != NULL ? text : "\"unhealthy\"");
        free(text);
        json_decref(j);
    }

    lpg_http_respond(c, ok ? 200 : 503, "application/json",
                     "Cache-Control: no-store\r\n", body,
                     len > 0 && (size_t) len < sizeof(body) ? (size_t) len : 0);
}


static void
lpg_wsroutes_json(lpg_http_conn_t *c, const lpg_http_request_t *r, bool peek)
{
    int                       rc;
    size_t                    i;
    json_t                   *body, *id, *params;
    const char               *why, *name;
    json_error_t              err;
    lpg_odoo_wsreq_t         *q;
    const lpg_session_info_t *info;

    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    q->conn = c;
    q->peek = peek;
    q->sub.ops = &lpg_wsroutes_ops;
    q->sub.db = lpg_odoo_pick_db(r);
    q->sub.version = lpg_odoo_version(q->sub.db);

    body = json_loadb(r->body, r->body_len, 0, &err);
    id = json_object_get(body, "id");
    q->id = json_dumps(id != NULL ? id : json_null(),
                       JSON_ENCODE_ANY | JSON_COMPACT);
    params = json_object_get(body, "params");

    name = "builtins.TypeError";
    why = NULL;
    rc = LPG_ERROR;

    if (q->id == NULL) {
        why = "out of memory";

    } else if (!json_is_object(body)) {
        why = "Invalid JSON data";
        name = "werkzeug.exceptions.BadRequest";

    } else if (!json_is_object(params)) {
        why = "JSON-RPC: \"params\" must be an object";

    } else if (q->sub.db < 0) {
        why = "404: Not Found (no such database: pass ?db=)";
        name = "werkzeug.exceptions.NotFound";

    } else {
        rc = lpg_wsroutes_parse(q, params, &why);
        if (rc != LPG_OK && strstr(why, "string channels") != NULL) {
            name = "builtins.ValueError";
        }
    }

    json_decref(body);

    if (rc != LPG_OK) {
        lpg_odoo_rpc_error(c, q->sub.version, q->id ? q->id : "null", name,
                           why);
        lpg_wsroutes_free(q);
        return;
    }

    if (q->sub.version < 16) {
        /* Odoo before 16 has no /websocket routes */
        lpg_http_respond(c, 404, NULL, NULL, "404 Not Found\n", 14);
        lpg_wsroutes_free(q);
        return;
    }

    for (i = 0; peek && i < q->nstrings; i++) {
        if (!lpg_session_selector(q->sub.version, q->strings[i],
                                  strlen(q->strings[i]))
            && lpg_odoo_ws_key(&q->sub, lpg_odoo_db_name(q->sub.db),
                               q->strings[i])
                != LPG_OK)
        {
            lpg_odoo_rpc_error(c, q->sub.version, q->id, "builtins.Exception",
                               "a channel is too long");
            lpg_wsroutes_free(q);
            return;
        }
    }

    if (peek
        && lpg_odoo_ws_key(&q->sub, lpg_odoo_db_name(q->sub.db), "broadcast")
            != LPG_OK)
    {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        lpg_wsroutes_free(q);
        return;
    }

    switch (lpg_session_get_for(r, q->sub.db, q->sub.version,
                                (const char *const *) q->strings, q->nstrings,
                                &q->swait, &info))
    {
    case LPG_OK:
        lpg_wsroutes_go(q, info);
        return;

    case LPG_AGAIN:
        q->swait.cb = lpg_wsroutes_session_cb;
        q->waiting = true;
        lpg_http_hold(c, lpg_wsroutes_gone, q);
        return;

    default:
        /* no cookie: the public user */
        lpg_wsroutes_go(q, NULL);
        return;
    }
}


/* peek: channels (strings), last, is_first_poll; update: inactivity_period
 * and im_status_ids_by_model */
static int
lpg_wsroutes_parse(lpg_odoo_wsreq_t *q, json_t *params, const char **why)
{
    size_t  i;
    json_t *channels, *last, *v;

    if (!q->peek) {
        v = json_object_get(params, "inactivity_period");
        q->ids = json_incref(json_object_get(params, "im_status_ids_by_model"));

        if (!json_is_integer(v) || q->ids == NULL) {
            *why = "update_bus_presence() takes \"inactivity_period\" (an "
                   "integer) and \"im_status_ids_by_model\"";
            return LPG_ERROR;
        }

        q->inactivity = json_integer_value(v);
        return LPG_OK;
    }

    channels = json_object_get(params, "channels");
    last = json_object_get(params, "last");

    if (!json_is_array(channels) || !json_is_integer(last)) {
        *why = "peek_notifications() takes \"channels\" (a list) and "
               "\"last\" (an integer)";
        return LPG_ERROR;
    }

    if (json_array_size(channels)
        > (size_t) lpg_wsroutes.conf->max_channels_per_poll)
    {
        *why = "peek_notifications() names more channels than "
               "max_channels_per_poll";
        return LPG_ERROR;
    }

    q->strings = calloc(json_array_size(channels) + 1, sizeof(char *));
    if (q->strings == NULL) {
        *why = "out of memory";
        return LPG_ERROR;
    }

    json_array_foreach(channels, i, v)
    {
        if (!json_is_string(v)) {
            *why = "bus.Bus only string channels are allowed.";
            return LPG_ERROR;
        }

        q->strings[q->nstrings] =
            strndup(json_string_value(v), json_string_length(v));
        if (q->strings[q->nstrings++] == NULL) {
            *why = "out of memory";
            return LPG_ERROR;
        }
    }

    /* is_first_poll: Odoo's is_websocket_session flag is not kept (see
     * lpg_odoo_wsroutes.h) */
    q->sub.last = json_integer_value(last) > 0 ? json_integer_value(last) : 0;

    return LPG_OK;
}


static void
lpg_wsroutes_session_cb(lpg_session_wait_t *w, const lpg_session_info_t *info)
{
    lpg_odoo_wsreq_t *q =
        (lpg_odoo_wsreq_t *) ((char *) w - offsetof(lpg_odoo_wsreq_t, swait));

    q->waiting = false;
    lpg_wsroutes_go(q, info);
}


/* the session is known (info NULL: no cookie; !info->known: Odoo did not
 * answer, served public) */
static void
lpg_wsroutes_go(lpg_odoo_wsreq_t *q, const lpg_session_info_t *info)
{
    if (info != NULL && (!info->known || info->db < 0)) {
        info = NULL;
    }

    if (!q->peek) {
        lpg_wsroutes_update(q, info);
        return;
    }

    if (info != NULL
        && ((info->db != q->sub.db
             && lpg_odoo_switch_db(&q->sub, info->db) != LPG_OK)
            || lpg_odoo_session_keys(&q->sub, info) != LPG_OK))
    {
        lpg_log(LPG_LOG_ERR, 0,
                "peek_notifications: the session's channels could not be "
                "added: served public");
    }

    /* Odoo 16+: a last above the largest bus_bus id (lpg_bus_stale: the
     * largest id allocated, so a row committed but not fetched yet does
     * not count) is a new database's */
    if (lpg_bus_stale(q->sub.db, q->sub.last)) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "peek_notifications: last %lld is above the largest id "
                "%lld: reset to 0",
                (long long) q->sub.last, (long long) lpg_bus_cursor(q->sub.db));
        q->sub.last = 0;
    }

    if (q->sub.last == 0) {
        /* the notifications of the last timeout seconds */
        q->sub.since_us = (int64_t) time(NULL) * 1000000
            - (int64_t) lpg_wsroutes.conf->timeout * 1000000;
    }

    if (lpg_sub_needs_fill(&q->sub)) {
        if (lpg_sub_fill(&q->sub, lpg_wsroutes_filled) != LPG_OK) {
            lpg_http_respond(q->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n",
                             5);
            lpg_wsroutes_free(q);
            return;
        }

        lpg_http_hold(q->conn, lpg_wsroutes_gone, q);
        return;
    }

    lpg_wsroutes_answer(q, NULL, 0, 0);
}


/* presence through the batched writes, then the im_status notification;
 * Odoo answers {} whoever calls */
static void
lpg_wsroutes_update(lpg_odoo_wsreq_t *q, const lpg_session_info_t *info)
{
    int64_t     uid = 0, guest = 0;
    int         db = q->sub.db;
    char        body[128];
    int         len;
    const char *why;

    if (info != NULL) {
        db = info->db;
        uid = info->uid;
        guest = info->uid > 0 ? 0 : info->guest_id;
        /* one presence mark, written with the next batch */
        lpg_presence_release(lpg_presence_hold(db, uid, guest, q->inactivity));
    }

    if (lpg_imstatus_notify(db, lpg_odoo_version(db), uid, guest, q->ids,
                            q->inactivity, &why)
        != LPG_OK)
    {
        lpg_odoo_rpc_error(q->conn, q->sub.version, q->id, "builtins.TypeError",
                           why);
        lpg_wsroutes_free(q);
        return;
    }

    len = snprintf(body, sizeof(body),
                   "{\"jsonrpc\": \"2.0\", \"id\": %s, \"result\": {}}", q->id);
    lpg_http_respond(q->conn, 200, "application/json", lpg_wsroutes_cors, body,
                     len > 0 && (size_t) len < sizeof(body) ? len : 0);
    lpg_wsroutes_free(q);
}


static void
lpg_wsroutes_filled(lpg_sub_t *s, const lpg_bus_rec_t *rows, size_t n,
                    int64_t bound, bool ok)
{
    lpg_odoo_wsreq_t *q = (lpg_odoo_wsreq_t *) s;

    if (!ok) {
        lpg_log(LPG_LOG_INFO, 0,
                "backfill failed, peek answered from the history only");
        lpg_wsroutes_answer(q, NULL, 0, 0);
        return;
    }

    lpg_wsroutes_answer(q, rows, n, bound);
}


/* {"channels": [keys], "notifications": [{"id", "message"}]} */
static void
lpg_wsroutes_answer(lpg_odoo_wsreq_t *q, const lpg_bus_rec_t *rows, size_t n,
                    int64_t bound)
{
    int             rc;
    size_t          i;
    lpg_buf_t       list, out;
    lpg_odoo_list_t l;

    memset(&list, 0, sizeof(list));
    memset(&out, 0, sizeof(out));
    lpg_odoo_list_init(&l, &list, q->sub.version);

    (void) lpg_sub_rows(&q->sub, rows, n, lpg_odoo_list_add, &l);
    (void) lpg_sub_history(&q->sub, bound, lpg_odoo_list_add, &l);

    rc = l.failed ? LPG_ERROR : LPG_OK;
    rc = rc ?: lpg_buf_append_str(&out, "{\"jsonrpc\": \"2.0\", \"id\": ");
    rc = rc ?: lpg_buf_append_str(&out, q->id);
    rc = rc ?: lpg_buf_append_str(&out, ", \"result\": {\"channels\": [");

    for (i = 0; i < q->sub.nkeys; i++) {
        rc = rc ?: (i > 0 ? lpg_buf_append(&out, ", ", 2) : LPG_OK);
        rc = rc ?: lpg_buf_append(&out, q->sub.keys[i], q->sub.key_lens[i]);
    }

    rc = rc ?: lpg_buf_append_str(&out, "], \"notifications\": [");
    rc = rc ?: (list.len ? lpg_buf_append(&out, list.data, list.len) : LPG_OK);
    rc = rc ?: lpg_buf_append_str(&out, "]}}");

    if (rc != LPG_OK) {
        lpg_http_respond(q->conn, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);

    } else {
        lpg_http_respond(q->conn, 200, "application/json", lpg_wsroutes_cors,
                         out.data, out.len);
    }

    lpg_buf_free(&list);
    lpg_buf_free(&out);
    lpg_wsroutes_free(q);
}


static void
lpg_wsroutes_gone(void *data)
{
    lpg_odoo_wsreq_t *q = data;

    if (q->waiting) {
        lpg_session_cancel(&q->swait);
    }

    lpg_wsroutes_free(q);
}


static void
lpg_wsroutes_free(lpg_odoo_wsreq_t *q)
{
    size_t i;

    /* cancels a backfill, frees the keys */
    lpg_sub_release(&q->sub);

    for (i = 0; i < q->nstrings; i++) {
        free(q->strings[i]);
    }

    free(q->strings);
    json_decref(q->ids);
    free(q->id);
    free(q);
}
