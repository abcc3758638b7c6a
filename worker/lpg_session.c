/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session.c: the per-worker session cache and the lookups behind it.
 *
 * An entry is keyed by "<db>|<session_id>|<dgid>" and lives in a hash
 * table and in one FIFO list (eviction and the expiry sweep).  While its
 * lookup runs the entry is pending: the polls that asked wait on it, and
 * the entry owns the cookie and Host text the lookup sends.  A lookup is
 * a small state machine: the addon route, else get_session_info then one
 * SQL statement through the worker's pool (lpg_backfill.h).  The entry
 * owns its channel keys; waiters copy what they keep.
 */

#include "lpg_session.h"
#include "lpg_backfill.h"
#include "lpg_json.h"
#include "lpg_odoo.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_SESSION_KEY_MAX   300
#define LPG_SESSION_VALUE_MAX 128
#define LPG_SESSION_ADDON_OFF 60000 /* ms the addon is not asked after 404 */
#define LPG_SESSION_REMOTE    0.02  /* s between looks at another's lookup */

#define lpg_session_of(ptr, member)                                            \
    ((lpg_session_t *) ((char *) (ptr) -offsetof(lpg_session_t, member)))


typedef enum {
    LPG_SESSION_ADDON,
    LPG_SESSION_INFO,
    LPG_SESSION_SQL
} lpg_session_step_e;


struct lpg_session_s {
    lpg_session_info_t info; /* points at the arrays below */
    char             **keys; /* owned, each owned */
    size_t            *key_lens;
    size_t             nkeys;

    char    *key; /* owned */
    size_t   key_len;
    uint32_t hash;
    int      db;      /* the poll's database */
    int      version; /* its Odoo version */
    int64_t  expires; /* monotonic ms */
    bool     pending;
    bool     calling; /* its waiters are being told: not to be freed */
    bool     claimed; /* this worker asks Odoo for every worker */

    /* the lookup, while pending; the strings are owned */
    lpg_session_step_e step;
    char              *cookie;
    char              *host;
    size_t             host_len;
    int64_t            guest; /* from dgid "<id>|<token>", 0: none */
    char              *guest_token;
    char              *sql;
    lpg_odoo_req_t     odoo;
    lpg_backfill_req_t bf;

    lpg_session_wait_t *waiters;

    lpg_session_t *rnext; /* remote list */
    lpg_session_t *hnext; /* hash chain */
    lpg_session_t *next;  /* FIFO */
    lpg_session_t *prev;
};


static bool lpg_session_cookie(const char *h, size_t len, const char *name,
                               const char **v, size_t *vlen);
static bool lpg_session_token(const char *s, size_t len);
static lpg_session_t *lpg_session_find(const char *key, size_t len,
                                       uint32_t hash);
static lpg_session_t *lpg_session_new(const char *key, size_t len,
                                      uint32_t hash);
static void           lpg_session_free(lpg_session_t *e);
static void           lpg_session_clear(lpg_session_t *e);
static int            lpg_session_lookup(lpg_session_t *e);
static int            lpg_session_ask(lpg_session_t *e);
static void           lpg_session_answer(lpg_odoo_req_t *req, int status,
                                         const char *body, size_t len);
static int            lpg_session_addon(lpg_session_t *e, json_t *result);
static int            lpg_session_info(lpg_session_t *e, json_t *root);
static bool           lpg_session_db(lpg_session_t *e, const char *dbname);
static int            lpg_session_query(lpg_session_t *e, int64_t uid);
static void lpg_session_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows,
                             size_t n, int64_t bound, bool ok);
static int  lpg_session_add_key(lpg_session_t *e, const json_t *channel);
static int  lpg_session_push(lpg_session_t *e, char *text, size_t len);
static int lpg_session_add_rec(lpg_session_t *e, const char *model, int64_t id);
static void lpg_session_done(lpg_session_t *e, bool known);
static void lpg_session_tell(lpg_session_t *e);
static void lpg_session_free_keys(lpg_session_t *e);
static bool lpg_session_shared(lpg_session_t *e, int64_t now);
static void lpg_session_publish(lpg_session_t *e);
static void lpg_session_remote_cb(struct ev_loop *loop, ev_timer *w,
                                  int revents);
static void lpg_session_sweep_cb(struct ev_loop *loop, ev_timer *w,
                                 int revents);
static void lpg_session_source(int db, bool addon);


static struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    lpg_shm_t        *shm;
    bool              enabled;
    lpg_session_t   **buckets;
    size_t            nbuckets; /* a power of two */
    lpg_session_t    *head;     /* FIFO, oldest first */
    lpg_session_t    *tail;
    size_t            count;
    /* per database, after the addon answered 404 (session_ttl if shorter) */
    int64_t           addon_off_until[LPG_SHM_MAX_DBS];
    ev_timer          sweep;
    lpg_shm_worker_t *stats;
    int32_t           pid;
    int64_t           stale_ms; /* a claim older than this is abandoned */
    lpg_session_t    *remote;   /* entries another worker is asking for */
    ev_timer          remote_timer;
} lpg_sess;


int
lpg_session_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
                 lpg_shm_worker_t *stats)
{
    lpg_sess.loop = loop;
    lpg_sess.stats = stats;
    lpg_sess.conf = conf;
    lpg_sess.shm = shm;
    lpg_sess.enabled = conf->odoo_url[0] != '\0';
    lpg_sess.pid = (int32_t) getpid();
    /* the longest a lookup takes: two requests and the SQL step */
    lpg_sess.stale_ms = (int64_t) conf->odoo_timeout * 3000 + 1000;
    ev_init(&lpg_sess.remote_timer, lpg_session_remote_cb);

    if (lpg_odoo_init(loop, conf) != LPG_OK) {
        return LPG_ERROR;
    }

    lpg_sess.nbuckets = 256;
    while (lpg_sess.nbuckets < (size_t) conf->max_sessions / 2) {
        lpg_sess.nbuckets *= 2;
    }

    lpg_sess.buckets = calloc(lpg_sess.nbuckets, sizeof(lpg_session_t *));
    if (lpg_sess.buckets == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "session cache allocation failed");
        return LPG_ERROR;
    }

    ev_timer_init(&lpg_sess.sweep, lpg_session_sweep_cb, conf->session_ttl,
                  conf->session_ttl);
    if (lpg_sess.enabled) {
        ev_timer_start(loop, &lpg_sess.sweep);
    }

    return LPG_OK;
}


int
lpg_session_get(const lpg_http_request_t *r, int db, int version,
                lpg_session_wait_t *w, const lpg_session_info_t **info)
{
    int            n;
    char           key[LPG_SESSION_KEY_MAX];
    size_t         sid_len, dgid_len, i;
    int64_t        now;
    uint32_t       hash;
    const char    *sid, *dgid, *bar = NULL;
    lpg_session_t *e;

    if (!lpg_sess.enabled || r->cookie == NULL || db < 0) {
        return LPG_DONE;
    }

    if (!lpg_session_cookie(r->cookie, r->cookie_len, "session_id", &sid,
                            &sid_len)
        || !lpg_session_token(sid, sid_len))
    {
        sid = "";
        sid_len = 0;
    }

    /* 15's guest cookie: "<id>|<access_token>" */
    dgid_len = 0;
    dgid = "";
    if (version >= 15
        && lpg_session_cookie(r->cookie, r->cookie_len, "dgid", &dgid,
                              &dgid_len))
    {
        bar = memchr(dgid, '|', dgid_len);
        if (bar == NULL || bar == dgid || bar - dgid > 18
            || strspn(dgid, "0123456789") != (size_t) (bar - dgid)
            || !lpg_session_token(bar + 1, dgid + dgid_len - bar - 1))
        {
            dgid = "";
            dgid_len = 0;
        }
    }

    if (sid_len == 0 && dgid_len == 0) {
        return LPG_DONE;
    }

    n = snprintf(key, sizeof(key), "%d|%.*s|%.*s", db, (int) sid_len, sid,
                 (int) dgid_len, dgid);
    if (n < 0 || (size_t) n >= sizeof(key)) {
        return LPG_DONE;
    }

    /* FNV-1a */
    hash = 2166136261u;
    for (i = 0; i < (size_t) n; i++) {
        hash = (hash ^ (unsigned char) key[i]) * 16777619u;
    }

    now = lpg_time_mono_ms();
    e = lpg_session_find(key, (size_t) n, hash);

    if (e != NULL && !e->pending && e->expires > now) {
        *info = &e->info;
        return LPG_OK;
    }

    if (e == NULL) {
        e = lpg_session_new(key, (size_t) n, hash);
        if (e == NULL) {
            return LPG_DONE;
        }

    } else if (!e->pending) {
        /* expired: ask again */
        lpg_session_clear(e);
    }

    if (!e->pending && lpg_session_shared(e, now)) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "session %s: answered by another worker's lookup", key);
        *info = &e->info;
        return LPG_OK;
    }

    if (!e->pending) {
        char cookie[2 * LPG_SESSION_VALUE_MAX + 64];

        n = snprintf(cookie, sizeof(cookie), "%s%.*s%s%.*s",
                     sid_len ? "session_id=" : "", (int) sid_len, sid,
                     dgid_len ? (sid_len ? "; dgid=" : "dgid=") : "",
                     (int) dgid_len, dgid);

        e->db = db;
        e->version = version;
        e->cookie = strdup(cookie);
        e->host = r->host != NULL ? strndup(r->host, r->host_len) : NULL;
        e->host_len = e->host != NULL ? r->host_len : 0;
        e->guest = dgid_len ? atoll(dgid) : 0;
        e->guest_token =
            dgid_len ? strndup(bar + 1, dgid + dgid_len - bar - 1) : NULL;
        e->step = now < lpg_sess.addon_off_until[db] ? LPG_SESSION_INFO
                                                     : LPG_SESSION_ADDON;

        if (e->cookie == NULL || (dgid_len && e->guest_token == NULL)) {
            lpg_session_done(e, false);
            *info = &e->info;
            return LPG_OK;
        }

        if (!lpg_shm_session_claim(lpg_sess.shm, e->hash, lpg_sess.pid, now,
                                   lpg_sess.stale_ms))
        {
            /* another worker is asking Odoo right now: wait for its word */
            e->rnext = lpg_sess.remote;
            lpg_sess.remote = e;
            if (!ev_is_active(&lpg_sess.remote_timer)) {
                ev_timer_set(&lpg_sess.remote_timer, LPG_SESSION_REMOTE,
                             LPG_SESSION_REMOTE);
                ev_timer_start(lpg_sess.loop, &lpg_sess.remote_timer);
            }

        } else if (lpg_session_lookup(e) != LPG_OK) {
            /* not even started: served public, asked again later */
            *info = &e->info;
            return LPG_OK;
        }

        e->pending = true;
    }

    w->entry = e;
    w->prev = NULL;
    w->next = e->waiters;
    if (e->waiters != NULL) {
        e->waiters->prev = w;
    }
    e->waiters = w;

    return LPG_AGAIN;
}


