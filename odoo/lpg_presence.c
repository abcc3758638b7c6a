/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_presence.c: the worker's table of polling identities and its
 * batched bus_presence writes (see lpg_presence.h).
 *
 * Entries live in a hash table and one list; a poll holds its entry by
 * count.  One flush at a time: it takes a cron slot in the shared
 * segment, then for each database with something to write opens a
 * connection, runs one INSERT ... ON CONFLICT statement (users, and in
 * the same statement guests), closes it, and finally gives the slot back.
 * Entries nobody holds and nothing wrote for a whole interval are freed
 * at the start of the next flush.
 */

#include "lpg_presence.h"
#include "lpg_json.h"
#include "lpg_pgasync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_PRESENCE_BUCKETS 4096
#define LPG_PRESENCE_RETRY   1.0 /* s, when every cron slot is taken */


struct lpg_presence_s {
    int      db;
    int64_t  uid;
    int64_t  guest;
    int64_t  presence_us; /* monotonic: the newest now - inactivity */
    int      polls;       /* polls in flight holding it */
    bool     seen;        /* a poll began since the last write */
    uint32_t hash;

    lpg_presence_t *hnext;
    lpg_presence_t *next;
    lpg_presence_t *prev;
};


static uint32_t lpg_presence_hash(int db, int64_t uid, int64_t guest);
static void     lpg_presence_free(lpg_presence_t *p);
static void     lpg_presence_schedule(double delay);
static void     lpg_presence_timer_cb(struct ev_loop *loop, ev_timer *w,
                                      int revents);
static void     lpg_presence_next(void);
static void     lpg_presence_step(lpg_pgasync_t *a);
static void     lpg_presence_step_cb(struct ev_loop *loop, ev_timer *w,
                                     int revents);
static int      lpg_presence_sql(int db, lpg_buf_t *b);
static void     lpg_presence_ready(lpg_pgasync_t *a);
static void     lpg_presence_result(lpg_pgasync_t *a, PGresult *res);
static void     lpg_presence_done(lpg_pgasync_t *a);
static void     lpg_presence_down(lpg_pgasync_t *a, const char *err);
static void     lpg_presence_end(void);


static struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    lpg_shm_t        *shm;
    lpg_shm_worker_t *stats;
    bool              enabled;
    lpg_presence_t   *buckets[LPG_PRESENCE_BUCKETS];
    lpg_presence_t   *head;
    lpg_presence_t   *tail;
    ev_timer          timer;
    int64_t           last_flush; /* monotonic ms of the last start */

    /* the flush in progress */
    bool          flushing;
    int           cron; /* the cron slot held, -1: none */
    int           db;   /* the database being written */
    bool          todo[LPG_SHM_MAX_DBS];
    lpg_pgasync_t a;
    ev_timer      step; /* the next database, outside libpq's callbacks */
} lpg_pres;


int
lpg_presence_init(struct ev_loop *loop, const lpg_conf_t *conf, lpg_shm_t *shm,
                  lpg_shm_worker_t *stats)
{
    lpg_pres.loop = loop;
    lpg_pres.conf = conf;
    lpg_pres.shm = shm;
    lpg_pres.stats = stats;
    lpg_pres.cron = -1;
    lpg_pres.last_flush = -1;
    lpg_pres.enabled = conf->odoo_url[0] != '\0' && conf->presence_interval > 0
        && conf->max_cron_threads > 0;

    if (conf->odoo_url[0] != '\0' && conf->presence_interval > 0
        && conf->max_cron_threads == 0)
    {
        lpg_log(LPG_LOG_NOTICE, 0,
                "max_cron_threads = 0: no cron slot, so bus_presence is not "
                "written and polling users show offline");
    }

    ev_init(&lpg_pres.timer, lpg_presence_timer_cb);
    ev_init(&lpg_pres.step, lpg_presence_step_cb);

    return LPG_OK;
}


