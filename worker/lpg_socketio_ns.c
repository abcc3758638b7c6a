/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio_ns.c: the Socket.IO packets of a session: CONNECT to a
 * namespace (40 with the socket's id, or 44 with why: a namespace that
 * socketio_namespaces does not list, a bad auth, a session Odoo does not
 * vouch for), DISCONNECT, and the packets every namespace sends (an
 * event's ack or `error` event); the events themselves are
 * lpg_socketio_event.c's.
 *
 * A namespace is a channel prefix: "/" serves the channel names as they
 * are, "/chat" the channels "chat/<name>" (the client names "<name>").
 * The connect's auth may carry `last` (the default of the subscribes that
 * name none: a client resumes with the last id it saw), `db`, and
 * `session` (an Odoo session id; else the handshake's session_id cookie):
 * such a session is asked of Odoo as a poll's is (odoo/lpg_session), and
 * the socket is connected only when Odoo vouches for it; its channels are
 * then joined too.
 * A malformed packet gets 44 on its namespace, which it leaves.
 */

#include "lpg_socketio_int.h"
#include "lpg_odoo_db.h"

#include <errno.h>
#include <fnmatch.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>


#define LPG_SIO_NSPS_MAX 32 /* namespaces per session */


static lpg_sio_nsp_t *lpg_sio_nsp_find(lpg_sio_t *s, const char *name,
                                       size_t len);
static void           lpg_sio_refuse(lpg_sio_t *s, const char *nsp, size_t len,
                                     const char *why);
static void           lpg_sio_reject(lpg_sio_nsp_t *n, const char *why);
static bool           lpg_sio_nsp_allowed(const char *name, size_t len);
static void           lpg_sio_connect(lpg_sio_t *s, lpg_sio_packet_t *pkt);
static void           lpg_sio_session_cb(lpg_session_wait_t       *sw,
                                         const lpg_session_info_t *info);
static int lpg_sio_session(lpg_sio_nsp_t *n, const lpg_session_info_t *info);


/* a message ('4') of the session's client */
void
lpg_sio_message(lpg_sio_t *s, const char *data, size_t len)
{
    const char      *why;
    lpg_sio_nsp_t   *n;
    lpg_sio_packet_t pkt;

    if (lpg_sio_decode(data, len, &pkt, &why) != LPG_OK) {
        lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s: bad packet: %s",
                s->sid, why);

        n = lpg_sio_nsp_find(s, pkt.nsp, pkt.nsp_len);
        if (n != NULL) {
            lpg_sio_reject(n, why);

        } else {
            lpg_sio_refuse(s, pkt.nsp, pkt.nsp_len, why);
        }

        return;
    }

    n = lpg_sio_nsp_find(s, pkt.nsp, pkt.nsp_len);

    switch (pkt.type) {
    case LPG_SIO_CONNECT:
        if (n != NULL) {
            lpg_sio_reject(n, "already connected to this namespace");
            break;
        }

        lpg_sio_connect(s, &pkt);
        break;

    case LPG_SIO_DISCONNECT:
        if (n != NULL) {
            lpg_sio_nsp_close(n);
        }
        break;

    case LPG_SIO_EVENT:
        if (n == NULL) {
            lpg_sio_refuse(s, pkt.nsp, pkt.nsp_len,
                           "not connected to this namespace");
            break;
        }

        lpg_sio_event(n, pkt.ack, pkt.data);
        break;

    case LPG_SIO_ACK:
        /* lpgate asks the client for no acks */
        break;

    default:
        if (n != NULL) {
            lpg_sio_reject(n, "a client sends no CONNECT_ERROR");
        } else {
            lpg_sio_refuse(s, pkt.nsp, pkt.nsp_len,
                           "a client sends no CONNECT_ERROR");
        }
        break;
    }

    lpg_sio_packet_free(&pkt);
}


static lpg_sio_nsp_t *
lpg_sio_nsp_find(lpg_sio_t *s, const char *name, size_t len)
{
    lpg_sio_nsp_t *n;

    for (n = s->nsps; n != NULL; n = n->next) {
        if (n->name_len == len && memcmp(n->name, name, len) == 0) {
            return n;
        }
    }

    return NULL;
}


