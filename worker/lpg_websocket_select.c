/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket_select.c: the strings of a websocket's subscribe that
 * select records for its session (Odoo 17+).
 *
 * Odoo builds a socket's channel list from the subscribe's strings:
 * `discuss.channel_<id>` asks for a channel the user may read (a public
 * one, even without a session), `mail.guest_<token>` names a guest.  Such
 * a subscribe is looked up through the session cache with its strings
 * (lpg_session_get_for: one answer per session and set of strings), and
 * the subscribe waits for the answer when Odoo must be asked; the
 * periodic re-check asks with the same strings.  Other subscribes use the
 * session's answer from the upgrade.
 *
 * A subscribe whose last is above this node's largest id waits here too,
 * for a fetch (lpg_ahead.h): another node may have handed that id out
 * before this master fetched it, and taken for stale it would be reset
 * to 0 (Odoo's rule), the client getting the last timeout seconds again.
 */

#include "lpg_websocket_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>


static void lpg_wso_select_cb(lpg_session_wait_t       *sw,
                              const lpg_session_info_t *info);
static void lpg_wso_fetched(void *owner, json_t *channels, int64_t last);


/*
 * The channel strings of ev (borrowed from it) as an array the caller
 * frees; *n is their number.  NULL when there are none or no memory.
 */
const char **
lpg_wso_strings(const json_t *channels, size_t *n)
{
    size_t       i;
    json_t      *ch;
    const char **v;

    *n = json_is_array(channels) ? json_array_size(channels) : 0;
    if (*n == 0) {
        return NULL;
    }

    v = calloc(*n, sizeof(*v));
    if (v == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        *n = 0;
        return NULL;
    }

    json_array_foreach(channels, i, ch)
    {
        v[i] = json_string_value(ch);
    }

    return v;
}


/*
 * Keeps the strings of channels for the session re-checks: only with a
 * session cookie (no re-check without one) and from 16 (earlier versions
 * do not send them to Odoo); a few bytes in one allocation
 * (lpg_strlist.h), not a json array's few hundred.  Duplicates go, as in
 * the request (lpg_session_get_for); on no memory, the re-check asks
 * with the strings kept so far.
 */
void
lpg_wso_keep_strings(lpg_wso_t *w, const json_t *channels)
{
    size_t      i;
    json_t     *ch;
    const char *v;

    lpg_strlist_free(&w->strs);

    if (w->cookie == NULL || w->sub.version < 16 || !json_is_array(channels)) {
        return;
    }

    json_array_foreach(channels, i, ch)
    {
        v = json_string_value(ch);
        if (v != NULL && lpg_strlist_add(&w->strs, v, strlen(v)) != LPG_OK) {
            lpg_log(LPG_LOG_ERR, errno, "keeping the subscribe's strings");
            return;
        }
    }
}


/* the kept strings as an array the caller frees (borrowed from w) */
const char **
lpg_wso_kept_strings(const lpg_wso_t *w, size_t *n)
{
    size_t             i;
    const char       **v;
    lpg_strlist_iter_t it;

    *n = 0;
    if (w->strs.n == 0) {
        return NULL;
    }

    v = calloc(w->strs.n, sizeof(*v));
    if (v == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        return NULL;
    }

    memset(&it, 0, sizeof(it));
    for (i = 0; lpg_strlist_next(&w->strs, &it); i++) {
        v[i] = it.str;
    }

    *n = i;

    return v;
}


/* the session's request, from what the upgrade left (borrowed from w) */
void
lpg_wso_session_request(const lpg_wso_t *w, lpg_http_request_t *r)
{
    memset(r, 0, sizeof(*r));
    r->cookie = w->cookie;
    r->cookie_len = w->cookie_len;
    r->host = w->host;
    r->host_len = w->host_len;
}


/*
 * LPG_OK: go on with ev now (the session's keys are the ones for its
 * strings); LPG_AGAIN: Odoo is asked, the subscribe goes on from the
 * answer (ev's channels are kept).
 */
int
lpg_wso_select(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev)
{
    int                       rc;
    size_t                    i, n;
    const char              **v;
    lpg_http_request_t        r;
    const lpg_session_info_t *info;

    lpg_wso_keep_strings(w, ev->channels);

    if (w->sub.version < 17) {
        return LPG_OK;
    }

    v = lpg_wso_strings(ev->channels, &n);

    for (i = 0; i < n; i++) {
        if (lpg_session_selector(w->sub.version, v[i], strlen(v[i]))) {
            break;
        }
    }

    if (i == n) {
        /* nothing to select: the upgrade's answer holds */
        free(v);
        return LPG_OK;
    }

    if (w->ask != NULL) {
        if (w->ask->pending != NULL) {
            /* a later subscribe replaces the one that waits */
            json_decref(w->ask->pending);
            w->ask->pending = json_incref(ev->channels);
            w->ask->pending_last = ev->last;
            free(v);
            return LPG_AGAIN;
        }

        /* a re-check: this lookup answers it too */
        lpg_wso_ask_cancel(w);
    }

    lpg_wso_session_request(w, &r);

    rc = lpg_wso_ask(w, &r, v, n, lpg_wso_select_cb, &info);
    free(v);

    switch (rc) {
    case LPG_OK:
        lpg_wso_session(w, info);
        return LPG_OK;

    case LPG_AGAIN:
        w->ask->pending = json_incref(ev->channels);
        w->ask->pending_last = ev->last;
        return LPG_AGAIN;

    default:
        /* no session and nothing Odoo would select: public */
        return LPG_OK;
    }
}


static void
lpg_wso_select_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_wso_t          *w;
    lpg_odoo_ws_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.event = LPG_ODOO_WS_SUBSCRIBE;
    w = lpg_wso_answered(sw, &ev.channels, &ev.last);

    if (!w->wsc.closing && !w->dead) {
        lpg_wso_session(w, info);
        lpg_wso_subscribe_now(w, &ev);
        lpg_wsc_flush(&w->wsc);
    }

    json_decref(ev.channels);
}


/* LPG_OK: ev runs now; LPG_AGAIN: it waits for a fetch (ev's channels are
 * kept), or replaces the subscribe that waits */
int
lpg_wso_ahead(lpg_wso_t *w, const lpg_odoo_ws_event_t *ev)
{
    if (w->ahead == NULL
        && (w->ahead_done || !lpg_bus_stale(w->sub.db, ev->last))) {
        return LPG_OK;
    }

    if (w->ahead == NULL) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "websocket: last %lld is above this node's largest id %lld: "
                "waiting for a fetch",
                (long long) ev->last, (long long) lpg_bus_cursor(w->sub.db));
    }

    if (lpg_ahead_hold(&w->ahead, w->sub.db, ev->channels, ev->last,
                       lpg_wso_fetched, w)
        != LPG_OK)
    {
        /* no memory: taken for stale, from the cursor (a duplicate at
         * worst, never a loss) */
        return LPG_OK;
    }

    return LPG_AGAIN;
}


static void
lpg_wso_fetched(void *owner, json_t *channels, int64_t last)
{
    lpg_wso_t          *w = owner;
    lpg_odoo_ws_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.event = LPG_ODOO_WS_SUBSCRIBE;
    ev.channels = channels;
    ev.last = last;

    if (!w->wsc.closing && !w->dead) {
        w->ahead_done = true;
        lpg_wso_subscribe_now(w, &ev);
        w->ahead_done = false;
        lpg_wsc_flush(&w->wsc);
    }

    json_decref(channels);
}


void
lpg_wso_ahead_forget(lpg_wso_t *w)
{
    lpg_ahead_drop(&w->ahead);
}
