/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket_int.h: an Odoo /websocket's state, private to the
 * application's two files: lpg_websocket.c (the upgrade, the session,
 * Odoo's events and the deliveries) and lpg_websocket_select.c (17+'s
 * record selectors).  The socket itself is lpg_wsc (lpg_wsc.h), embedded.
 */

#ifndef LPG_WEBSOCKET_INT_H
#define LPG_WEBSOCKET_INT_H


#include "lpg_websocket.h"
#include "lpg_ahead.h"
#include "lpg_odoo_ws.h"
#include "lpg_presence.h"
#include "lpg_session.h"
#include "lpg_strlist.h"
#include "lpg_sub.h"
#include "lpg_wsc.h"


typedef struct lpg_wso_ask_s lpg_wso_ask_t;


typedef struct {
    lpg_sub_t sub; /* first: the sub layer's callbacks cast back */
    lpg_wsc_t wsc;

    /* the flags together: no padding between them */
    bool subscribed; /* a subscribe came: sub holds its keys */
    bool dead;       /* freed when deliver comes (it was ready) */
    bool logged;     /* Odoo said a user (or guest) */
    bool ahead_done; /* the ahead subscribe runs again (below) */

    /* the session: the request's cookies and Host, kept to ask again */
    char           *cookie;
    size_t          cookie_len;
    char           *host;
    size_t          host_len;
    lpg_wso_ask_t  *ask; /* a session lookup waiting for Odoo */
    int64_t         uid;
    int64_t         guest_id;
    size_t          nskeys; /* the session's channels, owned */
    char          **skeys;
    size_t         *skey_lens;
    lpg_presence_t *presence;

    /* 16+ with a session: the last subscribe's strings, asked with at
     * each re-check (owned; empty when no re-check asks) */
    lpg_strlist_t strs;

    /* a subscribe whose last is above this node's high waits for a fetch
     * (lpg_ahead.h; a later subscribe replaces it): allocated while it
     * waits, owned (lpg_websocket_select.c) */
    lpg_ahead_held_t *ahead;
} lpg_wso_t;


/* a session lookup that waits for Odoo's answer: allocated while it waits
 * (lpg_wso_ask), owned by w->ask */
struct lpg_wso_ask_s {
    lpg_session_wait_t sw; /* first: the callbacks cast back */
    lpg_wso_t         *w;

    /* 17+: the subscribe that waits for the answer (lpg_websocket_select),
     * owned (json_decref) */
    json_t *pending;
    int64_t pending_last;
};


/* lpg_websocket.c */
void lpg_wso_session(lpg_wso_t *w, const lpg_session_info_t *info);

/* asks for w's session with n strings v (lpg_session_get_for); LPG_AGAIN:
 * cb answers later and w->ask is set; else as lpg_session_get_for, and
 * LPG_ERROR on no memory (logged) */
int lpg_wso_ask(lpg_wso_t *w, const lpg_http_request_t *r, const char *const *v,
                size_t n, lpg_session_cb_pt cb,
                const lpg_session_info_t **info);

/* the answer came (from cb): w->ask goes; its pending subscribe, if any,
 * is the caller's (json_decref) */
lpg_wso_t *lpg_wso_answered(lpg_session_wait_t *sw, json_t **pending,
                            int64_t *pending_last);

/* a waiting lookup, if any, is dropped (cb will not run) */
void lpg_wso_ask_cancel(lpg_wso_t *w);
void lpg_wso_subscribe_now(lpg_wso_t *w, lpg_odoo_ws_event_t *ev);

/* lpg_websocket_select.c */
int          lpg_wso_select(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev);
const char **lpg_wso_strings(const json_t *channels, size_t *n);
void         lpg_wso_keep_strings(lpg_wso_t *w, const json_t *channels);
const char **lpg_wso_kept_strings(const lpg_wso_t *w, size_t *n);
void         lpg_wso_session_request(const lpg_wso_t *w, lpg_http_request_t *r);
int          lpg_wso_ahead(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev);
void         lpg_wso_ahead_forget(lpg_wso_t *w);


#endif /* LPG_WEBSOCKET_INT_H */
