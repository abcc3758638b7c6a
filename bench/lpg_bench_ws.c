/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_ws.c: lpgate-bench's WebSocket client: --proto=odoo-ws (the
 * way Odoo 16+'s web client talks to /websocket), --proto=ws (lpgate's
 * plain API, <path>/ws, or an nchan websocket subscriber) and the
 * transport under --proto=socketio (lpg_bench_sio.c has its packets).
 *
 * Each connection sends the RFC 6455 upgrade (Origin, a random 16-byte
 * key), checks the 101 and its Sec-WebSocket-Accept (ws/'s
 * lpg_ws_accept_key, nettle's SHA-1), then subscribes with one masked TEXT
 * frame: odoo-ws
 * {"event_name":"subscribe","data":{"channels":["bench-N"],"last":L}},
 * ws {"op":"subscribe","channels":["bench-N"],"last":L}; an nchan
 * subscriber is subscribed by its URL (<path>/bench-N) and sends nothing.
 * Server frames are read by hand: unmasked, unfragmented TEXT frames
 * holding [{"id": N, ...,"message": {...}}, ...] (nchan: one raw message
 * body), each checked and timed as a poll answer is (lpg_bench_parse).
 * A PING gets its PONG; a CLOSE is echoed and the socket reconnects and
 * resubscribes with its `last`, as Odoo's worker does (1001, 1012 and
 * 4002 are reconnects, and socketio's 1000; any other code an error).  Bytes are read into one
 * buffer per process; only a frame cut by the read is copied into the
 * connection, and freed once complete.
 */

#include "lpg_bench_client.h"
#include "lpg_ws_handshake.h"

#include <errno.h>
#include <nettle/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>


/* a larger frame is an error: the bench's own batches are far smaller */
#define LPG_BENCH_WS_MAX_FRAME (16 * 1024 * 1024)


static uint32_t
lpg_bench_ws_mask(lpg_bench_client_t *cl)
{
    /* xorshift64: masks need not be secret for a load generator */
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;

    return (uint32_t) (cl->rng >> 16);
}


/*
 * Appends one masked client frame (FIN set, payload under 126 bytes) to
 * c->out and writes it.  A frame that does not fit behind unsent bytes is
 * an error, counted (a PONG behind a stalled write, never in practice).
 */
void
lpg_bench_ws_send(lpg_bench_client_t *cl, lpg_bench_conn_t *c, unsigned opcode,
                  const void *payload, size_t len)
{
    const uint8_t *in = payload;
    uint8_t       *f;
    uint32_t       mask = lpg_bench_ws_mask(cl);
    size_t         i;

    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }

    if (len > 125 || c->out_len + 6 + len > sizeof(c->out)) {
        cl->res.errors++;
        return;
    }

    f = (uint8_t *) c->out + c->out_len;
    f[0] = (uint8_t) (0x80 | opcode);
    f[1] = (uint8_t) (0x80 | len);
    memcpy(f + 2, &mask, 4);
    for (i = 0; i < len; i++) {
        f[6 + i] = in[i] ^ f[2 + (i & 3)];
    }

    c->out_len += 6 + len;
    lpg_bench_flush(cl, c);
}


void
lpg_bench_ws_upgrade(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    const lpg_bench_opts_t *o = cl->o;
    uint8_t                 raw[16];
    char                    key[BASE64_ENCODE_RAW_LENGTH(16) + 1];
    char                    target[160];
    size_t                  i;
    int                     n;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        for (i = 0; i < sizeof(raw); i++) {
            raw[i] = (uint8_t) lpg_bench_ws_mask(cl);
        }
    }

    base64_encode_raw(key, sizeof(raw), raw);
    key[sizeof(key) - 1] = '\0';
    lpg_ws_accept_key(key, sizeof(key) - 1, c->ws_accept);

    if (o->nchan) {
        snprintf(target, sizeof(target), "%s/bench-%d", o->path, c->channel);
    } else if (o->proto == LPG_BENCH_WS) {
        snprintf(target, sizeof(target), "%s/ws%s%s", o->path,
                 o->db_name ? "?db=" : "", o->db_name ? o->db_name : "");
    } else if (o->proto == LPG_BENCH_SOCKETIO) {
        snprintf(target, sizeof(target),
                 "%s/socket.io/?EIO=4&transport=websocket%s%s", o->path,
                 o->db_name ? "&db=" : "", o->db_name ? o->db_name : "");
    } else {
        snprintf(target, sizeof(target), "%s", o->path);
    }

    n = snprintf(c->out, sizeof(c->out),
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Origin: http://%s:%d\r\n\r\n",
                 target, o->host, o->port, key, o->host, o->port);

    c->out_len = (size_t) n < sizeof(c->out) ? (size_t) n : sizeof(c->out) - 1;
    c->out_off = 0;
}


void
lpg_bench_ws_subscribed(lpg_bench_client_t *cl, lpg_bench_conn_t *c,
                        const char *text, int len)
{
    c->subscribed = true;

    if (len < 0 || len > 125) {
        cl->res.errors++;
        return;
    }

    lpg_bench_ws_send(cl, c, LPG_BENCH_WS_TEXT, text, (size_t) len);
}


/* after the 101: odoo-ws and ws subscribe, nchan has subscribed */
static void
lpg_bench_ws_subscribe(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    char ev[126];
    int  n;

    if (cl->o->nchan) {
        c->subscribed = true;
        lpg_bench_flush(cl, c);
        return;
    }

    if (cl->o->proto == LPG_BENCH_SOCKETIO) {
        return; /* the open packet first */
    }

    if (cl->o->proto == LPG_BENCH_WS) {
        n = snprintf(ev, sizeof(ev),
                     "{\"op\":\"subscribe\",\"channels\":[\"bench-%d\"],"
                     "\"last\":%lld}",
                     c->channel, (long long) c->last);
    } else {
        n = snprintf(ev, sizeof(ev),
                     "{\"event_name\":\"subscribe\",\"data\":{\"channels\":"
                     "[\"bench-%d\"],\"last\":%lld}}",
                     c->channel, (long long) c->last);
    }

    lpg_bench_ws_subscribed(cl, c, ev, n);
}