lpg_presence_t *
lpg_presence_hold(int db, int64_t uid, int64_t guest, int64_t inactivity_ms)
{
    bool            fresh = false;
    int64_t         now_us, presence;
    uint32_t        h;
    lpg_presence_t *p;

    if (!lpg_pres.enabled || db < 0 || (uid <= 0 && guest <= 0)) {
        return NULL;
    }

    h = lpg_presence_hash(db, uid, guest);

    for (p = lpg_pres.buckets[h % LPG_PRESENCE_BUCKETS]; p != NULL;
         p = p->hnext) {
        if (p->db == db && p->uid == uid && p->guest == guest) {
            break;
        }
    }

    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            lpg_log(LPG_LOG_ERR, 0, "presence table: out of memory");
            return NULL;
        }

        p->db = db;
        p->uid = uid;
        p->guest = guest;
        p->hash = h;
        p->presence_us = INT64_MIN;
        p->hnext = lpg_pres.buckets[h % LPG_PRESENCE_BUCKETS];
        lpg_pres.buckets[h % LPG_PRESENCE_BUCKETS] = p;

        p->prev = lpg_pres.tail;
        if (lpg_pres.tail != NULL) {
            lpg_pres.tail->next = p;

        } else {
            lpg_pres.head = p;
        }

        lpg_pres.tail = p;
        fresh = true;
    }

    if (inactivity_ms < 0) {
        inactivity_ms = 0;
    }

    now_us = lpg_time_mono_us();
    presence = now_us - inactivity_ms * 1000;
    if (presence > p->presence_us) {
        p->presence_us = presence;
    }

    p->polls++;
    p->seen = true;

    if (fresh || !ev_is_active(&lpg_pres.timer)) {
        /* written as soon as the interval allows: someone new at once */
        int64_t next = lpg_pres.last_flush < 0 ? 0
                                               : lpg_pres.last_flush
                + (int64_t) lpg_pres.conf->presence_interval * 1000
                - lpg_time_mono_ms();

        lpg_presence_schedule(next > 0 ? (double) next / 1000. : 0.);
    }

    return p;
}


void
lpg_presence_release(lpg_presence_t *p)
{
    if (p != NULL && p->polls > 0) {
        p->polls--;
    }
}


static uint32_t
lpg_presence_hash(int db, int64_t uid, int64_t guest)
{
    uint64_t h = (uint64_t) db * 0x9e3779b97f4a7c15ull;

    h ^= (uint64_t) uid * 0xbf58476d1ce4e5b9ull;
    h ^= (uint64_t) guest * 0x94d049bb133111ebull;

    return (uint32_t) (h ^ (h >> 32));
}


static void
lpg_presence_free(lpg_presence_t *p)
{
    lpg_presence_t **b;

    for (b = &lpg_pres.buckets[p->hash % LPG_PRESENCE_BUCKETS]; *b != p;
         b = &(*b)->hnext)
    { /* void */
    }

    *b = p->hnext;

    if (p->prev != NULL) {
        p->prev->next = p->next;

    } else {
        lpg_pres.head = p->next;
    }

    if (p->next != NULL) {
        p->next->prev = p->prev;

    } else {
        lpg_pres.tail = p->prev;
    }

    free(p);
}


/* the flush timer fires in delay seconds, or sooner if it already would */
static void
lpg_presence_schedule(double delay)
{
    if (lpg_pres.flushing) {
        return;
    }

    if (ev_is_active(&lpg_pres.timer)
        && ev_timer_remaining(lpg_pres.loop, &lpg_pres.timer) <= delay)
    {
        return;
    }

    ev_timer_stop(lpg_pres.loop, &lpg_pres.timer);
    ev_timer_set(&lpg_pres.timer, delay, 0.);
    ev_timer_start(lpg_pres.loop, &lpg_pres.timer);
}


