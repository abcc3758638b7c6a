/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_imstatus.c: the im_status route (see lpg_imstatus.h).
 *
 * A request is parsed at once (the partner ids are copied), then waits
 * for its session and for one statement through the worker's pool; it
 * owns its SQL text and request id until it is answered or its client
 * goes away.  A notification (16+) owns itself: two statements through
 * the pool (the statuses, then the INSERT and NOTIFY), then it is freed.
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


/* an im_status notification being computed and sent (16+) */
typedef struct {
    lpg_backfill_req_t req; /* first: the statuses */
    lpg_backfill_req_t ins; /* the INSERT and NOTIFY */
    char              *sql;
    char              *ins_sql;
    int                db;
    int                version;
    int64_t            uid;
    int64_t            guest;
    bool               partners; /* asked for: the 16 payload's keys */
    bool               guests;
} lpg_imstatus_note_t;


static int  lpg_imstatus_sql(lpg_imstatus_t *s, json_t *ids, const char **why);
static int  lpg_imstatus_partner_sql(lpg_buf_t *q, const char *ids,
                                     const char *order, const char *own);
static void lpg_imstatus_session(lpg_session_wait_t       *w,
                                 const lpg_session_info_t *info);
static void lpg_imstatus_go(lpg_imstatus_t *s, const lpg_session_info_t *info);
static void lpg_imstatus_rows(lpg_backfill_req_t  *req,
                              const lpg_bus_rec_t *rows, size_t n,
                              int64_t bound, bool ok);
static void lpg_imstatus_gone(void *data);
static void lpg_imstatus_free(lpg_imstatus_t *s);
static int  lpg_imstatus_ids(lpg_buf_t *list, const json_t *ids, size_t *n);
static void lpg_imstatus_note_rows(lpg_backfill_req_t  *req,
                                   const lpg_bus_rec_t *rows, size_t n,
                                   int64_t bound, bool ok);
static void lpg_imstatus_note_sent(lpg_backfill_req_t  *req,
                                   const lpg_bus_rec_t *rows, size_t n,
                                   int64_t bound, bool ok);
static int  lpg_imstatus_literal(lpg_buf_t *b, const char *text, size_t len);
static void lpg_imstatus_note_free(lpg_imstatus_note_t *t);


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
    /* 14/15: res.partner's order (display_name is stored there) */
    rc = rc
        ?: lpg_imstatus_partner_sql(&q, list.data, "P.display_name, P.id DESC",
                                    "");
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


/*
 * Odoo's im_status of the partners ids ("0,3,7": SQL integers), the
 * partners without a user (im_partner) and OdooBot (mail's "bot"); own:
 * "" or a "WHEN P.id = ... THEN '<status>' " case put first (the caller's
 * own status, fresher than its batched presence row), ordered by order
 * (SQL).  Rows (id, status).
 */
