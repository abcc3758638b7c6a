/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session.c: the per-worker session cache and the lookups behind it.
 *
 * An entry is keyed by "<db>|<session_id>|<dgid>" and lives in a hash
 * table and in one FIFO list (eviction and the expiry sweep).  While its
 * lookup runs the entry is pending: the polls that asked wait on it, and
 * the entry owns the cookie and Host text the lookup sends.  A lookup is
 * a small state machine (lpg_session_lookup.c): the addon route, else
 * get_session_info then one SQL statement through the worker's pool; one
 * worker asks for all of them (lpg_session_shm.c).  The entry owns its
 * channel keys; waiters copy what they keep.
 */

#include "lpg_session_int.h"
#include "lpg_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static bool  lpg_session_cookie(const char *h, size_t len, const char *name,
                                const char **v, size_t *vlen);
static bool  lpg_session_token(const char *s, size_t len);
static char *lpg_session_requested(const char *const *channels, size_t n,
                                   uint64_t *hash, bool *selectors);
static int   lpg_session_cmp(const void *a, const void *b);
static lpg_session_t *lpg_session_find(const char *key, size_t len,
                                       uint32_t hash);
static lpg_session_t *lpg_session_new(const char *key, size_t len,
                                      uint32_t hash);
static void           lpg_session_free(lpg_session_t *e);
static void           lpg_session_clear(lpg_session_t *e);
static void           lpg_session_sweep_cb(struct ev_loop *loop, ev_timer *w,
                                           int revents);


lpg_session_globals_t lpg_sess;


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
    return lpg_session_get_for(r, db, version, NULL, 0, w, info);
}


int
lpg_session_get_for(const lpg_http_request_t *r, int db, int version,
                    const char *const *channels, size_t nchannels,
                    lpg_session_wait_t *w, const lpg_session_info_t **info)
{
    int            n;
    char           key[LPG_SESSION_KEY_MAX];
    char          *requested = NULL;
    size_t         sid_len, dgid_len, i;
    int64_t        now;
    uint32_t       hash;
    uint64_t       rhash = 0;
    const char    *sid, *dgid, *bar = NULL;
    lpg_session_t *e;
    bool           selectors = false;

    if (!lpg_sess.enabled || db < 0) {
        return LPG_DONE;
    }

    if (version >= 16 && nchannels > 0) {
        requested = lpg_session_requested(channels, nchannels, &rhash,
                                          version >= 17 ? &selectors : NULL);
        if (requested == NULL) {
            /* out of memory: asked without the strings */
            rhash = 0;
        }
    }

    if (r->cookie == NULL && !selectors) {
        free(requested);
        return LPG_DONE;
    }

    if (r->cookie == NULL
        || !lpg_session_cookie(r->cookie, r->cookie_len, "session_id", &sid,
                               &sid_len)
        || !lpg_session_token(sid, sid_len))
    {
        sid = "";
        sid_len = 0;
    }

    /* 15+'s guest cookie: "<id>|<access_token>" */
    dgid_len = 0;
    dgid = "";
    if (version >= 15 && r->cookie != NULL
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

    if (sid_len == 0 && dgid_len == 0 && !selectors) {
        free(requested);
        return LPG_DONE;
    }

    /* 16+: the same session with other strings is another answer */
    n = snprintf(key, sizeof(key), "%d|%.*s|%.*s|%016llx", db, (int) sid_len,
                 sid, (int) dgid_len, dgid, (unsigned long long) rhash);
    if (n < 0 || (size_t) n >= sizeof(key)) {
        free(requested);
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
        free(requested);
        *info = &e->info;
        return LPG_OK;
    }

    if (e == NULL) {
        e = lpg_session_new(key, (size_t) n, hash);
        if (e == NULL) {
            free(requested);
            return LPG_DONE;
        }

    } else if (!e->pending) {
        /* expired: ask again */
        lpg_session_clear(e);
    }

    if (!e->pending && lpg_session_shared(e, now)) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "session %s: answered by another worker's lookup", key);
        free(requested);
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
        e->requested = requested;
        requested = NULL;
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

    free(requested);

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


bool
lpg_session_selector(int version, const char *s, size_t len)
{
    static const char dc[] = "discuss.channel_", mg[] = "mail.guest_";
    size_t            i;

    if (version < 17) {
        return false;
    }

    if (len > sizeof(mg) - 1 && memcmp(s, mg, sizeof(mg) - 1) == 0) {
        return true;
    }

    if (len <= sizeof(dc) - 1 || len > sizeof(dc) - 1 + 18
        || memcmp(s, dc, sizeof(dc) - 1) != 0)
    {
        return false;
    }

    for (i = sizeof(dc) - 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }

    return true;
}


/*
 * The client's strings as the JSON array sent to the addon: sorted and
 * unique, so that the same set gives the same text and *hash (FNV-1a 64,
 * never 0); *selectors (17+, may be NULL) tells whether one selects a
 * record.  NULL when out of memory or when a string is not valid UTF-8;
 * caller frees.
 */
static char *
lpg_session_requested(const char *const *channels, size_t n, uint64_t *hash,
                      bool *selectors)
{
    char        *text;
    size_t       i;
    json_t      *a;
    const char **v;
    uint64_t     h = 14695981039346656037ull;

    v = malloc(n * sizeof(*v));
    a = json_array();
    if (v == NULL || a == NULL) {
        free(v);
        json_decref(a);
        return NULL;
    }

    memcpy(v, channels, n * sizeof(*v));
    qsort(v, n, sizeof(*v), lpg_session_cmp);

    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i], v[i - 1]) == 0) {
            continue;
        }

        if (json_array_append_new(a, json_string(v[i])) != 0) {
            free(v);
            json_decref(a);
            return NULL;
        }

        if (selectors != NULL && lpg_session_selector(17, v[i], strlen(v[i]))) {
            *selectors = true;
        }
    }

    free(v);
    text = json_dumps(a, JSON_COMPACT);
    json_decref(a);

    if (text == NULL) {
        return NULL;
    }

    for (i = 0; text[i] != '\0'; i++) {
        h = (h ^ (unsigned char) text[i]) * 1099511628211ull;
    }

    *hash = h ? h : 1;

    return text;
}


static int
lpg_session_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
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


bool
lpg_session_token_ok(const char *s, size_t len)
{
    return lpg_session_token(s, len);
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
void
lpg_session_forget_lookup(lpg_session_t *e)
{
    free(e->cookie);
    free(e->host);
    free(e->guest_token);
    free(e->requested);
    free(e->sql);
    e->cookie = NULL;
    e->host = NULL;
    e->guest_token = NULL;
    e->requested = NULL;
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


/* appends the NUL-terminated key text (taken over on success) */
int
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


void
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
void
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


void
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