void
lpg_session_cancel(lpg_session_wait_t *w)
{
    lpg_session_t *e = w->entry;

    if (e == NULL) {
        return;
    }

    if (w->prev != NULL) {
        w->prev->next = w->next;

    } else {
        e->waiters = w->next;
    }

    if (w->next != NULL) {
        w->next->prev = w->prev;
    }

    w->entry = NULL;
    w->next = NULL;
    w->prev = NULL;
}


/* the value of cookie name in a Cookie header ("a=1; b=2") */
static bool
lpg_session_cookie(const char *h, size_t len, const char *name, const char **v,
                   size_t *vlen)
{
    size_t      nlen = strlen(name);
    const char *p = h, *end = h + len, *semi;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        semi = memchr(p, ';', end - p);
        if (semi == NULL) {
            semi = end;
        }

        if ((size_t) (semi - p) > nlen && memcmp(p, name, nlen) == 0
            && p[nlen] == '=') {
            *v = p + nlen + 1;
            *vlen = semi - *v;
            while (*vlen > 0 && ((*v)[*vlen - 1] == ' ')) {
                (*vlen)--;
            }

            return *vlen > 0;
        }

        p = semi + 1;
    }

    return false;
}


/* what Odoo's session ids and guest tokens are made of */
static bool
lpg_session_token(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > LPG_SESSION_VALUE_MAX) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
        {
            return false;
        }
    }

    return true;
}


static lpg_session_t *
lpg_session_find(const char *key, size_t len, uint32_t hash)
{
    lpg_session_t *e;

    for (e = lpg_sess.buckets[hash & (lpg_sess.nbuckets - 1)]; e != NULL;
         e = e->hnext)
    {
        if (e->hash == hash && e->key_len == len
            && memcmp(e->key, key, len) == 0) {
            return e;
        }
    }

    return NULL;
}


