/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio_sess.c: engine.io sessions: the table of sids, the open
 * packet, the output (queued for the next poll, or written to the
 * websocket once upgraded), the client's engine.io packets, ping/pong
 * and closing.
 *
 * The server pings every socketio_ping_interval; a session whose pong
 * does not come within socketio_ping_timeout is closed, and so is one
 * whose queued output passes max_answer_size (a client that stopped
 * polling: it comes back with its last id).  Each session has one
 * ev_timer: the next ping, the pong's deadline, then, once closed, its
 * free (so no caller up the stack holds a freed session).
 */

#include "lpg_socketio_int.h"
#include "lpg_odoo_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


#define LPG_SIO_BUCKETS 4096 /* a power of two */


static void lpg_sio_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void lpg_sio_timer(lpg_sio_t *s, int seconds);
static uint32_t lpg_sio_hash(const char *sid, size_t len);
static void     lpg_sio_unlink(lpg_sio_t *s);
static void     lpg_sio_free(lpg_sio_t *s);


lpg_sio_global_t lpg_sio;

static lpg_sio_t *lpg_sio_table[LPG_SIO_BUCKETS];
static lpg_sio_t *lpg_sio_all;

static const char lpg_sio_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
lpg_sio_sess_init(void)
{
}


/* n random base64url characters and a NUL into id (n + 1 bytes) */
void
lpg_sio_random_id(char *id, size_t n)
{
    size_t  i;
    uint8_t r[32];

    if (n > sizeof(r) || getrandom(r, n, 0) != (ssize_t) n) {
        /* never short for 32 bytes; random() keeps ids unique anyway */
        for (i = 0; i < n && i < sizeof(r); i++) {
            r[i] = (uint8_t) random();
        }
    }

    for (i = 0; i < n; i++) {
        id[i] = lpg_sio_b64[r[i] & 63];
    }

    id[n] = '\0';
}


/* a new session for the handshake r, in the table; NULL out of memory */
lpg_sio_t *
lpg_sio_create(const lpg_http_request_t *r)
{
    uint32_t   h;
    lpg_sio_t *s;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        lpg_log(LPG_LOG_ERR, errno, "calloc() failed");
        return NULL;
    }

    snprintf(s->sid, 3, "%02x", (unsigned) lpg_sio.ctx.slot & 0xff);
    lpg_sio_random_id(s->sid + 2, LPG_SIO_SID_LEN - 2);

    s->db = lpg_odoo_pick_db(r);
    s->version = s->db >= 0 ? lpg_odoo_version(s->db) : 0;

    if (r->cookie != NULL) {
        s->cookie = strndup(r->cookie, r->cookie_len);
        s->cookie_len = r->cookie_len;
    }

    if (r->host != NULL) {
        s->host = strndup(r->host, r->host_len);
        s->host_len = r->host_len;
    }

    if ((r->cookie != NULL && s->cookie == NULL)
        || (r->host != NULL && s->host == NULL))
    {
        lpg_log(LPG_LOG_ERR, errno, "strndup() failed");
        free(s->cookie);
        free(s->host);
        free(s);
        return NULL;
    }

    h = lpg_sio_hash(s->sid, LPG_SIO_SID_LEN);
    s->hnext = lpg_sio_table[h];
    lpg_sio_table[h] = s;

    s->next = lpg_sio_all;
    if (lpg_sio_all != NULL) {
        lpg_sio_all->prev = s;
    }
    lpg_sio_all = s;

    lpg_sio.open++;
    atomic_store_explicit(&lpg_sio.ctx.stats->sio_sessions, lpg_sio.open,
                          memory_order_relaxed);

    ev_init(&s->timer, lpg_sio_timer_cb);
    s->timer.data = s;
    lpg_sio_timer(s, lpg_sio.ctx.conf->socketio_ping_interval);

    lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s opened", s->sid);

    return s;
}


lpg_sio_t *
lpg_sio_find(const char *sid, size_t len)
{
    lpg_sio_t *s;

    for (s = lpg_sio_table[lpg_sio_hash(sid, len)]; s != NULL; s = s->hnext) {
        if (len == LPG_SIO_SID_LEN && memcmp(s->sid, sid, len) == 0) {
            return s;
        }
    }

    return NULL;
}


