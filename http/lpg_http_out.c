/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_out.c: a connection's answer: the status line and headers
 * (assembled without printf), the writes (at once, or queued in the
 * io_uring batch: lpg_http_batch.c) under send_timeout, the error
 * answers that close the connection, and once an answer is out the next
 * pipelined request (the parser resumed, the keep-alive timer).
 */

#include "lpg_http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void lpg_http_next(lpg_http_conn_t *c);
static void lpg_http_arm(lpg_http_conn_t *c, int events);


static char *
lpg_http_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);

    return p + n;
}


void
lpg_http_respond(lpg_http_conn_t *c, int status, const char *type,
                 const char *headers, const char *body, size_t len)
{
    struct iovec iov = { .iov_base = (void *) body, .iov_len = len };

    lpg_http_respond_iov(c, status, type, headers, &iov, 1);
}


void
lpg_http_respond_iov(lpg_http_conn_t *c, int status, const char *type,
                     const char *headers, const struct iovec *iov, int niov)
{
    int         n, i;
    bool        keep;
    size_t      cap, len = 0, k, v;
    char        num[24], *p;
    const char *reason;

    c->hold_cb = NULL;
    c->answered = true;

    keep = http_should_keep_alive(&c->parser) && !lpg_http_stopping
        && !c->closing && c->error == 0 && status != 408;

    for (i = 0; i < niov; i++) {
        len += iov[i].iov_len;
    }

    reason = lpg_http_reason(status);
    type = type ? type : "text/plain; charset=utf-8";
    cap = 128 + strlen(reason) + strlen(type) + (headers ? strlen(headers) : 0)
        + len;
    c->out = malloc(cap);
    if (c->out == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "response dropped");
        lpg_http_close(c);
        return;
    }

    /* the head, assembled without printf: this runs once per answer */
    for (k = 0, v = len; k == 0 || v > 0; v /= 10) {
        num[sizeof(num) - 1 - k++] = (char) ('0' + v % 10);
    }

    p = c->out;
    p = lpg_http_put(p, "HTTP/1.1 ", 9);
    *p++ = (char) ('0' + status / 100 % 10);
    *p++ = (char) ('0' + status / 10 % 10);
    *p++ = (char) ('0' + status % 10);
    *p++ = ' ';
    p = lpg_http_put(p, reason, strlen(reason));
    p = lpg_http_put(p, "\r\nServer: lpgate\r\nContent-Type: ", 32);
    p = lpg_http_put(p, type, strlen(type));
    p = lpg_http_put(p, "\r\nContent-Length: ", 18);
    p = lpg_http_put(p, num + sizeof(num) - k, k);
    p = lpg_http_put(p, "\r\n", 2);
    if (!keep) {
        p = lpg_http_put(p, "Connection: close\r\n", 19);
    }
    if (headers != NULL) {
        p = lpg_http_put(p, headers, strlen(headers));
    }
    p = lpg_http_put(p, "\r\n", 2);
    n = (int) (p - c->out);

    if (c->parser.method != HTTP_HEAD || !c->complete) {
        for (i = 0; i < niov; i++) {
            if (iov[i].iov_len > 0) {
                memcpy(c->out + n, iov[i].iov_base, iov[i].iov_len);
                n += iov[i].iov_len;
            }
        }
    }

    c->out_len = n;
    c->out_sent = 0;
    c->closing = !keep;

    atomic_fetch_add_explicit(&lpg_http_ctx.stats->requests, 1,
                              memory_order_relaxed);

    lpg_http_write(c);
}


void
lpg_http_write(lpg_http_conn_t *c)
{
    ssize_t n;

    if (c->out_sent < c->out_len && lpg_http_batch_queue(c)) {
        /* lpg_http_sent() goes on */
        return;
    }

    while (c->out_sent < c->out_len) {
        n = write(c->fd, c->out + c->out_sent, c->out_len - c->out_sent);

        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                /* the client must take the rest within send_timeout */
                lpg_http_arm(c, EV_WRITE);
                c->timer.repeat = lpg_http_ctx.conf->send_timeout;
                ev_timer_again(lpg_http_ctx.loop, &c->timer);
                return;
            }

            lpg_log(LPG_LOG_DEBUG, errno, "write() failed");
            lpg_http_close(c);
            return;
        }

        c->out_sent += n;
    }

    free(c->out);
    c->out = NULL;

    if (c->closing) {
        lpg_http_close(c);
        return;
    }

    lpg_http_next(c);
}


/* the answer is out: drop the request and go on with a pipelined one */
static void
lpg_http_next(lpg_http_conn_t *c)
{
    size_t rest;

    rest = c->in_len - c->parsed;
    if (rest > 0) {
        memmove(c->in, c->in + c->parsed, rest);
    }

    c->in_len = rest;
    c->parsed = 0;
    c->busy = false;
    c->complete = false;
    c->headers_done = false;
    c->body_len = 0;
    lpg_http_spans_reset(c);
    lpg_http_cookie_free(c);

    /* a big request buffer is not kept for an idle connection */
    if (c->in_cap > LPG_HTTP_READ_CHUNK * 4 && rest < LPG_HTTP_READ_CHUNK) {
        char *in = realloc(c->in, LPG_HTTP_READ_CHUNK);

        if (in != NULL) {
            c->in = in;
            c->in_cap = LPG_HTTP_READ_CHUNK;
        }
    }

    if (c->body_cap > LPG_HTTP_READ_CHUNK * 4) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }

    http_parser_pause(&c->parser, 0);

    if (lpg_http_stopping && rest == 0) {
        lpg_http_close(c);
        return;
    }

    lpg_http_arm(c, EV_READ);

    c->timer.repeat = rest ? lpg_http_ctx.conf->client_header_timeout
                           : lpg_http_ctx.conf->keepalive_timeout;
    ev_timer_again(lpg_http_ctx.loop, &c->timer);

    if (rest > 0) {
        /* next loop iteration: no recursion however much is pipelined */
        ev_feed_event(lpg_http_ctx.loop, &c->io, EV_CUSTOM);
    }
}


void
lpg_http_error(lpg_http_conn_t *c, int status)
{
    char body[64];
    int  n;

    c->closing = true;

    /* the request, if any, is dropped: do not hand it to the router */
    c->busy = true;
    ev_timer_stop(lpg_http_ctx.loop, &c->timer);

    n = snprintf(body, sizeof(body), "%d %s\n", status,
                 lpg_http_reason(status));

    lpg_http_respond(c, status, NULL, NULL, body, n);
}


static void
lpg_http_arm(lpg_http_conn_t *c, int events)
{
    if (ev_is_active(&c->io) && c->io.events == events) {
        return;
    }

    ev_io_stop(lpg_http_ctx.loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(lpg_http_ctx.loop, &c->io);
}


void
lpg_http_sent(lpg_http_conn_t *c, int res)
{
    if (c->dropped) {
        lpg_http_close(c);
        return;
    }

    if (res < 0 && res != -EAGAIN && res != -EINTR) {
        lpg_log(LPG_LOG_DEBUG, -res, "send() failed");
        lpg_http_close(c);
        return;
    }

    if (res > 0) {
        c->out_sent += res;
    }

    lpg_http_write(c);
}
