/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session_int.h: what the session cache's three files share, private
 * to them: the entry, the worker's cache state (lpg_sess, defined in
 * lpg_session.c) and the functions one file calls in another.
 *
 *   lpg_session.c         the cache: keys, entries, waiters, expiry
 *   lpg_session_lookup.c  asking Odoo: the addon, get_session_info, SQL
 *   lpg_session_shm.c     the shared slots: one lookup for every worker
 */

#ifndef LPG_SESSION_INT_H
#define LPG_SESSION_INT_H


#include "lpg_backfill.h"
#include "lpg_odoo.h"
#include "lpg_session.h"


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
    char              *requested; /* 16+: the client's strings, a JSON
                                   * array (sorted, unique), or NULL */
    char              *sql;
    lpg_odoo_req_t     odoo;
    lpg_backfill_req_t bf;

    lpg_session_wait_t *waiters;

    lpg_session_t *rnext; /* remote list */
    lpg_session_t *hnext; /* hash chain */
    lpg_session_t *next;  /* FIFO */
    lpg_session_t *prev;
};


typedef struct {
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
} lpg_session_globals_t;


extern lpg_session_globals_t lpg_sess;


/* lpg_session.c */
void lpg_session_done(lpg_session_t *e, bool known);
void lpg_session_tell(lpg_session_t *e);
int  lpg_session_push(lpg_session_t *e, char *text, size_t len);
void lpg_session_free_keys(lpg_session_t *e);
void lpg_session_forget_lookup(lpg_session_t *e);
bool lpg_session_token_ok(const char *s, size_t len);

/* lpg_session_lookup.c */
int lpg_session_lookup(lpg_session_t *e);

/* lpg_session_shm.c */
void lpg_session_publish(lpg_session_t *e);
bool lpg_session_shared(lpg_session_t *e, int64_t now);
void lpg_session_remote_cb(struct ev_loop *loop, ev_timer *w, int revents);


#endif /* LPG_SESSION_INT_H */