static uint32_t
lpg_sio_hash(const char *sid, size_t len)
{
    size_t   i;
    uint32_t h = 2166136261u;

    for (i = 0; i < len; i++) {
        h = (h ^ (uint8_t) sid[i]) * 16777619u;
    }

    return h & (LPG_SIO_BUCKETS - 1);
}


/* 0{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"} */
int
lpg_sio_open_packet(lpg_sio_t *s, lpg_buf_t *b)
{
    int               n;
    char              text[256];
    const lpg_conf_t *conf = lpg_sio.ctx.conf;

    n = snprintf(text, sizeof(text),
                 "0{\"sid\":\"%s\",\"upgrades\":[\"websocket\"],"
                 "\"pingInterval\":%d,\"pingTimeout\":%d,"
                 "\"maxPayload\":%lld}",
                 s->sid, conf->socketio_ping_interval * 1000,
                 conf->socketio_ping_timeout * 1000,
                 (long long) conf->socketio_max_payload);

    return lpg_buf_append(b, text, n);
}


/*
 * One engine.io packet (its text) for the client: on the websocket at
 * once, else queued for the next poll.  A queue past max_answer_size
 * ends the session.
 */
void
lpg_sio_queue(lpg_sio_t *s, const char *pkt, size_t len)
{
    if (s->closed) {
        return;
    }

    if (s->ws != NULL) {
        (void) lpg_wsc_text(&s->ws->wsc, pkt, len);
        return;
    }

    if (s->out.len + len + 1 > (size_t) lpg_sio.ctx.conf->max_answer_size) {
        lpg_log(LPG_LOG_INFO, 0,
                "socket.io: session %s: %zu bytes wait for a poll "
                "(max_answer_size): closed",
                s->sid, s->out.len);
        lpg_sio_close(s, "output queue full");
        return;
    }

    if ((s->out.len > 0 && lpg_buf_append(&s->out, "\x1e", 1) != LPG_OK)
        || lpg_buf_append(&s->out, pkt, len) != LPG_OK)
    {
        lpg_log(LPG_LOG_ERR, ENOMEM, "socket.io: session %s: closed", s->sid);
        lpg_sio_close(s, "out of memory");
    }
}


/* what is queued goes out: to the websocket, or to a parked poll */
void
lpg_sio_flush(lpg_sio_t *s)
{
    const char *p, *e, *end;

    if (s->closed) {
        return;
    }

    if (s->ws != NULL) {
        /* packets queued before the upgrade, one message each */
        p = s->out.data;
        end = s->out.data + s->out.len;

        while (p != NULL && p < end) {
            e = memchr(p, '\x1e', end - p);
            if (e == NULL) {
                e = end;
            }

            (void) lpg_wsc_text(&s->ws->wsc, p, e - p);
            p = e + 1;
        }

        s->out.len = 0;
        lpg_wsc_flush(&s->ws->wsc);
        return;
    }

    if (s->poll != NULL && s->out.len > 0) {
        lpg_sio_poll_answer(s, s->out.data, s->out.len);
        s->out.len = 0;
    }
}


/* the parked poll is answered with body */
void
lpg_sio_poll_answer(lpg_sio_t *s, const char *body, size_t len)
{
    lpg_http_conn_t *c = s->poll;

    s->poll = NULL;
    lpg_http_respond(c, 200, "text/plain; charset=UTF-8", NULL, body, len);
}


/* an engine.io packet of the client, from either transport */
void
lpg_sio_eio_packet(lpg_sio_t *s, const lpg_eio_packet_t *p)
{
    lpg_buf_t b;

    switch (p->type) {
    case LPG_EIO_CLOSE:
        lpg_sio_close(s, "client close");
        break;

    case LPG_EIO_PING:
        /* protocol 3's client pings; answered all the same */
        memset(&b, 0, sizeof(b));
        if (lpg_buf_append(&b, "3", 1) == LPG_OK
            && lpg_buf_append(&b, p->data, p->len) == LPG_OK)
        {
            lpg_sio_queue(s, b.data, b.len);
        }
        lpg_buf_free(&b);
        break;

    case LPG_EIO_PONG:
        if (s->pinged) {
            s->pinged = false;
            lpg_sio_timer(s, lpg_sio.ctx.conf->socketio_ping_interval);
        }
        break;

    case LPG_EIO_MESSAGE:
        lpg_sio_message(s, p->data, p->len);
        break;

    default:
        /* open, upgrade and noop mean nothing here */
        break;
    }

    if (!s->in_packet) {
        lpg_sio_flush(s);
    }
}