static lpg_session_t *
lpg_session_new(const char *key, size_t len, uint32_t hash)
{
    lpg_session_t *e, **b;

    /* full: the oldest answered entry goes */
    if (lpg_sess.count >= (size_t) lpg_sess.conf->max_sessions) {
        for (e = lpg_sess.head; e != NULL; e = e->next) {
            if (!e->pending && !e->calling && e->waiters == NULL) {
                lpg_session_free(e);
                break;
            }
        }
    }

    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->key = strndup(key, len)) == NULL) {
        lpg_log(LPG_LOG_ERR, 0, "session cache: out of memory");
        free(e);
        return NULL;
    }

    e->key_len = len;
    e->hash = hash;
    e->info.db = -1;

    b = &lpg_sess.buckets[hash & (lpg_sess.nbuckets - 1)];
    e->hnext = *b;
    *b = e;

    e->prev = lpg_sess.tail;
    if (lpg_sess.tail != NULL) {
        lpg_sess.tail->next = e;

    } else {
        lpg_sess.head = e;
    }

    lpg_sess.tail = e;
    lpg_sess.count++;

    return e;
}


/* an answered entry without waiters leaves the cache */
static void
lpg_session_free(lpg_session_t *e)
{
    lpg_session_t **b;

    for (b = &lpg_sess.buckets[e->hash & (lpg_sess.nbuckets - 1)]; *b != e;
         b = &(*b)->hnext)
    { /* void */
    }

    *b = e->hnext;

    if (e->prev != NULL) {
        e->prev->next = e->next;

    } else {
        lpg_sess.head = e->next;
    }

    if (e->next != NULL) {
        e->next->prev = e->prev;

    } else {
        lpg_sess.tail = e->prev;
    }

    lpg_sess.count--;
    lpg_session_clear(e);
    free(e->key);
    free(e);
}


/* the lookup is over: its request text goes */
static void
lpg_session_forget_lookup(lpg_session_t *e)
{
    free(e->cookie);
    free(e->host);
    free(e->guest_token);
    free(e->sql);
    e->cookie = NULL;
    e->host = NULL;
    e->guest_token = NULL;
    e->sql = NULL;
}


/* forgets the answer and the lookup's text */
static void
lpg_session_clear(lpg_session_t *e)
{
    lpg_session_free_keys(e);
    lpg_session_forget_lookup(e);

    memset(&e->info, 0, sizeof(e->info));
    e->info.db = -1;
}


/* this worker holds e's claim: it asks Odoo for every worker; on a
 * failure to even start, e is done (public, asked again later) */
static int
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


/* sends the request of e's step */
static int
lpg_session_ask(lpg_session_t *e)
{
    static const char body[] =
        "{\"jsonrpc\":\"2.0\",\"method\":\"call\",\"id\":null,"
        "\"params\":{}}";

    e->odoo.cb = lpg_session_answer;

    return lpg_odoo_post(&e->odoo,
                         e->step == LPG_SESSION_ADDON
                             ? "/lpgate/session"
                             : "/web/session/get_session_info",
                         e->host, e->host_len, e->cookie, strlen(e->cookie),
                         body, sizeof(body) - 1);
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
            return e->guest != 0 && lpg_session_query(e, 0) == LPG_OK
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

    if (u <= 0 && e->guest == 0) {
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


/*
 * The built-in recipe: the user's partner and the channels it is a member
 * of, or (15, not logged in) the guest whose token matches and its
 * channels.  Values are integers and a checked token: no quoting issue.
 */
static int
lpg_session_query(lpg_session_t *e, int64_t uid)
{
    int  n;
    char sql[1024];

    if (uid > 0) {
        n = snprintf(sql, sizeof(sql),
                     "SELECT 'res.partner', partner_id FROM res_users "
                     "WHERE id = %lld UNION ALL "
                     "SELECT 'mail.channel', m.channel_id "
                     "FROM mail_channel_partner m JOIN res_users u "
                     "ON u.partner_id = m.partner_id "
                     "WHERE u.id = %lld AND m.channel_id IS NOT NULL",
                     (long long) uid, (long long) uid);

    } else {
        n = snprintf(sql, sizeof(sql),
                     "SELECT 'mail.guest', id FROM mail_guest "
                     "WHERE id = %lld AND access_token = '%s' UNION ALL "
                     "SELECT 'mail.channel', m.channel_id "
                     "FROM mail_channel_partner m JOIN mail_guest g "
                     "ON g.id = m.guest_id WHERE g.id = %lld "
                     "AND g.access_token = '%s' AND m.channel_id IS NOT NULL",
                     (long long) e->guest, e->guest_token, (long long) e->guest,
                     e->guest_token);
    }

    if (n < 0 || (size_t) n >= sizeof(sql) || (e->sql = strdup(sql)) == NULL) {
        return LPG_ERROR;
    }

    e->info.uid = uid;
    e->step = LPG_SESSION_SQL;
    memset(&e->bf, 0, sizeof(e->bf));
    e->bf.db = e->info.db;
    e->bf.sql = e->sql;
    e->bf.cb = lpg_session_rows;
    lpg_backfill_queue(&e->bf);

    return LPG_OK;
}


static void
lpg_session_rows(lpg_backfill_req_t *req, const lpg_bus_rec_t *rows, size_t n,
                 int64_t bound, bool ok)
{
    int            i, nrows;
    int64_t        id, partner = 0;
    const char    *model;
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

        } else if (strcmp(model, "mail.guest") == 0) {
            e->info.guest_id = id;
        }

        if (lpg_session_add_rec(e, model, id) != LPG_OK) {
            lpg_session_done(e, false);
            return;
        }
    }

    if (e->info.uid > 0 && partner == 0) {
        /* get_session_info's uid has no user row here */
        e->info.uid = 0;
    }

    if (e->version < 15 && partner > 0
        && lpg_session_add_rec(e, "ir.needaction", partner) != LPG_OK)
    {
        lpg_session_done(e, false);
        return;
    }

    if (e->info.uid == 0 && e->info.guest_id == 0) {
        /* a guest token that does not match: the channels are not its */
        lpg_session_free_keys(e);
    }

    lpg_session_done(e, true);
}