static int
lpg_imstatus_partner_sql(lpg_buf_t *q, const char *ids, const char *order,
                         const char *own)
{
    int rc;

    rc = lpg_buf_append_str(q, "SELECT P.id, CASE ");
    rc = rc ?: lpg_buf_append_str(q, own);
    rc = rc
        ?: lpg_buf_append_str(
            q,
            "WHEN P.id = (SELECT res_id FROM "
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
    rc = rc ?: lpg_buf_append_str(q, ids);
    rc = rc
        ?: lpg_buf_append_str(q,
                              ") AND U.active = 't' GROUP BY "
                              "U.partner_id) S ON S.id = P.id WHERE P.id "
                              "IN (");
    rc = rc ?: lpg_buf_append_str(q, ids);
    rc = rc ?: lpg_buf_append_str(q, ") ORDER BY ");
    rc = rc ?: lpg_buf_append_str(q, order);

    return rc;
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


int
lpg_imstatus_notify(int db, int version, int64_t uid, int64_t guest,
                    const json_t *ids_by_model, int64_t inactivity_ms,
                    const char **why)
{
    int                  rc;
    char                 own[160];
    size_t               n = 0;
    const char          *fresh;
    const json_t        *partners, *guests;
    lpg_buf_t            plist, glist, q;
    lpg_imstatus_note_t *t;

    *why = "im_status_ids_by_model must be an object of lists of integers";

    if (ids_by_model != NULL && json_is_null(ids_by_model)) {
        return LPG_OK;
    }

    if (!json_is_object(ids_by_model)) {
        return LPG_ERROR;
    }

    partners = json_object_get(ids_by_model, "res.partner");
    guests = json_object_get(ids_by_model, "mail.guest");

    memset(&plist, 0, sizeof(plist));
    memset(&glist, 0, sizeof(glist));
    memset(&q, 0, sizeof(q));

    rc = lpg_imstatus_ids(&plist, partners, &n);
    rc = rc ?: lpg_imstatus_ids(&glist, guests, &n);

    if (rc != LPG_OK || db < 0 || (uid <= 0 && guest <= 0) || n == 0) {
        /* bad input, or nothing to say to nobody */
        lpg_buf_free(&plist);
        lpg_buf_free(&glist);
        return rc;
    }

    if (n > (size_t) lpg_http_conf()->max_channels_per_poll) {
        lpg_buf_free(&plist);
        lpg_buf_free(&glist);
        *why = "im_status_ids_by_model names more ids than "
               "max_channels_per_poll";
        return LPG_ERROR;
    }

    fresh = inactivity_ms > 1800 * 1000 ? "away" : "online";

    own[0] = '\0';
    if (uid > 0) {
        snprintf(own, sizeof(own),
                 "WHEN P.id = (SELECT partner_id FROM res_users WHERE id = "
                 "%lld) THEN '%s' ",
                 (long long) uid, fresh);
    }

    rc = lpg_buf_append_str(&q, "SELECT 'partner', p.* FROM (");
    /* 16+: no order to keep (17's res_partner has no display_name) */
    rc = rc ?: lpg_imstatus_partner_sql(&q, plist.data, "P.id", own);
    rc = rc ?: lpg_buf_append_str(&q, ") p");

    if (guests != NULL) {
        snprintf(own, sizeof(own), "WHEN G.id = %lld THEN '%s' ",
                 (long long) (uid > 0 ? 0 : guest), fresh);
        rc = rc
            ?: lpg_buf_append_str(&q, " UNION ALL SELECT 'guest', G.id, CASE ");
        rc = rc ?: lpg_buf_append_str(&q, own);
        rc = rc
            ?: lpg_buf_append_str(
                &q,
                "WHEN max(B.last_poll) IS NULL THEN 'offline' WHEN "
                "age(now() AT TIME ZONE 'UTC', max(B.last_poll)) > interval "
                "'55 seconds' THEN 'offline' WHEN age(now() AT TIME ZONE "
                "'UTC', max(B.last_presence)) > interval '1800 seconds' THEN "
                "'away' ELSE 'online' END FROM mail_guest G LEFT JOIN "
                "bus_presence B ON B.guest_id = G.id WHERE G.id IN (");
        rc = rc ?: lpg_buf_append_str(&q, glist.data);
        rc = rc ?: lpg_buf_append_str(&q, ") GROUP BY G.id");
    }

    if (uid > 0) {
        snprintf(own, sizeof(own),
                 " UNION ALL SELECT 'me', partner_id, '' FROM res_users "
                 "WHERE id = %lld",
                 (long long) uid);
        rc = rc ?: lpg_buf_append_str(&q, own);
    }

    rc = rc ?: lpg_buf_append(&q, "", 1);
    lpg_buf_free(&plist);
    lpg_buf_free(&glist);

    t = rc == LPG_OK ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL) {
        lpg_buf_free(&q);
        *why = "out of memory";
        return LPG_ERROR;
    }

    t->sql = q.data;
    t->db = db;
    t->version = version;
    t->uid = uid;
    t->guest = uid > 0 ? 0 : guest;
    t->partners = partners != NULL;
    t->guests = guests != NULL;
    t->req.db = db;
    t->req.sql = t->sql;
    t->req.cb = lpg_imstatus_note_rows;
    lpg_backfill_queue(&t->req);

    return LPG_OK;
}


/* "0,<id>,...", NUL-terminated, of the integers in ids (a list, or
 * absent); n counts them */
static int
lpg_imstatus_ids(lpg_buf_t *list, const json_t *ids, size_t *n)
{
    int           rc;
    char          num[32];
    size_t        i;
    const json_t *v;

    if (ids != NULL && !json_is_array(ids)) {
        return LPG_ERROR;
    }

    rc = lpg_buf_append_str(list, "0");

    json_array_foreach(ids, i, v)
    {
        if (!json_is_integer(v)) {
            return LPG_ERROR;
        }

        snprintf(num, sizeof(num), ",%lld", (long long) json_integer_value(v));
        rc = rc ?: lpg_buf_append_str(list, num);
        (*n)++;
    }

    return rc ?: lpg_buf_append(list, "", 1);
}


/* the statuses are in: the notification of the version's shape */
static void
lpg_imstatus_note_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                       size_t n, int64_t bound, bool ok)
{
    int                  i, nrows, rc;
    json_t              *msg, *ps, *gs, *item;
    lpg_buf_t            ch, text, q;
    const char          *type;
    int64_t              partner = 0;
    lpg_imstatus_note_t *t = (lpg_imstatus_note_t *) req;
    const char          *db = lpg_odoo_db_name(t->db);

    if (!ok || req->res == NULL) {
        lpg_log(LPG_LOG_WARN, 0,
                "im_status of database \"%s\" could not be read: no "
                "notification sent",
                db);
        lpg_imstatus_note_free(t);
        return;
    }

    nrows = PQntuples(req->res);

    ps = json_array();
    gs = t->version >= 17 ? ps : json_array();

    for (i = 0; i < nrows && ps != NULL && gs != NULL; i++) {
        type = PQgetvalue(req->res, i, 0);

        if (type[0] == 'm') {
            /* "me": the caller's partner, whose channel gets it */
            partner = atoll(PQgetvalue(req->res, i, 1));
            continue;
        }

        item = json_pack("{s:I, s:s}", "id",
                         (json_int_t) atoll(PQgetvalue(req->res, i, 1)),
                         "im_status", PQgetvalue(req->res, i, 2));

        if (item != NULL && t->version >= 17) {
            json_object_set_new(item, "type", json_string(type));
        }

        if (item == NULL
            || json_array_append_new(type[0] == 'p' ? ps : gs, item) != 0) {
            break;
        }
    }

    if (t->version >= 17) {
        msg = json_pack("{s:s, s:{s:o}}", "type", "mail.record/insert",
                        "payload", "Persona", ps);

    } else {
        msg = json_pack("{s:s, s:{}}", "type", "bus/im_status", "payload");
        if (msg != NULL && t->partners) {
            json_object_set(json_object_get(msg, "payload"), "partners", ps);
        }
        if (msg != NULL && t->guests) {
            json_object_set(json_object_get(msg, "payload"), "guests", gs);
        }
        json_decref(ps);
        json_decref(gs);
    }

    memset(&ch, 0, sizeof(ch));
    memset(&text, 0, sizeof(text));
    memset(&q, 0, sizeof(q));

    item = t->uid > 0
        ? json_pack("[ssI]", db, "res.partner", (json_int_t) partner)
        : json_pack("[ssI]", db, "mail.guest", (json_int_t) t->guest);

    if ((t->uid > 0 && partner == 0) || nrows <= (t->uid > 0 ? 1 : 0)) {
        /* a user without a partner row, or no id known: nothing said */
        json_decref(msg);
        json_decref(item);
        lpg_imstatus_note_free(t);
        return;
    }

    rc = msg != NULL && item != NULL ? LPG_OK : LPG_ERROR;
    rc = rc ?: lpg_json_dump(&text, msg);
    rc = rc ?: lpg_json_dump(&ch, item);
    rc = rc
        ?: lpg_buf_append_str(&q,
                              "WITH i AS (INSERT INTO bus_bus "
                              "(channel, message, create_date, "
                              "write_date) VALUES (");
    rc = rc ?: lpg_imstatus_literal(&q, ch.data, ch.len);
    rc = rc ?: lpg_buf_append_str(&q, ", ");
    rc = rc ?: lpg_imstatus_literal(&q, text.data, text.len);
    rc = rc
        ?: lpg_buf_append_str(&q,
                              ", now() AT TIME ZONE 'UTC', now() AT TIME "
                              "ZONE 'UTC') RETURNING id) SELECT id, "
                              "pg_notify(");
    rc = rc
        ?: lpg_imstatus_literal(&q, lpg_http_conf()->listen_channel,
                                strlen(lpg_http_conf()->listen_channel));
    rc = rc ?: lpg_buf_append_str(&q, ", '[' || ");
    rc = rc ?: lpg_imstatus_literal(&q, ch.data, ch.len);
    rc = rc ?: lpg_buf_append_str(&q, " || ']') FROM i");
    rc = rc ?: lpg_buf_append(&q, "", 1);

    json_decref(msg);
    json_decref(item);
    lpg_buf_free(&ch);
    lpg_buf_free(&text);

    if (rc != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "im_status notification: out of memory");
        lpg_buf_free(&q);
        lpg_imstatus_note_free(t);
        return;
    }

    t->ins_sql = q.data;
    t->ins.db = t->db;
    t->ins.sql = t->ins_sql;
    t->ins.cb = lpg_imstatus_note_sent;
    lpg_backfill_queue(&t->ins);
}