/* 44/nsp,{"message": why} for a namespace the session is not in */
static void
lpg_sio_refuse(lpg_sio_t *s, const char *nsp, size_t len, const char *why)
{
    json_t   *j;
    lpg_buf_t b;

    if (!lpg_sio_nsp_valid(nsp, len)) {
        nsp = "/";
        len = 1;
    }

    memset(&b, 0, sizeof(b));
    j = json_pack("{s:s}", "message", why);

    if (j != NULL
        && lpg_sio_encode_json(&b, LPG_SIO_CONNECT_ERROR, nsp, len, -1, j)
            == LPG_OK)
    {
        lpg_sio_queue(s, b.data, b.len);
    }

    json_decref(j);
    lpg_buf_free(&b);
}


/* 44 for n, which leaves the session */
static void
lpg_sio_reject(lpg_sio_nsp_t *n, const char *why)
{
    lpg_sio_t *s = n->s;

    lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s: namespace %s: %s", s->sid,
            n->name, why);
    lpg_sio_refuse(s, n->name, n->name_len, why);
    lpg_sio_nsp_close(n);
}


/* a namespace matches one of socketio_namespaces' patterns */
static bool
lpg_sio_nsp_allowed(const char *name, size_t len)
{
    char        pat[256], nsp[LPG_SIO_NSP_MAX + 1];
    size_t      plen;
    const char *p, *end;

    memcpy(nsp, name, len);
    nsp[len] = '\0';

    for (p = lpg_sio.ctx.conf->socketio_namespaces; *p != '\0'; p = end) {
        while (*p == ',' || *p == ' ') {
            p++;
        }

        end = p;
        while (*end != '\0' && *end != ',') {
            end++;
        }

        plen = end - p;
        while (plen > 0 && p[plen - 1] == ' ') {
            plen--;
        }

        if (plen == 0 || plen >= sizeof(pat)) {
            continue;
        }

        memcpy(pat, p, plen);
        pat[plen] = '\0';

        if (fnmatch(pat, nsp, 0) == 0) {
            return true;
        }
    }

    return false;
}


