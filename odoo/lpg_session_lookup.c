/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session_lookup.c: asking Odoo who a session is.
 *
 * The worker that holds an entry's claim runs its lookup, a small state
 * machine: the contrib/odoo addon's /lpgate/session route (uid, database,
 * guest and every channel), else /web/session/get_session_info and one SQL
 * statement through the worker's pool (lpg_backfill.h) for the core
 * channels.  The entry owns the request text until lpg_session_done().
 */

#include "lpg_session_int.h"
#include "lpg_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int  lpg_session_ask(lpg_session_t *e);
static void lpg_session_answer(lpg_odoo_req_t *req, int status,
                               const char *body, size_t len);
static int  lpg_session_addon(lpg_session_t *e, json_t *result);
static int  lpg_session_info(lpg_session_t *e, json_t *root);
static bool lpg_session_db(lpg_session_t *e, const char *dbname);
static bool lpg_session_public(const lpg_session_t *e);
static int  lpg_session_query(lpg_session_t *e, int64_t uid);
static int  lpg_session_query17(lpg_session_t *e, int64_t uid, lpg_buf_t *b);
static void lpg_session_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                             size_t n, int64_t bound, bool ok);
static int  lpg_session_add_key(lpg_session_t *e, const json_t *channel);
static int  lpg_session_add_rec(lpg_session_t *e, const char *model, int64_t id,
                                const char *sub);
static void lpg_session_source(int db, bool addon);


/* this worker holds e's claim: it asks Odoo for every worker; on a
 * failure to even start, e is done (public, asked again later) */
int
lpg_session_lookup(lpg_session_t *e)
{
    e->claimed = true;
    atomic_fetch_add_explicit(&lpg_sess.stats->session_lookups, 1,
                              memory_order_relaxed);

    if (lpg_session_ask(e) != LPG_OK) {
        lpg_session_done(e, false);
        return LPG_ERROR;
    }

    return LPG_OK;
}


/* sends the request of e's step; 16+'s addon gets the client's strings */
static int
lpg_session_ask(lpg_session_t *e)
{
    int         rc;
    lpg_buf_t   b;
    const char *list = e->requested != NULL ? e->requested : "[]";

    e->odoo.cb = lpg_session_answer;
    memset(&b, 0, sizeof(b));

    rc = lpg_buf_append_str(&b,
                            "{\"jsonrpc\":\"2.0\",\"method\":\"call\","
                            "\"id\":null,\"params\":{");
    if (e->step == LPG_SESSION_ADDON && e->version >= 16) {
        rc = rc ?: lpg_buf_append_str(&b, "\"channels\":");
        rc = rc ?: lpg_buf_append_str(&b, list);
    }
    rc = rc ?: lpg_buf_append_str(&b, "}}");

    rc = rc
        ?: lpg_odoo_post(
            &e->odoo,
            e->step == LPG_SESSION_ADDON ? "/lpgate/session"
                                         : "/web/session/get_session_info",
            e->host, e->host_len, e->cookie, strlen(e->cookie), b.data, b.len);
    lpg_buf_free(&b);

    return rc;
}


