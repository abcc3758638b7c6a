/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session.h: who a poll's session_id cookie is, in Odoo's words.
 *
 * lpgate never trusts a cookie by itself: it asks Odoo (lpg_odoo.h) and
 * caches the answer for session_ttl seconds, per worker and in the shared
 * segment (lpg_shm_session_*), so the polls of one session share one
 * lookup whichever worker they reach.  First the lpgate_bus addon's route
 * /lpgate/session, which returns the channel list of Odoo's own _poll
 * chain; when that route is missing (404), /web/session/get_session_info
 * plus the built-in SQL of the database's Odoo version (14: partner,
 * ir.needaction, mail.channel memberships; 15 and 16: partner, its
 * channels, or a mail.guest from the dgid cookie and its channels; 17+:
 * partner, discuss.channel memberships and their "members" sub-channel,
 * the channels the client asked for under mail's record rule, the guest;
 * 18: also the user's res.groups).  No cookie, a session Odoo rejects
 * or an Odoo that does not answer: the poll is the public user's.
 */

#ifndef LPG_SESSION_H
#define LPG_SESSION_H


#include "lpg_conf.h"
#include "lpg_http.h"
#include "lpg_shm.h"

#include <ev.h>


/* Odoo's answer about one session; borrowed for the call it is given to */
typedef struct {
    bool          known;    /* false: Odoo did not answer (served public) */
    int           db;       /* the session's database, -1: not ours */
    int64_t       uid;      /* 0: not logged in */
    int64_t       guest_id; /* 15+: a mail.guest, 0: none */
    size_t        nkeys;
    char *const  *keys; /* bus_bus.channel texts, json_dump form */
    const size_t *key_lens;
} lpg_session_info_t;


typedef struct lpg_session_wait_s lpg_session_wait_t;
typedef struct lpg_session_s      lpg_session_t;

typedef void (*lpg_session_cb_pt)(lpg_session_wait_t       *w,
                                  const lpg_session_info_t *info);

/* embedded in the waiting poll */
struct lpg_session_wait_s {
    lpg_session_cb_pt cb;

    /* private */
    lpg_session_wait_t *next;
    lpg_session_wait_t *prev;
    lpg_session_t      *entry;
};


int lpg_session_init(struct ev_loop *loop, const lpg_conf_t *conf,
                     lpg_shm_t *shm, lpg_shm_worker_t *stats) LPG_MUSTCHECK;

/*
 * The session of request r for database db (Odoo version version):
 * LPG_DONE when r carries no session cookie (or odoo_url is empty): the
 * public user, nothing to wait for; LPG_OK when the answer is cached:
 * *info, valid until control returns to the loop; LPG_AGAIN when Odoo is
 * being asked: w->cb runs later, unless lpg_session_cancel(w) first.
 * Call before lpg_http_hold(): it reads r's headers.
 */
int lpg_session_get(const lpg_http_request_t *r, int db, int version,
                    lpg_session_wait_t        *w,
                    const lpg_session_info_t **info) LPG_MUSTCHECK;

/*
 * The same for Odoo 16+, whose channel list depends on the strings the
 * client subscribes (channels: n NUL-terminated strings, borrowed for the
 * call): they go to Odoo (the addon's params.channels; 17's SQL resolves
 * discuss.channel_<id> and mail.guest_<token>), and the answer is cached
 * per session AND set of strings (the key holds a hash of the sorted
 * strings).  On 17+ a request without cookies but with such strings is
 * looked up too (a public user may read a public channel).  Below 16 the
 * strings are ignored: lpg_session_get().
 */
int lpg_session_get_for(const lpg_http_request_t *r, int db, int version,
                        const char *const *channels, size_t n,
                        lpg_session_wait_t        *w,
                        const lpg_session_info_t **info) LPG_MUSTCHECK;

/* 17+: discuss.channel_<id> and mail.guest_<token> strings select records
 * for the session's list; Odoo removes them from the channels */
bool lpg_session_selector(int version, const char *s, size_t len);

void lpg_session_cancel(lpg_session_wait_t *w);


#endif /* LPG_SESSION_H */