static void
lpg_presence_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int             slots;
    bool            any = false;
    lpg_presence_t *p, *next;

    memset(lpg_pres.todo, 0, sizeof(lpg_pres.todo));

    for (p = lpg_pres.head; p != NULL; p = next) {
        next = p->next;

        if (p->polls == 0 && !p->seen) {
            /* gone for a whole interval: Odoo's timers make it offline */
            lpg_presence_free(p);
            continue;
        }

        lpg_pres.todo[p->db] = true;
        any = true;
    }

    if (!any) {
        /* nobody polls: the next poll starts the timer again */
        return;
    }

    slots = lpg_pres.conf->max_cron_threads * lpg_pres.conf->db_maxconn;
    lpg_pres.cron = lpg_shm_cron_take(lpg_pres.shm, slots, (int32_t) getpid());

    if (lpg_pres.cron < 0) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "presence: all %d cron slots are taken, retrying", slots);
        ev_timer_set(&lpg_pres.timer, LPG_PRESENCE_RETRY, 0.);
        ev_timer_start(loop, &lpg_pres.timer);
        return;
    }

    lpg_pres.flushing = true;
    lpg_pres.last_flush = lpg_time_mono_ms();
    lpg_pres.db = -1;

    lpg_presence_next();
}


/* opens a connection to the next database with something to write */
static void
lpg_presence_next(void)
{
    int                 i;
    lpg_pgconn_params_t params;

    for (i = lpg_pres.db + 1; i < lpg_pres.shm->header->ndbs; i++) {
        if (lpg_pres.todo[i]) {
            break;
        }
    }

    if (i >= lpg_pres.shm->header->ndbs) {
        lpg_presence_end();
        return;
    }

    lpg_pres.db = i;

    memset(&lpg_pres.a, 0, sizeof(lpg_pres.a));
    lpg_pres.a.loop = lpg_pres.loop;
    lpg_pres.a.name = lpg_pres.shm->dbs[i].name;
    lpg_pres.a.ready = lpg_presence_ready;
    lpg_pres.a.result = lpg_presence_result;
    lpg_pres.a.done = lpg_presence_done;
    lpg_pres.a.down = lpg_presence_down;

    lpg_pgconn_params(&params, lpg_pres.conf, lpg_pres.shm->dbs[i].name,
                      "lpgate presence");
    lpg_pgasync_start(&lpg_pres.a, &params);
}


/*
 * One statement for database db: users (and 15's guests) upserted as
 * Odoo's bus.presence.update does it, last_presence never moved back.
 * Every value is an integer, so the text needs no quoting.
 */
static int
lpg_presence_sql(int db, lpg_buf_t *b)
{
    int             rc = LPG_OK, pass;
    char            row[96];
    bool            first, any[2] = { false, false };
    int64_t         now_us = lpg_time_mono_us(), age;
    lpg_presence_t *p;

    static const char *const head[2] = {
        "u AS (INSERT INTO bus_presence (user_id, last_poll, last_presence, "
        "status) SELECT v.i, now() AT TIME ZONE 'UTC', now() AT TIME ZONE "
        "'UTC' - v.a * interval '1 millisecond', 'offline' FROM (VALUES ",
        "g AS (INSERT INTO bus_presence (guest_id, last_poll, last_presence, "
        "status) SELECT v.i, now() AT TIME ZONE 'UTC', now() AT TIME ZONE "
        "'UTC' - v.a * interval '1 millisecond', 'offline' FROM (VALUES "
    };
    static const char *const tail[2] = {
        ") AS v(i, a) WHERE EXISTS (SELECT 1 FROM res_users r WHERE r.id = "
        "v.i) ON CONFLICT (user_id) WHERE user_id IS NOT NULL DO UPDATE SET "
        "last_poll = EXCLUDED.last_poll, last_presence = "
        "GREATEST(bus_presence.last_presence, EXCLUDED.last_presence) "
        "RETURNING 1)",
        ") AS v(i, a) WHERE EXISTS (SELECT 1 FROM mail_guest r WHERE r.id = "
        "v.i) ON CONFLICT (guest_id) WHERE guest_id IS NOT NULL DO UPDATE "
        "SET last_poll = EXCLUDED.last_poll, last_presence = "
        "GREATEST(bus_presence.last_presence, EXCLUDED.last_presence) "
        "RETURNING 1)"
    };

    rc = lpg_buf_append_str(b, "WITH ");

    for (pass = 0; pass < 2 && rc == LPG_OK; pass++) {
        first = true;

        for (p = lpg_pres.head; p != NULL && rc == LPG_OK; p = p->next) {
            if (p->db != db || (p->polls == 0 && !p->seen)
                || (pass == 0 ? p->uid <= 0 : p->uid > 0))
            {
                continue;
            }

            if (first) {
                if (any[0]) {
                    rc = lpg_buf_append_str(b, ", ");
                }
                rc = rc ?: lpg_buf_append_str(b, head[pass]);
            }

            age = (now_us - p->presence_us) / 1000;
            snprintf(row, sizeof(row), "%s(%lld, %lld)", first ? "" : ", ",
                     (long long) (pass == 0 ? p->uid : p->guest),
                     (long long) (age > 0 ? age : 0));
            rc = rc ?: lpg_buf_append_str(b, row);

            first = false;
            p->seen = false;
        }

        if (!first) {
            rc = rc ?: lpg_buf_append_str(b, tail[pass]);
            any[pass] = true;
        }
    }

    if (!any[0] && !any[1]) {
        return LPG_DONE;
    }

    rc = rc ?: lpg_buf_append_str(b, " SELECT ");
    rc = rc ?: lpg_buf_append_str(b, any[0] ? "(SELECT count(*) FROM u)" : "0");
    rc = rc ?: lpg_buf_append_str(b, " + ");
    rc = rc ?: lpg_buf_append_str(b, any[1] ? "(SELECT count(*) FROM g)" : "0");

    return rc;
}