static void
lpg_sio_connect(lpg_sio_t *s, lpg_sio_packet_t *pkt)
{
    int                       rc, count = 0;
    json_t                   *auth = pkt->data, *j;
    lpg_sio_nsp_t            *n;
    lpg_http_request_t        r;
    const lpg_session_info_t *info;

    if (!lpg_sio_nsp_allowed(pkt->nsp, pkt->nsp_len)) {
        lpg_sio_refuse(s, pkt->nsp, pkt->nsp_len, "Invalid namespace");
        return;
    }

    for (n = s->nsps; n != NULL; n = n->next) {
        count++;
    }

    if (count >= LPG_SIO_NSPS_MAX) {
        lpg_sio_refuse(s, pkt->nsp, pkt->nsp_len,
                       "too many namespaces on one connection");
        return;
    }

    n = calloc(1, sizeof(*n));
    if (n == NULL || (n->channels = json_array()) == NULL) {
        free(n);
        lpg_sio_refuse(s, pkt->nsp, pkt->nsp_len, "out of memory");
        return;
    }

    memcpy(n->name, pkt->nsp, pkt->nsp_len);
    n->name_len = pkt->nsp_len;
    lpg_sio_random_id(n->id, LPG_SIO_SID_LEN);
    n->s = s;
    n->sub.ops = &lpg_sio_sub_ops;
    n->sub.db = s->db;
    n->sub.version = s->version;
    n->auth_last = -1;
    n->next = s->nsps;
    s->nsps = n;

    j = auth != NULL ? json_object_get(auth, "last") : NULL;
    if (j != NULL) {
        if (!json_is_integer(j) || json_integer_value(j) < 0) {
            lpg_sio_reject(n, "auth.last must be an integer >= 0");
            return;
        }

        n->auth_last = json_integer_value(j);
    }

    j = auth != NULL ? json_object_get(auth, "db") : NULL;
    if (j != NULL) {
        n->sub.db = json_is_string(j)
            ? lpg_shm_find_db(lpg_sio.ctx.shm, json_string_value(j),
                              json_string_length(j))
            : -1;
        if (n->sub.db < 0) {
            lpg_sio_reject(n, "no such database");
            return;
        }

        n->sub.version = lpg_odoo_version(n->sub.db);
    }

    if (n->sub.db < 0) {
        lpg_sio_reject(n, "no such database: pass ?db= or auth.db");
        return;
    }

    /* an Odoo session: auth.session, else the handshake's cookie */
    j = auth != NULL ? json_object_get(auth, "session") : NULL;
    if (j != NULL) {
        if (!json_is_string(j) || json_string_length(j) == 0
            || json_string_length(j) > 256
            || strpbrk(json_string_value(j), ";, ") != NULL)
        {
            lpg_sio_reject(n, "auth.session must be a session id");
            return;
        }

        n->cookie_len = json_string_length(j) + 11;
        n->cookie = malloc(n->cookie_len + 1);
        if (n->cookie == NULL) {
            lpg_sio_reject(n, "out of memory");
            return;
        }

        memcpy(n->cookie, "session_id=", 11);
        memcpy(n->cookie + 11, json_string_value(j), json_string_length(j) + 1);

    } else if (s->cookie != NULL && strstr(s->cookie, "session_id=") != NULL) {
        n->cookie = strdup(s->cookie);
        n->cookie_len = s->cookie_len;
        if (n->cookie == NULL) {
            lpg_sio_reject(n, "out of memory");
            return;
        }
    }

    if (n->cookie == NULL) {
        lpg_sio_connected(n);
        return;
    }

    memset(&r, 0, sizeof(r));
    r.cookie = n->cookie;
    r.cookie_len = n->cookie_len;
    r.host = s->host;
    r.host_len = s->host_len;

    rc = lpg_session_get(&r, n->sub.db, n->sub.version, &n->swait, &info);

    switch (rc) {
    case LPG_OK:
        (void) lpg_sio_session(n, info);
        break;

    case LPG_AGAIN:
        n->swait.cb = lpg_sio_session_cb;
        n->session_wait = true;
        break;

    case LPG_DONE:
        if (j != NULL) {
            /* asked for, but nobody to ask (odoo_url is empty) */
            lpg_sio_reject(n, "sessions are not checked here (odoo_url)");
            break;
        }

        lpg_sio_connected(n);
        break;

    default:
        lpg_sio_reject(n, "the session could not be checked");
        break;
    }
}


static void
lpg_sio_session_cb(lpg_session_wait_t *sw, const lpg_session_info_t *info)
{
    lpg_sio_nsp_t *n =
        (lpg_sio_nsp_t *) ((char *) sw - offsetof(lpg_sio_nsp_t, swait));
    lpg_sio_t *s = n->s;

    n->session_wait = false;

    /* a refused n is freed */
    if (lpg_sio_session(n, info) == LPG_OK && !s->closed) {
        lpg_sio_run_queued(n);
    }

    lpg_sio_flush(s);
}


/* what Odoo said of the connect's session: a user or guest (LPG_OK), or
 * a 44 (LPG_ERROR: n is freed) */