/* [db, model, id] as Odoo's channel_with_db and 8-14 tuples store it */
static int
lpg_session_add_rec(lpg_session_t *e, const char *model, int64_t id)
{
    int     rc;
    json_t *ch;

    ch = json_pack("[ssI]", lpg_sess.shm->dbs[e->info.db].name, model,
                   (json_int_t) id);
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


/* appends the NUL-terminated key text (taken over on success) */
static int
lpg_session_push(lpg_session_t *e, char *text, size_t len)
{
    size_t  cap;
    char  **keys;
    size_t *lens;

    if ((e->nkeys & (e->nkeys - 1)) == 0) {
        /* 0, 1, 2, 4, ...: grow to the next power of two */
        cap = e->nkeys ? e->nkeys * 2 : 4;
        keys = realloc(e->keys, cap * sizeof(*keys));
        if (keys == NULL) {
            return LPG_ERROR;
        }
        e->keys = keys;

        lens = realloc(e->key_lens, cap * sizeof(*lens));
        if (lens == NULL) {
            return LPG_ERROR;
        }
        e->key_lens = lens;
    }

    e->keys[e->nkeys] = text;
    e->key_lens[e->nkeys] = len;
    e->nkeys++;

    return LPG_OK;
}


static void
lpg_session_free_keys(lpg_session_t *e)
{
    size_t i;

    for (i = 0; i < e->nkeys; i++) {
        free(e->keys[i]);
    }

    free(e->keys);
    free(e->key_lens);
    e->keys = NULL;
    e->key_lens = NULL;
    e->nkeys = 0;
}


/* the answer is in (known) or Odoo did not give one: wake the waiters */
static void
lpg_session_done(lpg_session_t *e, bool known)
{
    const lpg_conf_t *conf = lpg_sess.conf;

    e->pending = false;
    e->expires = lpg_time_mono_ms()
        + (int64_t) (known ? conf->session_ttl : conf->session_retry) * 1000;

    lpg_session_forget_lookup(e);

    if (!known) {
        e->info.uid = 0;
        e->info.guest_id = 0;
        e->info.db = -1;
    }

    e->info.known = known;
    e->info.nkeys = e->info.db >= 0 ? e->nkeys : 0;
    e->info.keys = e->keys;
    e->info.key_lens = e->key_lens;

    lpg_log(LPG_LOG_DEBUG, 0, "session %s: %s, uid %lld, %zu channel(s)",
            e->key, known ? "answered" : "Odoo did not answer",
            (long long) e->info.uid, e->info.nkeys);

    if (e->claimed) {
        lpg_session_publish(e);
    }

    lpg_session_tell(e);
}


static void
lpg_session_tell(lpg_session_t *e)
{
    lpg_session_wait_t *w;

    /* a waiter's callback may answer its poll and start other lookups,
     * which must not evict this entry meanwhile */
    e->calling = true;

    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        if (e->waiters != NULL) {
            e->waiters->prev = NULL;
        }

        w->entry = NULL;
        w->next = NULL;
        w->cb(w, &e->info);
    }

    e->calling = false;
}


