/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_sse.c: lpgate-bench's Server-Sent Events client
 * (--proto=sse), the way a browser's EventSource reads a stream.
 *
 * Each connection sends one GET with Accept: text/event-stream: lpgate's
 * <path>/sse?channels=bench-N&last=L (L the largest id seen, so a
 * reconnect resumes), or nchan's EventSource subscriber <path>/bench-N
 * with Last-Event-ID once it has seen an event.  The answer must be a 200
 * of type text/event-stream; its body is read as it comes, plain (lpgate:
 * it ends with the connection) or chunked (nchan), the chunks undone in
 * place.  Events end with an empty line: `id:` is the bus id (lpgate) or
 * nchan's message id, each `data:` line ({"channel", "message"}, or
 * nchan's raw body) is checked and timed as a poll answer is
 * (lpg_bench_parse), one reply per event; comment lines (heartbeats) and
 * `retry:` are skipped.  A stream the server ends is reopened (counted as
 * a reconnect); a refused one is an error.  Bytes are read into one
 * buffer per process; only an event cut by the read is kept in the
 * connection, and freed once complete.
 */

#include "lpg_bench_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void
lpg_bench_sse_request(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    const lpg_bench_opts_t *o = cl->o;
    int                     n;

    if (o->nchan) {
        n = snprintf(c->out, sizeof(c->out),
                     "GET %s/bench-%d HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Accept: text/event-stream\r\n%s%s%s\r\n",
                     o->path, c->channel, o->host, o->port,
                     c->etag[0] ? "Last-Event-ID: " : "", c->etag,
                     c->etag[0] ? "\r\n" : "");
    } else {
        n = snprintf(c->out, sizeof(c->out),
                     "GET %s/sse?channels=bench-%d&last=%lld%s%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                     o->path, c->channel, (long long) c->last,
                     o->db_name ? "&db=" : "", o->db_name ? o->db_name : "",
                     o->host, o->port);
    }

    c->out_len = (size_t) n < sizeof(c->out) ? (size_t) n : sizeof(c->out) - 1;
    c->out_off = 0;
}


/*
 * Undoes the chunked encoding of [p, p + len) in place, across reads (the
 * state is c's); returns the data bytes now at p, or -1 for a bad chunk
 * size.  The last chunk (size 0) ends nothing here: the close follows.
 */
static ssize_t
lpg_bench_sse_dechunk(lpg_bench_conn_t *c, char *p, size_t len)
{
    size_t r = 0, w = 0, k;
    char  *end;
    long   size;

    while (r < len) {
        if (c->chunk_crlf > 0) {
            r++;
            c->chunk_crlf--;
            continue;
        }

        if (c->chunk_left > 0) {
            k = len - r < (size_t) c->chunk_left ? len - r
                                                 : (size_t) c->chunk_left;
            memmove(p + w, p + r, k);
            w += k;
            r += k;
            c->chunk_left -= (int64_t) k;
            if (c->chunk_left == 0) {
                c->chunk_crlf = 2;
            }
            continue;
        }

        if (p[r] != '\n') {
            if (c->chunk_hex == sizeof(c->chunk_line) - 1) {
                return -1;
            }
            c->chunk_line[c->chunk_hex++] = p[r++];
            continue;
        }

        r++;
        c->chunk_line[c->chunk_hex] = '\0';
        c->chunk_hex = 0;
        size = strtol(c->chunk_line, &end, 16);
        if (end == c->chunk_line || size < 0
            || (*end != '\r' && *end != ';' && *end != '\0'))
        {
            return -1;
        }
        c->chunk_left = size;
        if (size == 0) {
            c->chunk_crlf = 2;
        }
    }

    return (ssize_t) w;
}


