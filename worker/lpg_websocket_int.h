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
#include "lpg_sub.h"
#include "lpg_wsc.h"


typedef struct {
    lpg_sub_t sub; /* first: the sub layer's callbacks cast back */
    lpg_wsc_t wsc;

    bool subscribed; /* a subscribe came: sub holds its keys */
    bool dead;       /* freed when deliver comes (it was ready) */

    /* the session: the request's cookies and Host, kept to ask again */
    char              *cookie;
    size_t             cookie_len;
    char              *host;
    size_t             host_len;
    bool               session_wait;
    lpg_session_wait_t swait;
    bool               logged; /* Odoo said a user (or guest) */
    int64_t            uid;
    int64_t            guest_id;
    size_t             nskeys; /* the session's channels, owned */
    char             **skeys;
    size_t            *skey_lens;
    lpg_presence_t    *presence;

    /* 17+: the last subscribe's strings (asked with at each re-check),
     * and a subscribe that waits for Odoo's answer (lpg_websocket_select);
     * both owned (json_decref) */
    json_t *strings;
    json_t *pending;
    int64_t pending_last;

    /* a subscribe whose last is above this node's high waits for a fetch
     * (lpg_ahead.h; a later subscribe replaces it): its channels, owned */
    lpg_ahead_t ahead;
    json_t     *ahead_channels;
    int64_t     ahead_last;
    bool        ahead_done;
} lpg_wso_t;


/* lpg_websocket.c */
void lpg_wso_session(lpg_wso_t *w, const lpg_session_info_t *info);
void lpg_wso_subscribe_now(lpg_wso_t *w, lpg_odoo_ws_event_t *ev);

/* lpg_websocket_select.c */
int          lpg_wso_select(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev);
const char **lpg_wso_strings(const json_t *channels, size_t *n);
void         lpg_wso_session_request(const lpg_wso_t *w, lpg_http_request_t *r);
int          lpg_wso_ahead(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev);
void         lpg_wso_ahead_forget(lpg_wso_t *w);


#endif /* LPG_WEBSOCKET_INT_H */
