/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio.c: the HTTP requests of engine.io under
 * <path>/socket.io/: the handshake (a GET without sid: the open packet,
 * as a polling answer or as the first websocket message), a polling GET
 * (answered with the queued packets, else parked until some come), a
 * polling POST (the client's packets), and a websocket with a sid (the
 * probe, "2probe" / "3probe", then "5": the session's output moves to
 * it, and a parked poll gets a noop so that the client's polling ends).
 *
 * Bad requests get engine.io's errors: 400 with {"code": N, "message"}
 * (0 unknown transport, 1 unknown session id, 2 a handshake that is not a
 * GET, 3 a bad request, 5 a protocol version other than 4).  A request
 * whose sid names another worker's slot goes to that worker
 * (lpg_handoff.h).
 */

#include "lpg_socketio_int.h"
#include "lpg_handoff.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const char *eio;
    size_t      eio_len;
    const char *transport;
    size_t      transport_len;
    const char *sid;
    size_t      sid_len;
    bool        polling;
} lpg_sio_query_t;


static void lpg_sio_query(const lpg_http_request_t *r, lpg_sio_query_t *q);
static void lpg_sio_http_error(lpg_http_conn_t *c, int code);
static void lpg_sio_handshake(lpg_http_conn_t *c, const lpg_http_request_t *r,
                              const lpg_sio_query_t *q);
static void lpg_sio_ws_open(lpg_http_conn_t *c, const lpg_http_request_t *r,
                            lpg_sio_t *s, bool fresh);
static void lpg_sio_get(lpg_http_conn_t *c, lpg_sio_t *s);
static void lpg_sio_post(lpg_http_conn_t *c, const lpg_http_request_t *r,
                         lpg_sio_t *s);
static void lpg_sio_poll_gone(void *data);
static void lpg_sio_ws_closing(lpg_wsc_t *w);
static void lpg_sio_ws_free(lpg_wsc_t *w);
static void lpg_sio_ws_probe(lpg_sio_ws_t *ws, const lpg_eio_packet_t *p);


static const lpg_wsc_app_t lpg_sio_app = {
    "socket.io",
    lpg_sio_ws_message,
    lpg_sio_ws_closing,
    lpg_sio_ws_free,
    NULL,
    false,
    offsetof(lpg_shm_worker_t, sio_ws_open),
    true,
};

static const char *const lpg_sio_errors[] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method",
    "Bad request",       "Forbidden",          "Unsupported protocol version",
};

static const char lpg_sio_text[] = "text/plain; charset=UTF-8";


void
lpg_socketio_init(const lpg_http_ctx_t *ctx)
{
    lpg_sio.ctx = *ctx;
    lpg_wsc_init(ctx);
    lpg_sio_sess_init();
    lpg_ahead_init(ctx->loop);
}