static int
lpg_sio_session(lpg_sio_nsp_t *n, const lpg_session_info_t *info)
{
    size_t i;

    if (!info->known) {
        lpg_sio_reject(n, "the session could not be checked: try again");
        return LPG_ERROR;
    }

    if (info->db < 0 || (info->uid <= 0 && info->guest_id <= 0)) {
        lpg_sio_reject(n, "invalid session");
        return LPG_ERROR;
    }

    n->sub.db = info->db;
    n->sub.version = lpg_odoo_version(info->db);

    if (info->nkeys > 0) {
        n->skeys = calloc(info->nkeys, sizeof(*n->skeys));
        n->skey_lens = calloc(info->nkeys, sizeof(*n->skey_lens));
        if (n->skeys == NULL || n->skey_lens == NULL) {
            lpg_sio_reject(n, "out of memory");
            return LPG_ERROR;
        }

        for (i = 0; i < info->nkeys; i++) {
            n->skeys[i] = strndup(info->keys[i], info->key_lens[i]);
            if (n->skeys[i] == NULL) {
                lpg_sio_reject(n, "out of memory");
                return LPG_ERROR;
            }

            n->skey_lens[i] = info->key_lens[i];
            n->nskeys = i + 1;
        }
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "socket.io: session %s: namespace %s: Odoo session of user "
            "%lld, %zu channel(s)",
            n->s->sid, n->name, (long long) info->uid, n->nskeys);

    lpg_sio_connected(n);

    return LPG_OK;
}


/* 40/nsp,{"sid"}; a session's channels are joined at once */
void
lpg_sio_connected(lpg_sio_nsp_t *n)
{
    json_t    *j;
    lpg_sub_t *s = &n->sub;

    if (n->auth_last > 0 && lpg_bus_stale(s->db, n->auth_last)) {
        if (!n->ahead_done) {
            /* another node's last, perhaps (a client that moved), that
             * this master has not fetched yet: the connect (and the
             * events after it) wait for a fetch */
            lpg_log(LPG_LOG_DEBUG, 0,
                    "socket.io: auth.last %lld is above this node's "
                    "largest id %lld: waiting for a fetch",
                    (long long) n->auth_last,
                    (long long) lpg_bus_cursor(s->db));
            lpg_ahead_wait(&n->ahead, s->db, lpg_sio_fetched);
            return;
        }

        /* above every id still (a reset database): from now */
        n->auth_last = lpg_bus_cursor(s->db);
    }

    n->connected = true;
    j = json_pack("{s:s}", "sid", n->id);
    lpg_sio_send(n, LPG_SIO_CONNECT, -1, j);

    if (n->nskeys == 0) {
        return;
    }

    s->last = n->auth_last >= 0 ? n->auth_last : lpg_bus_cursor(s->db);
    if (lpg_bus_stale(s->db, s->last)) {
        s->last = lpg_bus_cursor(s->db);
    }

    n->old_last = 0;
    n->new_last = s->last;

    if (lpg_sio_rekey(n) == LPG_OK) {
        lpg_sio_replay_start(n);
    }
}


/* n leaves its session (DISCONNECT, a refusal) */
void
lpg_sio_nsp_close(lpg_sio_nsp_t *n)
{
    lpg_sio_nsp_t **pp;
    lpg_sio_t      *s = n->s;

    for (pp = &s->nsps; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }

    n->s = NULL;
    lpg_sio_nsp_free(n);
}


/* one packet of n's namespace; data is taken over */
void
lpg_sio_send(lpg_sio_nsp_t *n, int type, int64_t ack, json_t *data)
{
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    if (n->s == NULL) {
        json_decref(data);
        return;
    }

    if (data == NULL
        || lpg_sio_encode_json(&b, type, n->name, n->name_len, ack, data)
            != LPG_OK)
    {
        lpg_log(LPG_LOG_ERR, ENOMEM, "socket.io: a packet dropped: closed");
        lpg_sio_close(n->s, "out of memory");

    } else {
        lpg_sio_queue(n->s, b.data, b.len);
    }

    json_decref(data);
    lpg_buf_free(&b);
}


/* an event failed: its ack says why, else an `error` event */
void
lpg_sio_error(lpg_sio_nsp_t *n, int64_t ack, const char *event, const char *why)
{
    lpg_log(LPG_LOG_DEBUG, 0, "socket.io: %s: %s", event ? event : "event",
            why);

    if (ack >= 0) {
        lpg_sio_send(n, LPG_SIO_ACK, ack, json_pack("[{s:s}]", "error", why));
        return;
    }

    lpg_sio_send(
        n, LPG_SIO_EVENT, -1,
        json_pack("[s, {s:s, s:s?}]", "error", "message", why, "event", event));
}
