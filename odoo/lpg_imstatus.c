/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_imstatus.c: the im_status route (see lpg_imstatus.h).
 *
 * A request is parsed at once (the partner ids are copied), then waits
 * for its session and for one statement through the worker's pool; it
 * owns its SQL text and request id until it is answered or its client
 * goes away.
 */

#include "lpg_imstatus.h"
#include "lpg_backfill.h"
#include "lpg_json.h"
#include "lpg_odoo_db.h"
#include "lpg_odoo_poll.h"
#include "lpg_session.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    lpg_backfill_req_t req; /* first: the callback casts back */
    lpg_session_wait_t swait;
    lpg_http_conn_t   *conn;
    char              *id;
    char              *sql;
    int                db;
    int                version;
    bool               waiting;  /* for the session */
    bool               querying; /* in the pool */
} lpg_imstatus_t;


static int  lpg_imstatus_sql(lpg_imstatus_t *s, json_t *ids, const char **why);
static void lpg_imstatus_session(lpg_session_wait_t       *w,
                                 const lpg_session_info_t *info);
static void lpg_imstatus_go(lpg_imstatus_t *s, const lpg_session_info_t *info);
static void lpg_imstatus_rows(lpg_backfill_req_t  *req,
                              const lpg_bus_rec_t *rows, size_t n,
                              int64_t bound, bool ok);
static void lpg_imstatus_gone(void *data);
static void lpg_imstatus_free(lpg_imstatus_t *s);


void
lpg_imstatus_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int                       rc;
    json_t                   *body, *params, *ids, *id;
    const char               *why;
    json_error_t              e;
    lpg_imstatus_t           *s;
    const lpg_session_info_t *info;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);
        return;
    }

    s->conn = c;
    s->db = lpg_odoo_pick_db(r);
    s->version = lpg_odoo_version(s->db);

    body = json_loadb(r->body, r->body_len, 0, &e);
    id = json_object_get(body, "id");
    s->id = id != NULL ? json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    params = json_object_get(body, "params");
    ids = json_object_get(params, "partner_ids");

    why = NULL;
    if (!json_is_object(body)) {
        why = "Invalid JSON data";

    } else if (!json_is_object(params)) {
        why = "JSON-RPC: \"params\" must be an object";

    } else if (s->db < 0) {
        why = "404: Not Found (no such database: pass ?db=)";
    }

    rc = why == NULL ? lpg_imstatus_sql(s, ids, &why) : LPG_ERROR;
    json_decref(body);

    if (rc != LPG_OK) {
        lpg_odoo_rpc_error(c, s->version, s->id ? s->id : "null",
                           s->db < 0 ? "werkzeug.exceptions.NotFound"
                                     : "builtins.TypeError",
                           why);
        lpg_imstatus_free(s);
        return;
    }

    switch (lpg_session_get(r, s->db, s->version, &s->swait, &info)) {
    case LPG_OK:
        lpg_imstatus_go(s, info);
        return;

    case LPG_AGAIN:
        s->swait.cb = lpg_imstatus_session;
        s->waiting = true;
        lpg_http_hold(c, lpg_imstatus_gone, s);
        return;

    default:
        lpg_imstatus_go(s, NULL);
        return;
    }
}


/* Odoo's im_status query (bus/models/res_partner.py) for ids, plus the
 * partners without a user (im_partner) and OdooBot (mail's "bot") */
static int
lpg_imstatus_sql(lpg_imstatus_t *s, json_t *ids, const char **why)
{
    int       rc;
    char      num[32];
    size_t    i;
    json_t   *v;
    lpg_buf_t list, q;

    if (!json_is_array(ids)) {
        *why = "im_status() \"partner_ids\" must be a list of integers";
        return LPG_ERROR;
    }

    if (json_array_size(ids) > (size_t) lpg_http_conf()->max_channels_per_poll)
    {
        *why = "im_status() names more partners than max_channels_per_poll";
        return LPG_ERROR;
    }

    memset(&list, 0, sizeof(list));
    memset(&q, 0, sizeof(q));
    rc = lpg_buf_append_str(&list, "0");

    json_array_foreach(ids, i, v)
    {
        if (!json_is_integer(v)) {
            lpg_buf_free(&list);
            *why = "im_status() \"partner_ids\" must be a list of integers";
            return LPG_ERROR;
        }

        snprintf(num, sizeof(num), ",%lld", (long long) json_integer_value(v));
        rc = rc ?: lpg_buf_append_str(&list, num);
    }

    rc = rc ?: lpg_buf_append(&list, "", 1);

    rc = rc
        ?: lpg_buf_append_str(
            &q,
            "SELECT P.id, CASE WHEN P.id = (SELECT res_id FROM "
            "ir_model_data WHERE module = 'base' AND name = "
            "'partner_root') THEN 'bot' ELSE COALESCE(S.status, "
            "'im_partner') END FROM res_partner P LEFT JOIN (SELECT "
            "U.partner_id AS id, CASE WHEN max(B.last_poll) IS NULL THEN "
            "'offline' WHEN age(now() AT TIME ZONE 'UTC', "
            "max(B.last_poll)) > interval '55 seconds' THEN 'offline' "
            "WHEN age(now() AT TIME ZONE 'UTC', max(B.last_presence)) > "
            "interval '1800 seconds' THEN 'away' ELSE 'online' END AS "
            "status FROM bus_presence B RIGHT JOIN res_users U ON "
            "B.user_id = U.id WHERE U.partner_id IN (");
    rc = rc ?: lpg_buf_append_str(&q, list.data);
    rc = rc
        ?: lpg_buf_append_str(&q,
                              ") AND U.active = 't' GROUP BY "
                              "U.partner_id) S ON S.id = P.id WHERE P.id "
                              "IN (");
    rc = rc ?: lpg_buf_append_str(&q, list.data);
    rc = rc ?: lpg_buf_append_str(&q, ") ORDER BY P.display_name, P.id DESC");
    rc = rc ?: lpg_buf_append(&q, "", 1);

    lpg_buf_free(&list);

    if (rc != LPG_OK) {
        lpg_buf_free(&q);
        *why = "out of memory";
        return LPG_ERROR;
    }

    s->sql = q.data;

    return LPG_OK;
}