void
lpg_socketio_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int             slot;
    char            hex[3];
    lpg_sio_t      *s;
    lpg_sio_query_t q;

    lpg_sio_query(r, &q);

    if (q.transport == NULL
        || (!q.polling
            && !(q.transport_len == 9
                 && memcmp(q.transport, "websocket", 9) == 0)))
    {
        lpg_sio_http_error(c, LPG_SIO_ERR_TRANSPORT);
        return;
    }

    if (q.eio == NULL || q.eio_len != 1 || q.eio[0] != '4') {
        lpg_sio_http_error(c, LPG_SIO_ERR_VERSION);
        return;
    }

    if (q.sid == NULL) {
        lpg_sio_handshake(c, r, &q);
        return;
    }

    if (q.sid_len != LPG_SIO_SID_LEN) {
        lpg_sio_http_error(c, LPG_SIO_ERR_SID);
        return;
    }

    /* the first two hex digits: the slot of the worker that holds it */
    hex[0] = q.sid[0];
    hex[1] = q.sid[1];
    hex[2] = '\0';
    slot = (int) strtol(hex, NULL, 16);

    if (slot != lpg_sio.ctx.slot && !r->admin && slot < LPG_MAX_WORKERS
        && slot < lpg_sio.ctx.conf->workers)
    {
        if (lpg_handoff_pass(c, slot) != LPG_OK) {
            lpg_http_respond(c, 503, NULL, "Retry-After: 1\r\n",
                             "503 Service Unavailable\n", 24);
        }

        return;
    }

    s = lpg_sio_find(q.sid, q.sid_len);
    if (s == NULL) {
        lpg_sio_http_error(c, LPG_SIO_ERR_SID);
        return;
    }

    if (!q.polling) {
        if (r->method != HTTP_GET || r->upgrade == NULL || s->ws != NULL
            || s->probe != NULL)
        {
            lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
            return;
        }

        lpg_sio_ws_open(c, r, s, false);
        return;
    }

    if (s->ws != NULL) {
        /* upgraded: polling is over for this session */
        lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
        return;
    }

    switch (r->method) {
    case HTTP_GET:
        lpg_sio_get(c, s);
        break;

    case HTTP_POST:
        lpg_sio_post(c, r, s);
        break;

    default:
        lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
        break;
    }
}


/* EIO, transport and sid of the query string (borrowed from r) */
static void
lpg_sio_query(const lpg_http_request_t *r, lpg_sio_query_t *q)
{
    size_t      klen;
    const char *p, *e, *eq, *end = r->query + r->query_len;

    memset(q, 0, sizeof(*q));

    for (p = r->query; p != NULL && p < end; p = e + 1) {
        e = memchr(p, '&', end - p);
        if (e == NULL) {
            e = end;
        }

        eq = memchr(p, '=', e - p);
        if (eq == NULL) {
            continue;
        }

        klen = eq - p;

        if (klen == 3 && memcmp(p, "EIO", 3) == 0) {
            q->eio = eq + 1;
            q->eio_len = e - eq - 1;

        } else if (klen == 9 && memcmp(p, "transport", 9) == 0) {
            q->transport = eq + 1;
            q->transport_len = e - eq - 1;

        } else if (klen == 3 && memcmp(p, "sid", 3) == 0) {
            q->sid = eq + 1;
            q->sid_len = e - eq - 1;
        }
    }

    q->polling = q->transport != NULL && q->transport_len == 7
        && memcmp(q->transport, "polling", 7) == 0;
}


/* engine.io's error answer */
static void
lpg_sio_http_error(lpg_http_conn_t *c, int code)
{
    int  n;
    char body[128];

    lpg_log(LPG_LOG_DEBUG, 0, "socket.io: request refused: %s",
            lpg_sio_errors[code]);

    n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code,
                 lpg_sio_errors[code]);
    lpg_http_respond(c, code == LPG_SIO_ERR_FORBIDDEN ? 403 : 400,
                     "application/json", NULL, body, n);
}


/* a new session: its open packet, as a polling answer or on a websocket */
static void
lpg_sio_handshake(lpg_http_conn_t *c, const lpg_http_request_t *r,
                  const lpg_sio_query_t *q)
{
    lpg_buf_t  b;
    lpg_sio_t *s;

    if (r->method != HTTP_GET) {
        lpg_sio_http_error(c, LPG_SIO_ERR_METHOD);
        return;
    }

    if (!q->polling && r->upgrade == NULL) {
        lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
        return;
    }

    if (lpg_sio.stopping || lpg_sio.open >= lpg_sio.ctx.max_conns) {
        /* a session costs memory but no descriptor until it polls: at
         * most as many as the worker's connections */
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n",
                         "503 Service Unavailable\n", 24);
        return;
    }

    s = lpg_sio_create(r);
    if (s == NULL) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n",
                         "503 Service Unavailable\n", 24);
        return;
    }

    if (!q->polling) {
        lpg_sio_ws_open(c, r, s, true);
        return;
    }

    memset(&b, 0, sizeof(b));

    if (lpg_sio_open_packet(s, &b) != LPG_OK) {
        lpg_buf_free(&b);
        lpg_sio_close(s, "out of memory");
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n",
                         "503 Service Unavailable\n", 24);
        return;
    }

    lpg_http_respond(c, 200, lpg_sio_text, NULL, b.data, b.len);
    lpg_buf_free(&b);
}