/* checks the 101; returns the bytes of its head, 0 for more, -1 closed */
static ssize_t
lpg_bench_ws_answer(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                    size_t len)
{
    lpg_bench_http_t h;
    size_t           n;
    int              rc;

    rc = lpg_bench_http_head(p, len, &h);
    if (rc == LPG_AGAIN) {
        return 0;
    }

    cl->res.replies++;

    n = strcspn(h.ws_accept, " \t");
    if (rc == LPG_ERROR || h.status != 101 || n != LPG_WS_ACCEPT_LEN
        || memcmp(h.ws_accept, c->ws_accept, n) != 0)
    {
        lpg_bench_close(cl, c, true);
        return -1;
    }

    c->open = true;
    lpg_bench_ws_subscribe(cl, c);

    return (ssize_t) h.header_len;
}


/*
 * One server close: echo its code, then reconnect; -1 (c is closed).
 * Going away (1001), restart (1012) and Odoo's keep-alive (4002) are
 * reconnects; so is a normal close (1000) of a Socket.IO session's
 * websocket, engine.io's "transport close", from which socket.io-client
 * reconnects.  Any other code is an error.
 */
static ssize_t
lpg_bench_ws_closed(lpg_bench_client_t *cl, lpg_bench_conn_t *c,
                    const uint8_t *payload, uint64_t len)
{
    unsigned code = len >= 2 ? (unsigned) (payload[0] << 8 | payload[1]) : 0;
    uint8_t  echo[2] = { (uint8_t) (code >> 8), (uint8_t) code };
    bool     again = code == 1001 || code == 1012 || code == 4002
        || (code == 1000 && cl->o->proto == LPG_BENCH_SOCKETIO);

    lpg_bench_ws_send(cl, c, LPG_BENCH_WS_CLOSE, echo, code ? 2 : 0);
    lpg_bench_close(cl, c, !again);

    return -1;
}


/*
 * Handles the complete frames in p; returns the bytes used (a cut frame
 * stays), or -1 when c was closed.  now: as lpg_bench_parse's; now[1] is
 * the receive time of the last read.
 */
static ssize_t
lpg_bench_ws_frames(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                    size_t len, int64_t *now)
{
    const uint8_t *f;
    uint64_t       plen;
    size_t         off = 0, head;
    ssize_t        n;
    unsigned       op, i;

    if (!c->open) {
        n = lpg_bench_ws_answer(cl, c, p, len);
        if (n <= 0) {
            return n;
        }
        off = (size_t) n;
    }

    while (len - off >= 2) {
        f = (const uint8_t *) p + off;
        op = f[0] & 0x0f;
        plen = f[1] & 0x7f;
        head = 2;

        /* server frames: FIN, no reserved bit, never masked */
        if ((f[0] & 0xf0) != 0x80 || (f[1] & 0x80)) {
            lpg_bench_close(cl, c, true);
            return -1;
        }

        if (plen >= 126) {
            head = plen == 126 ? 4 : 10;
            if (len - off < head) {
                break;
            }
            for (plen = 0, i = 2; i < head; i++) {
                plen = plen << 8 | f[i];
            }
        }

        if (plen > LPG_BENCH_WS_MAX_FRAME) {
            lpg_bench_close(cl, c, true);
            return -1;
        }
        if (len - off - head < plen) {
            break;
        }

        switch (op) {
        case LPG_BENCH_WS_TEXT:
            if (cl->o->proto == LPG_BENCH_SOCKETIO) {
                if (!lpg_bench_sio_text(cl, c, (const char *) f + head,
                                        (size_t) plen, now)) {
                    return -1;
                }
                break;
            }
            lpg_bench_arrived(cl, now);
            lpg_bench_parse(cl, c, (const char *) f + head,
                            (const char *) f + head + plen, now);
            break;

        case LPG_BENCH_WS_PING:
            lpg_bench_ws_send(cl, c, LPG_BENCH_WS_PONG, f + head, plen);
            break;

        case LPG_BENCH_WS_PONG:
            break;

        case LPG_BENCH_WS_CLOSE:
            return lpg_bench_ws_closed(cl, c, f + head, plen);

        default: /* binary, continuation, unknown */
            lpg_bench_close(cl, c, true);
            return -1;
        }

        off += head + plen;
    }

    return (ssize_t) off;
}


void
lpg_bench_ws_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    int64_t now[3] = { 0, 0, 0 };
    ssize_t n, used;
    size_t  len;
    char   *p;

    for (;;) {
        n = lpg_bench_recv(c, cl->rbuf, LPG_BENCH_WS_RBUF, &now[1]);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            /* closed without a close frame (1006) */
            lpg_bench_close(cl, c, true);
            return;
        }
        if (n == -1) {
            return;
        }

        p = cl->rbuf;
        len = (size_t) n;

        if (c->in_len > 0) {
            /* the rest of a cut frame */
            lpg_bench_reserve(c, c->in_len + len);
            memcpy(c->in + c->in_len, p, len);
            c->in_len += len;
            p = c->in;
            len = c->in_len;
        }

        used = lpg_bench_ws_frames(cl, c, p, len, now);
        if (used < 0) {
            return;
        }

        lpg_bench_keep(c, p, (size_t) used, len);
    }
}