/* one event [p, end) without its empty line */
static void
lpg_bench_sse_event(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                    const char *end, int64_t *now)
{
    const char *eol, *v;
    size_t      n;
    bool        arrived = false;
    int64_t     id;

    for (; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        if (eol - p >= 5 && memcmp(p, "data:", 5) == 0) {
            if (!arrived) {
                arrived = true;
                lpg_bench_arrived(cl, now);
            }
            lpg_bench_parse(cl, c, p + 5, eol, now);

        } else if (eol - p >= 3 && memcmp(p, "id:", 3) == 0) {
            v = p + 3 + (eol - p > 3 && p[3] == ' ');
            n = (size_t) (eol - v);
            if (n > 0 && v[n - 1] == '\r') {
                n--;
            }
            if (cl->o->nchan) {
                /* the Last-Event-ID of a reconnect */
                if (n >= sizeof(c->etag)) {
                    n = sizeof(c->etag) - 1;
                }
                memcpy(c->etag, v, n);
                c->etag[n] = '\0';
            } else {
                id = strtoll(v, NULL, 10);
                if (id > c->last) {
                    c->last = id;
                }
            }
        }
        /* ": heartbeat", "retry:", "event:": nothing to check */
    }
}


/* the complete events of [p, p + len); returns the bytes used */
static size_t
lpg_bench_sse_events(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                     size_t len, int64_t *now)
{
    const char *e;
    size_t      off = 0;

    while ((e = memmem(p + off, len - off, "\n\n", 2)) != NULL) {
        lpg_bench_sse_event(cl, c, p + off, e, now);
        off = (size_t) (e - p) + 2;
    }

    return off;
}


/* checks the answer's head; returns its bytes, 0 for more, -1 closed */
static ssize_t
lpg_bench_sse_head(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                   size_t len)
{
    lpg_bench_http_t h;
    int              rc;

    rc = lpg_bench_http_head(p, len, &h);
    if (rc == LPG_AGAIN) {
        return 0;
    }

    cl->res.replies++;

    if (rc == LPG_ERROR || h.status != 200 || !h.event_stream) {
        lpg_bench_close(cl, c, true);
        return -1;
    }

    c->open = true;
    c->chunked = h.chunked;

    if (!c->sent) {
        /* the stream is subscribed: this one counts as sent */
        c->sent = true;
        cl->sent++;
    }

    return (ssize_t) h.header_len;
}


void
lpg_bench_sse_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    int64_t now[3] = { 0, 0, 0 };
    ssize_t n, d;
    size_t  len, off, used;
    char   *p;

    for (;;) {
        n = lpg_bench_recv(c, cl->rbuf, LPG_BENCH_WS_RBUF, &now[1]);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            /* a stream the server ended is reopened, as EventSource does */
            lpg_bench_close(cl, c, !c->open || n == -1);
            return;
        }
        if (n == -1) {
            return;
        }

        p = cl->rbuf;
        len = (size_t) n;
        off = 0;

        if (!c->open) {
            if (c->in_len > 0) {
                lpg_bench_reserve(c, c->in_len + len);
                memcpy(c->in + c->in_len, p, len);
                c->in_len += len;
                p = c->in;
                len = c->in_len;
            }
            d = lpg_bench_sse_head(cl, c, p, len);
            if (d < 0) {
                return;
            }
            if (d == 0) {
                lpg_bench_keep(c, p, 0, len);
                continue;
            }
            off = (size_t) d;
        }

        /* p + off: bytes as they came; then the events' text */
        d = c->chunked ? lpg_bench_sse_dechunk(c, p + off, len - off)
                       : (ssize_t) (len - off);
        if (d < 0) {
            lpg_bench_close(cl, c, true);
            return;
        }
        len = off + (size_t) d;

        if (off == 0 && c->in_len > 0) {
            /* the rest of a cut event */
            lpg_bench_reserve(c, c->in_len + len);
            memcpy(c->in + c->in_len, p, len);
            c->in_len += len;
            p = c->in;
            len = c->in_len;
        }

        used = off + lpg_bench_sse_events(cl, c, p + off, len - off, now);
        if (c->fd == -1) {
            return;
        }

        lpg_bench_keep(c, p, used, len);
    }
}