static void
lpg_sio_timer(lpg_sio_t *s, int seconds)
{
    ev_timer_stop(lpg_sio.ctx.loop, &s->timer);
    ev_timer_set(&s->timer, (double) seconds, 0.);
    ev_timer_start(lpg_sio.ctx.loop, &s->timer);
}


static void
lpg_sio_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    lpg_sio_t *s = t->data;

    if (s->closed) {
        lpg_sio_free(s);
        return;
    }

    if (s->pinged) {
        lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s: ping timeout",
                s->sid);
        lpg_sio_close(s, "ping timeout");
        return;
    }

    s->pinged = true;
    lpg_sio_timer(s, lpg_sio.ctx.conf->socketio_ping_timeout);
    lpg_sio_queue(s, "2", 1);
    lpg_sio_flush(s);
}


/*
 * Ends s: out of the table (its sid is unknown from now on), its
 * namespaces' subscriptions released, its parked poll answered with the
 * close packet, its websockets closed.  Freed by its timer, at once.
 */
void
lpg_sio_close(lpg_sio_t *s, const char *why)
{
    lpg_sio_nsp_t *n;
    lpg_sio_ws_t  *ws;

    if (s->closed) {
        return;
    }

    lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s closed: %s", s->sid, why);

    s->closed = true;
    lpg_sio_unlink(s);

    /* the namespaces stop now and are freed with the session: a close
     * can come from inside one's own deliveries (its queue past
     * max_answer_size), which go on iterating over it */
    for (n = s->nsps; n != NULL; n = n->next) {
        n->s = NULL;
        lpg_sio_nsp_stop(n);
    }

    if (s->poll != NULL) {
        lpg_sio_poll_answer(s, "1", 1);
    }

    if (s->ws != NULL) {
        ws = s->ws;
        s->ws = NULL;
        ws->s = NULL;
        lpg_wsc_close(&ws->wsc, LPG_WS_CLEAN);
    }

    if (s->probe != NULL) {
        ws = s->probe;
        s->probe = NULL;
        ws->s = NULL;
        lpg_wsc_close(&ws->wsc, LPG_WS_CLEAN);
    }

    /* freed from the loop, after whatever called this returned */
    ev_timer_stop(lpg_sio.ctx.loop, &s->timer);
    ev_timer_set(&s->timer, 0., 0.);
    ev_timer_start(lpg_sio.ctx.loop, &s->timer);
}


static void
lpg_sio_unlink(lpg_sio_t *s)
{
    lpg_sio_t **pp;

    for (pp = &lpg_sio_table[lpg_sio_hash(s->sid, LPG_SIO_SID_LEN)]; *pp;
         pp = &(*pp)->hnext)
    {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }

    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        lpg_sio_all = s->next;
    }

    if (s->next != NULL) {
        s->next->prev = s->prev;
    }

    lpg_sio.open--;
    atomic_store_explicit(&lpg_sio.ctx.stats->sio_sessions, lpg_sio.open,
                          memory_order_relaxed);
}


static void
lpg_sio_free(lpg_sio_t *s)
{
    lpg_sio_nsp_t *n, *next;

    for (n = s->nsps; n != NULL; n = next) {
        next = n->next;
        lpg_sio_nsp_free(n);
    }

    ev_timer_stop(lpg_sio.ctx.loop, &s->timer);
    lpg_buf_free(&s->out);
    free(s->cookie);
    free(s->host);
    free(s);
}


void
lpg_socketio_shutdown(void)
{
    lpg_sio.stopping = true;

    while (lpg_sio_all != NULL) {
        lpg_sio_close(lpg_sio_all, "stopping");
    }
}


size_t
lpg_socketio_open(void)
{
    return lpg_sio.open;
}