static void
lpg_session_answer(lpg_odoo_req_t *req, int status, const char *body,
                   size_t len)
{
    int            rc;
    int64_t        off;
    json_t        *root, *result;
    json_error_t   err;
    lpg_session_t *e = lpg_session_of(req, odoo);

    if (e->step == LPG_SESSION_ADDON && (status == 404 || status == 200)) {
        lpg_session_source(e->db, status == 200);
    }

    if (status == 404 && e->step == LPG_SESSION_ADDON) {
        /* no lpgate_bus addon: Odoo's own routes and the built-in SQL */
        off = (int64_t) lpg_sess.conf->session_ttl * 1000;
        lpg_sess.addon_off_until[e->db] = lpg_time_mono_ms()
            + (off < LPG_SESSION_ADDON_OFF ? off : LPG_SESSION_ADDON_OFF);
        e->step = LPG_SESSION_INFO;

        if (lpg_session_ask(e) != LPG_OK) {
            lpg_session_done(e, false);
        }

        return;
    }

    if (status == 404) {
        /* Odoo has no database for this Host: it would not know the
         * session either */
        lpg_session_done(e, true);
        return;
    }

    if (status != 200) {
        if (status != 0) {
            lpg_log(LPG_LOG_WARN, 0,
                    "odoo_url answered a session lookup with HTTP %d", status);
        }

        lpg_session_done(e, false);
        return;
    }

    root = json_loadb(body, len, 0, &err);
    result = json_object_get(root, "result");

    if (e->step == LPG_SESSION_ADDON) {
        rc = json_is_object(result) ? lpg_session_addon(e, result) : LPG_ERROR;

    } else {
        rc = lpg_session_info(e, root);
    }

    json_decref(root);

    if (rc == LPG_ERROR) {
        lpg_log(LPG_LOG_WARN, 0,
                "odoo_url answered a session lookup with something else "
                "than a session: %.*s",
                (int) (len > 200 ? 200 : len), body);
        lpg_session_done(e, false);

    } else if (rc == LPG_OK) {
        lpg_session_done(e, true);
    }

    /* LPG_AGAIN: the SQL step runs */
}