static void
lpg_imstatus_note_sent(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                       size_t n, int64_t bound, bool ok)
{
    lpg_imstatus_note_t *t =
        (lpg_imstatus_note_t *) ((char *) req
                                 - offsetof(lpg_imstatus_note_t, ins));

    if (!ok) {
        lpg_log(LPG_LOG_WARN, 0,
                "im_status notification of database \"%s\" not sent: the "
                "database did not take it",
                lpg_odoo_db_name(t->db));

    } else {
        lpg_log(LPG_LOG_DEBUG, 0,
                "im_status notification sent to %s %lld of database \"%s\"",
                t->uid > 0 ? "user" : "guest",
                (long long) (t->uid > 0 ? t->uid : t->guest),
                lpg_odoo_db_name(t->db));
        /* this node's master fetches now; the NOTIFY tells the others */
        lpg_http_kick();
    }

    lpg_imstatus_note_free(t);
}


/* 'text' with single quotes doubled (standard_conforming_strings) */
static int
lpg_imstatus_literal(lpg_buf_t *b, const char *text, size_t len)
{
    size_t i;

    if (lpg_buf_append(b, "'", 1) != LPG_OK) {
        return LPG_ERROR;
    }

    for (i = 0; i < len; i++) {
        if ((text[i] == '\'' && lpg_buf_append(b, "'", 1) != LPG_OK)
            || lpg_buf_append(b, &text[i], 1) != LPG_OK)
        {
            return LPG_ERROR;
        }
    }

    return lpg_buf_append(b, "'", 1);
}


static void
lpg_imstatus_note_free(lpg_imstatus_note_t *t)
{
    free(t->sql);
    free(t->ins_sql);
    free(t);
}