static void
lpg_imstatus_session(lpg_session_wait_t *w, const lpg_session_info_t *info)
{
    lpg_imstatus_t *s =
        (lpg_imstatus_t *) ((char *) w - offsetof(lpg_imstatus_t, swait));

    s->waiting = false;
    lpg_imstatus_go(s, info);
}


/* auth="user": only a logged-in session Odoo vouches for */
static void
lpg_imstatus_go(lpg_imstatus_t *s, const lpg_session_info_t *info)
{
    if (info != NULL && !info->known) {
        lpg_odoo_rpc_error(s->conn, s->version, s->id ? s->id : "null",
                           "builtins.Exception",
                           "Odoo did not answer who this session is; try "
                           "again");
        lpg_imstatus_free(s);
        return;
    }

    if (info == NULL || info->uid <= 0 || info->db != s->db) {
        lpg_odoo_rpc_fail(s->conn, s->version, s->id ? s->id : "null", 100,
                          "Odoo Session Expired",
                          "odoo.http.SessionExpiredException",
                          "Session expired");
        lpg_imstatus_free(s);
        return;
    }

    s->req.db = s->db;
    s->req.sql = s->sql;
    s->req.cb = lpg_imstatus_rows;
    s->querying = true;
    lpg_http_hold(s->conn, lpg_imstatus_gone, s);
    lpg_backfill_queue(&s->req);
}


static void
lpg_imstatus_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
                  int64_t bound, bool ok)
{
    int             i, nrows;
    char           *text, *body;
    size_t          len;
    json_t         *list, *item;
    lpg_imstatus_t *s = (lpg_imstatus_t *) req;

    s->querying = false;

    if (!ok || req->res == NULL) {
        lpg_odoo_rpc_error(s->conn, s->version, s->id ? s->id : "null",
                           "psycopg2.Error",
                           "im_status: the database did not answer");
        lpg_imstatus_free(s);
        return;
    }

    list = json_array();
    nrows = PQntuples(req->res);

    for (i = 0; list != NULL && i < nrows; i++) {
        item = json_pack("{s:I, s:s}", "id",
                         (json_int_t) atoll(PQgetvalue(req->res, i, 0)),
                         "im_status", PQgetvalue(req->res, i, 1));
        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            list = NULL;
        }
    }

    text = list != NULL ? json_dumps(list, JSON_PRESERVE_ORDER | JSON_COMPACT)
                        : NULL;
    json_decref(list);

    len = text != NULL ? strlen(text) + 64 + strlen(s->id ? s->id : "null") : 0;
    body = text != NULL ? malloc(len) : NULL;

    if (body == NULL) {
        free(text);
        lpg_http_respond(s->conn, 500, NULL, NULL, "error\n", 6);
        lpg_imstatus_free(s);
        return;
    }

    len = (size_t) snprintf(body, len,
                            "{\"jsonrpc\": \"2.0\", \"id\": %s, "
                            "\"result\": %s}",
                            s->id ? s->id : "null", text);

    lpg_http_respond(s->conn, 200, "application/json", NULL, body, len);
    free(body);
    free(text);
    lpg_imstatus_free(s);
}


static void
lpg_imstatus_gone(void *data)
{
    lpg_imstatus_t *s = data;

    if (s->waiting) {
        lpg_session_cancel(&s->swait);
    }

    if (s->querying) {
        lpg_backfill_cancel(&s->req);
    }

    lpg_imstatus_free(s);
}


static void
lpg_imstatus_free(lpg_imstatus_t *s)
{
    free(s->id);
    free(s->sql);
    free(s);
}