/* the addon's {"uid", "db", "guest_id", "channels": [...]} */
static int
lpg_session_addon(lpg_session_t *e, json_t *result)
{
    size_t      i;
    json_t     *ch, *channels, *db, *uid, *guest;
    const char *dbname;

    channels = json_object_get(result, "channels");
    db = json_object_get(result, "db");
    uid = json_object_get(result, "uid");
    guest = json_object_get(result, "guest_id");

    if (!json_is_array(channels)) {
        return LPG_ERROR;
    }

    dbname = json_is_string(db) ? json_string_value(db) : "";
    if (!lpg_session_db(e, dbname)) {
        return LPG_OK;
    }

    e->info.uid = json_is_integer(uid) ? json_integer_value(uid) : 0;
    e->info.guest_id = json_is_integer(guest) ? json_integer_value(guest) : 0;

    json_array_foreach(channels, i, ch)
    {
        if (lpg_session_add_key(e, ch) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/* get_session_info's answer; LPG_AGAIN when the SQL step was started */
static int
lpg_session_info(lpg_session_t *e, json_t *root)
{
    json_t     *result, *uid, *db;
    int64_t     u;
    const char *dbname;

    result = json_object_get(root, "result");

    if (!json_is_object(result)) {
        if (json_is_object(json_object_get(root, "error"))) {
            /* "Odoo Session Expired" and the like: not logged in, maybe
             * a guest */
            e->info.db = e->db;
            return lpg_session_public(e) && lpg_session_query(e, 0) == LPG_OK
                ? LPG_AGAIN
                : LPG_OK;
        }

        return LPG_ERROR;
    }

    uid = json_object_get(result, "uid");
    db = json_object_get(result, "db");
    u = json_is_integer(uid) ? json_integer_value(uid) : 0;
    dbname = json_is_string(db) ? json_string_value(db) : "";

    if (u > 0 && !lpg_session_db(e, dbname)) {
        return LPG_OK;
    }

    if (u <= 0) {
        e->info.db = e->db;
    }

    if (u <= 0 && !lpg_session_public(e)) {
        return LPG_OK;
    }

    return lpg_session_query(e, u) == LPG_OK ? LPG_AGAIN : LPG_ERROR;
}


/*
 * The session's database, dbname, as Odoo takes it (request.db is the
 * session's, whatever the Host or ?db= chose): e->info.db, and the SQL
 * step's version, become that database's when lpgate serves it.  False,
 * logged: a database lpgate does not serve, the session is served public.
 */
static bool
lpg_session_db(lpg_session_t *e, const char *dbname)
{
    int db, v;

    db = lpg_shm_find_db(lpg_sess.shm, dbname, strlen(dbname));
    if (db < 0) {
        lpg_log(LPG_LOG_INFO, 0,
                "session of database \"%s\" polled for \"%s\", a database "
                "lpgate does not serve: served public",
                dbname, lpg_sess.shm->dbs[e->db].name);
        return false;
    }

    if (db != e->db) {
        lpg_log(LPG_LOG_INFO, 0,
                "session of database \"%s\" polled for \"%s\": served "
                "from \"%s\", as Odoo does",
                dbname, lpg_sess.shm->dbs[e->db].name, dbname);
        v = atomic_load(&lpg_sess.shm->dbs[db].version);
        e->version = v != 0 ? v : e->version;
    }

    e->info.db = db;

    return true;
}


/* not logged in: a guest (dgid), or on 17+ strings that select records
 * (a guest token, public channels) */
static bool
lpg_session_public(const lpg_session_t *e)
{
    return e->guest != 0 || (e->version >= 17 && e->requested != NULL);
}


/*
 * The built-in recipe, per series: the user's partner and the channels it
 * is a member of, or (15+, not logged in) the guest whose token matches
 * and its channels; 17+ as mail's ir.websocket: discuss.channel members
 * and the channels asked for by discuss.channel_<id>, under mail's record
 * rule (a private channel for its members only, a public one for the
 * members of its group_public_id), the "members" sub-channel of those not
 * asked for, the guest of dgid or of a mail.guest_<token> string; 18 adds
 * the user's groups.  Rows are (model, id[, sub]).  Values are integers
 * and checked tokens: no quoting issue.
 */
static int
lpg_session_query(lpg_session_t *e, int64_t uid)
{
    int       rc;
    char      sql[2048];
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    if (e->version >= 17) {
        rc = lpg_session_query17(e, uid, &b);

    } else {
        const char *mem =
            e->version >= 16 ? "mail_channel_member" : "mail_channel_partner";

        if (uid > 0) {
            rc = snprintf(sql, sizeof(sql),
                          "SELECT 'res.partner', partner_id FROM res_users "
                          "WHERE id = %lld UNION ALL "
                          "SELECT 'mail.channel', m.channel_id "
                          "FROM %s m JOIN res_users u "
                          "ON u.partner_id = m.partner_id "
                          "WHERE u.id = %lld AND m.channel_id IS NOT NULL",
                          (long long) uid, mem, (long long) uid);

        } else {
            rc = snprintf(sql, sizeof(sql),
                          "SELECT 'mail.guest', id FROM mail_guest "
                          "WHERE id = %lld AND access_token = '%s' UNION ALL "
                          "SELECT 'mail.channel', m.channel_id "
                          "FROM %s m JOIN mail_guest g "
                          "ON g.id = m.guest_id WHERE g.id = %lld "
                          "AND g.access_token = '%s' "
                          "AND m.channel_id IS NOT NULL",
                          (long long) e->guest, e->guest_token, mem,
                          (long long) e->guest, e->guest_token);
        }

        rc = rc < 0 || (size_t) rc >= sizeof(sql) ? LPG_ERROR
                                                  : lpg_buf_append_str(&b, sql);
    }

    rc = rc ?: lpg_buf_append(&b, "", 1);

    if (rc != LPG_OK) {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    e->sql = b.data;
    e->info.uid = uid;
    e->step = LPG_SESSION_SQL;
    memset(&e->bf, 0, sizeof(e->bf));
    e->bf.db = e->info.db;
    e->bf.sql = e->sql;
    e->bf.cb = lpg_session_rows;
    lpg_backfill_queue(&e->bf);

    return LPG_OK;
}


/* 17+'s statement (see lpg_session_query) into b */
static int
lpg_session_query17(lpg_session_t *e, int64_t uid, lpg_buf_t *b)
{
    int         rc;
    char        num[64], *sql;
    size_t      i, len, cap;
    json_t     *req, *v;
    int64_t     sg = 0;
    const char *str, *st = "", *bar;
    lpg_buf_t   wanted;

    memset(&wanted, 0, sizeof(wanted));
    rc = lpg_buf_append_str(&wanted, "'{0");

    req = e->requested != NULL ? json_loads(e->requested, 0, NULL) : NULL;

    json_array_foreach(req, i, v)
    {
        str = json_string_value(v);
        len = str != NULL ? strlen(str) : 0;

        if (str == NULL || !lpg_session_selector(17, str, len)) {
            continue;
        }

        if (str[0] == 'd') {
            snprintf(num, sizeof(num), ",%s", str + 16);
            rc = rc ?: lpg_buf_append_str(&wanted, num);
            continue;
        }

        /* mail.guest_<id>|<token>, the token checked as the cookie's */
        str += 11;
        bar = strchr(str, '|');
        if (bar != NULL && bar > str && bar - str <= 18
            && strspn(str, "0123456789") == (size_t) (bar - str)
            && lpg_session_token_ok(bar + 1, strlen(bar + 1)))
        {
            sg = atoll(str);
            st = bar + 1;
        }
    }

    rc = rc ?: lpg_buf_append(&wanted, "}'::int[]", 10);

    cap = 3072 + 2 * wanted.len;
    sql = rc == LPG_OK ? malloc(cap) : NULL;

    if (sql == NULL) {
        rc = LPG_ERROR;

    } else {
        rc = snprintf(
            sql, cap,
            "WITH g AS (SELECT id FROM (SELECT id, 1 AS o FROM mail_guest "
            "WHERE id = %lld AND access_token = '%s' UNION ALL SELECT id, 2 "
            "FROM mail_guest WHERE id = %lld AND access_token = '%s') x "
            "ORDER BY o LIMIT 1), "
            "u AS (SELECT id, partner_id FROM res_users WHERE id = %lld), "
            "mine AS (SELECT m.channel_id AS id FROM discuss_channel_member m "
            "WHERE m.partner_id = (SELECT partner_id FROM u) UNION "
            "SELECT m.channel_id FROM discuss_channel_member m WHERE NOT "
            "EXISTS (SELECT 1 FROM u) AND m.guest_id = (SELECT id FROM g)), "
            "grp AS (SELECT gid FROM res_groups_users_rel WHERE uid = %lld), "
            "found AS (SELECT c.id FROM discuss_channel c WHERE (c.id IN "
            "(SELECT id FROM mine) OR c.id = ANY(%s)) AND ((c.channel_type "
            "<> 'channel' AND c.id IN (SELECT id FROM mine)) OR "
            "(c.channel_type = 'channel' AND (c.group_public_id IS NULL OR "
            "c.group_public_id IN (SELECT gid FROM grp))))) "
            "SELECT 'res.partner', partner_id, NULL FROM u UNION ALL "
            "SELECT 'mail.guest', id, NULL FROM g UNION ALL "
            "SELECT 'discuss.channel', id, NULL FROM found UNION ALL "
            "SELECT 'discuss.channel', id, 'members' FROM found "
            "WHERE NOT (id = ANY(%s))%s",
            (long long) sg, st, (long long) e->guest,
            e->guest_token != NULL ? e->guest_token : "", (long long) uid,
            (long long) uid, wanted.data, wanted.data,
            e->version >= 18 ? " UNION ALL SELECT 'res.groups', gid, NULL "
                               "FROM grp"
                             : "");
        rc = rc < 0 || (size_t) rc >= cap ? LPG_ERROR
                                          : lpg_buf_append_str(b, sql);
        free(sql);
    }

    json_decref(req);
    lpg_buf_free(&wanted);

    return rc;
}


static void
lpg_session_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
                 int64_t bound, bool ok)
{
    int            i, nrows;
    int64_t        id, partner = 0;
    const char    *model, *sub;
    lpg_session_t *e = lpg_session_of(req, bf);

    if (!ok || req->res == NULL) {
        lpg_log(LPG_LOG_ERR, 0,
                "session channels of database \"%s\" could not be read "
                "(is Odoo's mail installed?): served public",
                lpg_sess.shm->dbs[e->bf.db].name);
        e->info.uid = 0;
        lpg_session_done(e, false);
        return;
    }

    nrows = PQntuples(req->res);

    for (i = 0; i < nrows; i++) {
        model = PQgetvalue(req->res, i, 0);
        id = atoll(PQgetvalue(req->res, i, 1));

        if (id <= 0) {
            continue;
        }

        if (strcmp(model, "res.partner") == 0) {
            partner = id;

        } else if (strcmp(model, "mail.guest") == 0 && e->info.uid == 0) {
            e->info.guest_id = id;
        }

        sub = PQnfields(req->res) > 2 && !PQgetisnull(req->res, i, 2)
            ? PQgetvalue(req->res, i, 2)
            : NULL;

        if (lpg_session_add_rec(e, model, id, sub) != LPG_OK) {
            lpg_session_done(e, false);
            return;
        }
    }

    if (e->info.uid > 0 && partner == 0) {
        /* get_session_info's uid has no user row here */
        e->info.uid = 0;
    }

    if (e->version < 15 && partner > 0
        && lpg_session_add_rec(e, "ir.needaction", partner, NULL) != LPG_OK)
    {
        lpg_session_done(e, false);
        return;
    }

    if (e->info.uid == 0 && e->info.guest_id == 0 && e->version < 17) {
        /* a guest token that does not match: the channels are not its
         * (17+: public channels asked for are the public user's) */
        lpg_session_free_keys(e);
    }

    lpg_session_done(e, true);
}


/* [db, model, id] as Odoo's channel_with_db and 8-14 tuples store it, or
 * 17's [db, model, id, sub] of (record, sub) */
static int
lpg_session_add_rec(lpg_session_t *e, const char *model, int64_t id,
                    const char *sub)
{
    int     rc;
    json_t *ch;

    ch = sub != NULL ? json_pack("[ssIs]", lpg_sess.shm->dbs[e->info.db].name,
                                 model, (json_int_t) id, sub)
                     : json_pack("[ssI]", lpg_sess.shm->dbs[e->info.db].name,
                                 model, (json_int_t) id);
    rc = ch != NULL ? lpg_session_add_key(e, ch) : LPG_ERROR;
    json_decref(ch);

    return rc;
}


static int
lpg_session_add_key(lpg_session_t *e, const json_t *channel)
{
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    if (lpg_json_dump(&b, channel) != LPG_OK
        || lpg_buf_append(&b, "", 1) != LPG_OK
        || lpg_session_push(e, b.data, b.len - 1) != LPG_OK)
    {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    return LPG_OK;
}


/*
 * Says which source serves db's sessions, once per change for all the
 * workers: the shared word is swapped, and only the worker that changed
 * it logs.  addon: /lpgate/session answered 200, else it answered 404.
 */
static void
lpg_session_source(int db, bool addon)
{
    int32_t     now = addon ? 1 : 2, was;
    const char *name = lpg_sess.shm->dbs[db].name;

    was = atomic_exchange(&lpg_sess.shm->header->session_source[db], now);

    if (was == now) {
        return;
    }

    if (addon) {
        lpg_log(LPG_LOG_NOTICE, 0,
                "database \"%s\": sessions from the lpgate_bus addon "
                "(odoo_url's /lpgate/session)",
                name);

    } else {
        lpg_log(LPG_LOG_NOTICE, 0,
                "database \"%s\": sessions from get_session_info and "
                "built-in SQL (odoo_url has no /lpgate/session: addon "
                "lpgate_bus not installed)",
                name);
    }
}