/*
 * A websocket for s: a new session's only transport (its open packet
 * goes first), or the probe of a polling session.
 */
static void
lpg_sio_ws_open(lpg_http_conn_t *c, const lpg_http_request_t *r, lpg_sio_t *s,
                bool fresh)
{
    lpg_buf_t     b;
    lpg_sio_ws_t *ws;

    ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        if (fresh) {
            lpg_sio_close(s, "out of memory");
        }

        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n",
                         "503 Service Unavailable\n", 24);
        return;
    }

    if (lpg_wsc_handshake(c, r, &ws->wsc, &lpg_sio_app) != LPG_OK) {
        free(ws);
        if (fresh) {
            lpg_sio_close(s, "bad websocket handshake");
        }

        return;
    }

    ws->s = s;
    if (fresh) {
        s->ws = ws;
    } else {
        s->probe = ws;
    }

    lpg_wsc_upgrade(&ws->wsc);

    /* on failure the free callback ran: the session knows */
    if (!fresh || s->closed) {
        return;
    }

    memset(&b, 0, sizeof(b));

    if (lpg_sio_open_packet(s, &b) != LPG_OK) {
        lpg_buf_free(&b);
        lpg_sio_close(s, "out of memory");
        return;
    }

    lpg_sio_queue(s, b.data, b.len);
    lpg_buf_free(&b);
    lpg_sio_flush(s);
}


/* a polling GET: the queued packets, or parked until some come */
static void
lpg_sio_get(lpg_http_conn_t *c, lpg_sio_t *s)
{
    if (s->poll != NULL) {
        /* engine.io: two polls at once end the session */
        lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
        lpg_sio_close(s, "overlapping polls");
        return;
    }

    if (s->probe != NULL && s->probed) {
        /* upgrading: the client must stop polling, a noop ends it */
        lpg_http_respond(c, 200, lpg_sio_text, NULL, "6", 1);
        return;
    }

    if (s->out.len > 0) {
        lpg_http_respond(c, 200, lpg_sio_text, NULL, s->out.data, s->out.len);
        s->out.len = 0;
        return;
    }

    s->poll = c;
    lpg_http_hold(c, lpg_sio_poll_gone, s);
}


static void
lpg_sio_poll_gone(void *data)
{
    lpg_sio_t *s = data;

    s->poll = NULL;
}


/* a polling POST: the client's packets, answered "ok" */
static void
lpg_sio_post(lpg_http_conn_t *c, const lpg_http_request_t *r, lpg_sio_t *s)
{
    int              rc;
    size_t           off = 0;
    const char      *why;
    lpg_eio_packet_t p;

    if (r->body_len > (size_t) lpg_sio.ctx.conf->socketio_max_payload) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "socket.io: a payload of %zu bytes (socketio_max_payload)",
                r->body_len);
        lpg_http_respond(c, 413, "application/json", NULL,
                         "{\"code\":3,\"message\":\"Payload too large\"}", 41);
        return;
    }

    /* the whole payload is checked before any packet of it is used */
    while ((rc = lpg_eio_payload_next(r->body, r->body_len, &off, &p, &why))
           == LPG_OK)
    {
    }

    if (rc == LPG_ERROR) {
        lpg_log(LPG_LOG_DEBUG, 0, "socket.io: bad payload: %s", why);
        lpg_sio_http_error(c, LPG_SIO_ERR_REQUEST);
        lpg_sio_close(s, "parser error");
        return;
    }

    off = 0;
    s->in_packet = true;

    while (!s->closed
           && lpg_eio_payload_next(r->body, r->body_len, &off, &p, &why)
               == LPG_OK)
    {
        lpg_sio_eio_packet(s, &p);
    }

    s->in_packet = false;

    lpg_http_respond(c, 200, "text/html", NULL, "ok", 2);

    if (!s->closed) {
        lpg_sio_flush(s);
    }
}