static void
lpg_presence_ready(lpg_pgasync_t *a)
{
    int       rc;
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));
    rc = lpg_presence_sql(lpg_pres.db, &b);

    if (rc == LPG_OK) {
        rc = lpg_buf_append(&b, "", 1);
    }

    if (rc != LPG_OK || lpg_pgasync_query(a, b.data) != LPG_OK) {
        if (rc == LPG_ERROR) {
            lpg_log(LPG_LOG_ERR, 0, "presence: out of memory");
        }

        lpg_buf_free(&b);
        lpg_presence_step(a);
        return;
    }

    lpg_buf_free(&b);
}


static void
lpg_presence_result(lpg_pgasync_t *a, PGresult *res)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        lpg_log(LPG_LOG_ERR, 0, "presence write on \"%s\" failed: %s", a->name,
                PQresultErrorMessage(res));
        return;
    }

    atomic_fetch_add_explicit(&lpg_pres.stats->presence_flushes, 1,
                              memory_order_relaxed);
    lpg_log(LPG_LOG_DEBUG, 0, "presence: %s row(s) written on \"%s\"",
            PQgetvalue(res, 0, 0), a->name);
}


static void
lpg_presence_done(lpg_pgasync_t *a)
{
    lpg_presence_step(a);
}


/* closes a and goes on with the next database from the loop, not from
 * inside libpq's callback chain, which still uses a */
static void
lpg_presence_step(lpg_pgasync_t *a)
{
    lpg_pgasync_stop(a);
    ev_timer_set(&lpg_pres.step, 0., 0.);
    ev_timer_start(lpg_pres.loop, &lpg_pres.step);
}


static void
lpg_presence_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_presence_next();
}


static void
lpg_presence_down(lpg_pgasync_t *a, const char *err)
{
    /* no retry: the next interval writes again */
    lpg_log(LPG_LOG_WARN, 0, "presence: database \"%s\" unreachable: %s",
            a->name, err != NULL ? err : "connection lost");
    lpg_presence_step(a);
}


static void
lpg_presence_end(void)
{
    lpg_pres.flushing = false;

    if (lpg_pres.cron >= 0) {
        lpg_shm_cron_give(lpg_pres.shm, lpg_pres.cron);
        lpg_pres.cron = -1;
    }

    /* the next write one interval after this one started */
    lpg_presence_schedule(
        (double) (lpg_pres.last_flush
                  + (int64_t) lpg_pres.conf->presence_interval * 1000
                  - lpg_time_mono_ms())
        / 1000.);
}