static void
lpg_session_sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t        now = lpg_time_mono_ms();
    lpg_session_t *e, *next;

    for (e = lpg_sess.head; e != NULL; e = next) {
        next = e->next;

        if (!e->pending && !e->calling && e->waiters == NULL
            && e->expires <= now) {
            lpg_session_free(e);
        }
    }
}


/* what lpg_shm_session_write() stores after the key and its NUL */
typedef struct {
    int32_t  known;
    int32_t  db;
    int64_t  uid;
    int64_t  guest;
    uint32_t nkeys;
} lpg_session_wire_t;


/* e's answer for the other workers (too big for a slot: only this
 * worker's cache keeps it) */
static void
lpg_session_publish(lpg_session_t *e)
{
    char               buf[LPG_SHM_SESSION_DATA];
    size_t             i, off;
    lpg_session_wire_t h;

    e->claimed = false;

    h.known = e->info.known;
    h.db = e->info.db;
    h.uid = e->info.uid;
    h.guest = e->info.guest_id;
    h.nkeys = (uint32_t) e->info.nkeys;

    off = e->key_len + 1 + sizeof(h);
    for (i = 0; i < e->info.nkeys; i++) {
        off += e->key_lens[i] + 1;
    }

    if (off > sizeof(buf)) {
        lpg_shm_session_release(lpg_sess.shm, e->hash, lpg_sess.pid);
        return;
    }

    memcpy(buf, e->key, e->key_len + 1);
    off = e->key_len + 1;
    memcpy(buf + off, &h, sizeof(h));
    off += sizeof(h);

    for (i = 0; i < e->info.nkeys; i++) {
        memcpy(buf + off, e->keys[i], e->key_lens[i] + 1);
        off += e->key_lens[i] + 1;
    }

    lpg_shm_session_write(lpg_sess.shm, e->hash, lpg_sess.pid, e->expires, buf,
                          off);
}


/* fills e from another worker's answer, if one is there and fresh */
static bool
lpg_session_shared(lpg_session_t *e, int64_t now)
{
    char               buf[LPG_SHM_SESSION_DATA];
    char              *k, *end;
    size_t             len;
    ssize_t            n;
    int64_t            expires;
    uint32_t           i;
    lpg_session_wire_t h;

    n = lpg_shm_session_read(lpg_sess.shm, e->hash, now, buf, sizeof(buf),
                             &expires);
    if (n < 0 || (size_t) n < e->key_len + 1 + sizeof(h)
        || memcmp(buf, e->key, e->key_len + 1) != 0)
    {
        return false;
    }

    memcpy(&h, buf + e->key_len + 1, sizeof(h));
    k = buf + e->key_len + 1 + sizeof(h);
    end = buf + n;

    lpg_session_free_keys(e);

    for (i = 0; i < h.nkeys; i++) {
        char *copy;

        len = strnlen(k, end - k);
        if (k + len >= end) {
            break;
        }

        copy = strndup(k, len);
        if (copy == NULL || lpg_session_push(e, copy, len) != LPG_OK) {
            free(copy);
            lpg_session_free_keys(e);
            return false;
        }

        k += len + 1;
    }

    e->info.known = h.known;
    e->info.db = h.db;
    e->info.uid = h.uid;
    e->info.guest_id = h.guest;
    e->info.nkeys = h.db >= 0 ? e->nkeys : 0;
    e->info.keys = e->keys;
    e->info.key_lens = e->key_lens;

    /* the same expiry as the worker that asked */
    e->expires = expires;

    return true;
}


/* entries waiting for another worker's lookup: its answer, or, if it gave
 * up or died, a lookup of this worker's own */
static void
lpg_session_remote_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t         now = lpg_time_mono_ms();
    lpg_session_t **pe, *e;

    for (pe = &lpg_sess.remote; (e = *pe) != NULL;) {
        if (lpg_session_shared(e, now)) {
            *pe = e->rnext;
            e->pending = false;
            lpg_session_forget_lookup(e);
            lpg_log(LPG_LOG_DEBUG, 0,
                    "session %s: answered by another worker's lookup", e->key);
            lpg_session_tell(e);
            continue;
        }

        if (lpg_shm_session_claim(lpg_sess.shm, e->hash, lpg_sess.pid, now,
                                  lpg_sess.stale_ms))
        {
            *pe = e->rnext;
            (void) lpg_session_lookup(e);
            continue;
        }

        pe = &e->rnext;
    }

    if (lpg_sess.remote == NULL) {
        ev_timer_stop(loop, w);
    }
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