/* a complete message of one of the transport's websockets */
void
lpg_sio_ws_message(lpg_wsc_t *w, const uint8_t *msg, size_t len, bool binary)
{
    const char      *why;
    lpg_sio_ws_t    *ws = lpg_wsc_data(w, lpg_sio_ws_t, wsc);
    lpg_sio_t       *s = ws->s;
    lpg_eio_packet_t p;

    if (s == NULL || s->closed || w->closing) {
        return;
    }

    if (len > (size_t) lpg_sio.ctx.conf->socketio_max_payload) {
        lpg_log(LPG_LOG_DEBUG, 0,
                "socket.io: a message of %zu bytes (socketio_max_payload)",
                len);
        lpg_wsc_close(w, LPG_WS_MESSAGE_TOO_BIG);
        return;
    }

    if (binary || lpg_eio_decode((const char *) msg, len, &p, &why) != LPG_OK) {
        lpg_log(LPG_LOG_DEBUG, 0, "socket.io: bad websocket message: %s",
                binary ? "binary" : why);
        lpg_wsc_close(w, LPG_WS_PROTOCOL_ERROR);
        return;
    }

    if (ws == s->probe) {
        lpg_sio_ws_probe(ws, &p);
        return;
    }

    lpg_sio_eio_packet(s, &p);
}


/* the upgrade: "2probe" is answered "3probe", then "5" moves the session */
static void
lpg_sio_ws_probe(lpg_sio_ws_t *ws, const lpg_eio_packet_t *p)
{
    lpg_sio_t *s = ws->s;

    if (p->type == LPG_EIO_PING && p->len == 5
        && memcmp(p->data, "probe", 5) == 0) {
        (void) lpg_wsc_text(&ws->wsc, "3probe", 6);
        s->probed = true;

        if (s->poll != NULL) {
            lpg_sio_poll_answer(s, "6", 1);
        }

        return;
    }

    if (p->type == LPG_EIO_UPGRADE && s->probed) {
        s->probe = NULL;
        s->ws = ws;

        if (s->poll != NULL) {
            lpg_sio_poll_answer(s, "6", 1);
        }

        lpg_log(LPG_LOG_DEBUG, 0, "socket.io: session %s upgraded", s->sid);
        lpg_sio_flush(s);
        return;
    }

    if (p->type == LPG_EIO_NOOP) {
        return;
    }

    lpg_log(LPG_LOG_DEBUG, 0,
            "socket.io: packet %d on a websocket being probed: closed",
            p->type);
    lpg_wsc_close(&ws->wsc, LPG_WS_PROTOCOL_ERROR);
}


/* deliveries stop: the session ends with its websocket, a probe alone */
static void
lpg_sio_ws_closing(lpg_wsc_t *w)
{
    lpg_sio_ws_t *ws = lpg_wsc_data(w, lpg_sio_ws_t, wsc);
    lpg_sio_t    *s = ws->s;

    if (s == NULL) {
        return;
    }

    ws->s = NULL;

    if (s->probe == ws) {
        s->probe = NULL;
        s->probed = false;
        return;
    }

    if (s->ws == ws) {
        s->ws = NULL;
        lpg_sio_close(s, "transport close");
    }
}


static void
lpg_sio_ws_free(lpg_wsc_t *w)
{
    lpg_sio_ws_t *ws = lpg_wsc_data(w, lpg_sio_ws_t, wsc);

    /* a socket cut before its closing (a failed upgrade) */
    lpg_sio_ws_closing(w);
    free(ws);
}
