/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_client.c: one client process of lpgate-bench.
 *
 * It owns `count` keep-alive connections on one epoll loop, each holding
 * one long poll at a time on channel (index % channels): an Odoo JSON-RPC
 * poll carrying `last`, or an nchan long-poll GET carrying the previous
 * answer's Last-Modified and Etag.  Every answer is read whole, each
 * message in it is checked against the connection's sequence number
 * (a skipped number stays missing, a repeated one is a duplicate) and its
 * latency goes into two histograms: arrival, the kernel's receive time of
 * the answer's last bytes (SO_TIMESTAMPNS) minus the trigger time in the
 * message, which is what the server achieved however busy this process is,
 * and read, the time this process read it; then the next poll goes out at
 * once on the same connection.  Both clocks are CLOCK_REALTIME, the one
 * socket timestamps use.
 * A closed connection is reopened and re-polls from where it was, as a
 * browser does.  WebSockets (odoo-ws, ws, socketio) are lpg_bench_ws.c's
 * and event streams (sse) lpg_bench_sse.c's: the same checks and clocks,
 * per frame or event instead of per answer.  The coordinator tells it
 * what to expect (EXPECT, GO) and collects the result (REPORT).
 */

#include "lpg_bench_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


static void lpg_bench_open(lpg_bench_client_t *cl, lpg_bench_conn_t *c);


static void
lpg_bench_ctl_send(lpg_bench_client_t *cl, int type, int64_t a, int64_t b)
{
    lpg_bench_msg_t m = { .type = type, .a = a, .b = b };

    if (write(cl->ctl, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
        _exit(1); /* the coordinator is gone */
    }
}


static void
lpg_bench_build(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    const lpg_bench_opts_t *o = cl->o;
    char                    body[160];
    int                     n, blen;

    if (LPG_BENCH_IS_WS(o->proto)) {
        lpg_bench_ws_upgrade(cl, c);
        return;
    }

    if (o->proto == LPG_BENCH_SSE) {
        lpg_bench_sse_request(cl, c);
        return;
    }

    if (o->proto == LPG_BENCH_ODOO) {
        blen = snprintf(body, sizeof(body),
                        "{\"jsonrpc\": \"2.0\", \"method\": \"call\", "
                        "\"params\": {\"channels\": [\"bench-%d\"], "
                        "\"last\": %lld}}",
                        c->channel, (long long) c->last);
        n = snprintf(c->out, sizeof(c->out),
                     "POST %s/poll%s%s HTTP/1.1\r\nHost: bench\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     o->path, o->db_name ? "?db=" : "",
                     o->db_name ? o->db_name : "", blen, body);

    } else if (c->etag[0] != '\0' || c->lm[0] != '\0') {
        n = snprintf(c->out, sizeof(c->out),
                     "GET %s/bench-%d HTTP/1.1\r\nHost: bench\r\n"
                     "If-Modified-Since: %s\r\nIf-None-Match: %s\r\n\r\n",
                     o->path, c->channel, c->lm, c->etag);

    } else {
        n = snprintf(c->out, sizeof(c->out),
                     "GET %s/bench-%d HTTP/1.1\r\nHost: bench\r\n\r\n", o->path,
                     c->channel);
    }

    c->out_len = (size_t) n < sizeof(c->out) ? (size_t) n : sizeof(c->out) - 1;
    c->out_off = 0;
}


static void
lpg_bench_events(lpg_bench_client_t *cl, lpg_bench_conn_t *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };

    (void) epoll_ctl(cl->ep, EPOLL_CTL_MOD, c->fd, &e);
}


void
lpg_bench_flush(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    ssize_t n;

    while (c->out_off < c->out_len) {
        n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t) n;
            continue;
        }
        if (n == -1 && errno == EAGAIN) {
            lpg_bench_events(cl, c, EPOLLIN | EPOLLOUT);
            return;
        }
        return; /* the read side sees the close */
    }

    /* websockets: ready once the subscribe frame (after the 101) is out;
     * event streams once their 200 was checked (lpg_bench_sse.c) */
    if (!c->sent && cl->o->proto != LPG_BENCH_SSE
        && (!LPG_BENCH_IS_WS(cl->o->proto) || c->subscribed))
    {
        c->sent = true;
        cl->sent++;
    }
}


void
lpg_bench_close(lpg_bench_client_t *cl, lpg_bench_conn_t *c, bool error)
{
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }

    if (!c->connected) {
        cl->connecting--;
    }

    c->connected = false;
    c->open = false;
    c->subscribed = false;
    c->sio = LPG_BENCH_SIO_OPENING;
    c->chunked = false;
    c->chunk_crlf = 0;
    c->chunk_hex = 0;
    c->chunk_left = 0;
    c->in_len = 0;
    if (cl->rbuf != NULL) {
        free(c->in);
        c->in = NULL;
        c->in_size = 0;
    }
    c->retry_at = lpg_bench_now_us() + (error ? 100000 : 0);
    cl->retries++;

    if (error) {
        cl->res.errors++;
    } else {
        cl->res.reconnects++;
    }
}


static void
lpg_bench_open(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    struct epoll_event e;
    int                one = 1;
    int                g = cl->first + (int) (c - cl->conns);
    int                source =
        cl->o->sources > 0 ? g % cl->o->sources : g / LPG_BENCH_PER_SOURCE;

    c->retry_at = 0;
    c->fd = lpg_bench_connect(cl->o->host, cl->o->port, source, false);
    cl->connecting++;

    if (c->fd == -1) {
        lpg_bench_close(cl, c, true);
        return;
    }

    (void) setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));

    e.events = EPOLLIN | EPOLLOUT;
    e.data.ptr = c;
    if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, c->fd, &e) == -1) {
        lpg_bench_close(cl, c, true);
    }
}


static void
lpg_bench_deliver(lpg_bench_client_t *cl, lpg_bench_conn_t *c, int64_t s,
                  int64_t t, const int64_t *now)
{
    int64_t target = cl->target[c->channel];

    if (s <= c->seq) {
        cl->res.duplicates++;
        return;
    }

    if (c->seq < target && s >= target) {
        cl->pending--;
    }

    c->seq = s;
    c->got++;
    lpg_bench_hist_add(&cl->hist, (uint64_t) (now[1] > t ? now[1] - t : 0));
    lpg_bench_hist_add(&cl->hist_read,
                       (uint64_t) (now[2] > t ? now[2] - t : 0));

    if (now[0] >= cl->win_start && now[0] <= cl->win_end) {
        cl->res.in_window++;
    }
}


/* the number after key (digits), or -1 */
static int64_t
lpg_bench_num(const char *p, const char *end)
{
    int64_t v = 0;

    while (p < end && *p == ' ') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return -1;
    }

    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
    }

    return v;
}


void
lpg_bench_parse(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                const char *end, const int64_t *now)
{
    const char *skey, *tkey, *q;
    size_t      klen;
    int64_t     s, t, id;

    if (!cl->o->nchan) {
        skey = "\"s\":";
        tkey = "\"t\":";
        klen = 4;

        if (memmem(p, (size_t) (end - p), "\"error\":", 8) != NULL) {
            cl->res.errors++;
            return;
        }

        for (q = p; (q = memmem(q, (size_t) (end - q), "\"id\":", 5)) != NULL;)
        {
            q += 5;
            id = lpg_bench_num(q, end);
            if (id > c->last) {
                c->last = id;
            }
        }

    } else {
        skey = "s=";
        tkey = "t=";
        klen = 2;
    }

    for (q = p; (q = memmem(q, (size_t) (end - q), skey, klen)) != NULL;) {
        q += klen;
        s = lpg_bench_num(q, end);
        q = memmem(q, (size_t) (end - q), tkey, klen);
        if (q == NULL || s < 0) {
            cl->res.errors++;
            return;
        }
        q += klen;
        t = lpg_bench_num(q, end);
        lpg_bench_deliver(cl, c, s, t, now);
    }
}


void
lpg_bench_arrived(lpg_bench_client_t *cl, int64_t *now)
{
    now[0] = lpg_bench_now_us();
    now[2] = lpg_bench_wall_us();
    if (now[1] == 0) {
        now[1] = now[2];
    }
    cl->res.replies++;
}


void
lpg_bench_reserve(lpg_bench_conn_t *c, size_t need)
{
    char  *in;
    size_t size = c->in_size ? c->in_size : 1024;

    while (size < need) {
        size *= 2;
    }
    if (size == c->in_size) {
        return;
    }

    in = realloc(c->in, size);
    if (in == NULL) {
        fprintf(stderr, "lpgate-bench: out of memory\n");
        _exit(1);
    }

    c->in = in;
    c->in_size = size;
}


void
lpg_bench_keep(lpg_bench_conn_t *c, const char *p, size_t used, size_t len)
{
    len -= used;

    if (len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_size = 0;
        c->in_len = 0;

    } else if (p == c->in) {
        memmove(c->in, c->in + used, len);
        c->in_len = len;

    } else {
        lpg_bench_reserve(c, len);
        memcpy(c->in, p + used, len);
        c->in_len = len;
    }
}


/* *arrival_us stays when the kernel gave no timestamp */
ssize_t
lpg_bench_recv(lpg_bench_conn_t *c, char *buf, size_t size, int64_t *arrival_us)
{
    struct msghdr   mh;
    struct iovec    iov;
    struct cmsghdr *cm;
    char            ctl[CMSG_SPACE(sizeof(struct timespec))];
    ssize_t         n;

    iov.iov_base = buf;
    iov.iov_len = size;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);

    n = recvmsg(c->fd, &mh, 0);

    for (cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm != NULL;
         cm = CMSG_NXTHDR(&mh, cm))
    {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            *arrival_us = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        }
    }

    return n;
}


static void
lpg_bench_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    lpg_bench_http_t h;
    ssize_t          n;
    size_t           total;
    int64_t          now[3] = { 0, 0, 0 };
    int              rc;

    for (;;) {
        if (c->in_size - c->in_len < 1024) {
            c->in_size = c->in_size ? c->in_size * 2 : 4096;
            c->in = realloc(c->in, c->in_size);
            if (c->in == NULL) {
                fprintf(stderr, "lpgate-bench: out of memory\n");
                _exit(1);
            }
        }

        n = lpg_bench_recv(c, c->in + c->in_len, c->in_size - c->in_len,
                           &now[1]);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            /* the server closed: an error unless it said it would */
            lpg_bench_close(cl, c, c->in_len > 0 || n == -1);
            return;
        }
        if (n == -1) {
            return;
        }
        c->in_len += (size_t) n;

        for (;;) {
            rc = lpg_bench_http_head(c->in, c->in_len, &h);
            if (rc == LPG_AGAIN) {
                break;
            }
            if (rc == LPG_ERROR || h.content_length < 0) {
                lpg_bench_close(cl, c, true);
                return;
            }

            total = h.header_len + (size_t) h.content_length;
            if (c->in_len < total) {
                break;
            }

            lpg_bench_arrived(cl, now);

            if (h.status == 200) {
                lpg_bench_parse(cl, c, c->in + h.header_len, c->in + total,
                                now);
                if (h.etag[0] != '\0') {
                    memcpy(c->etag, h.etag, sizeof(c->etag));
                }
                if (h.last_modified[0] != '\0') {
                    memcpy(c->lm, h.last_modified, sizeof(c->lm));
                }

            } else if (h.status != 304 && h.status != 408) {
                cl->res.errors++;
            }

            memmove(c->in, c->in + total, c->in_len - total);
            c->in_len -= total;

            if (h.close) {
                lpg_bench_close(cl, c, false);
                return;
            }

            lpg_bench_build(cl, c);
            lpg_bench_flush(cl, c);
        }
    }
}


static void
lpg_bench_io(lpg_bench_client_t *cl, lpg_bench_conn_t *c, uint32_t ev)
{
    int       err = 0;
    socklen_t len = sizeof(err);

    if (!c->connected) {
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
            || err != 0) {
            lpg_bench_close(cl, c, true);
            return;
        }
        c->connected = true;
        cl->connecting--;
        lpg_bench_events(cl, c, EPOLLIN);
        lpg_bench_build(cl, c);
        lpg_bench_flush(cl, c);
        return;
    }

    if (ev & EPOLLOUT) {
        lpg_bench_events(cl, c, EPOLLIN);
        lpg_bench_flush(cl, c);
    }

    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (LPG_BENCH_IS_WS(cl->o->proto)) {
            lpg_bench_ws_read(cl, c);
        } else if (cl->o->proto == LPG_BENCH_SSE) {
            lpg_bench_sse_read(cl, c);
        } else {
            lpg_bench_read(cl, c);
        }
    }
}


static void
lpg_bench_recount(lpg_bench_client_t *cl)
{
    int i;

    cl->pending = 0;
    for (i = 0; i < cl->count; i++) {
        if (cl->conns[i].seq < cl->target[cl->conns[i].channel]) {
            cl->pending++;
        }
    }
}


static void
lpg_bench_report(lpg_bench_client_t *cl)
{
    int     i;
    int64_t t;

    cl->res.expected = 0;
    cl->res.received = 0;
    for (i = 0; i < cl->count; i++) {
        t = cl->target[cl->conns[i].channel];
        cl->res.expected += t;
        cl->res.received += cl->conns[i].got < t ? cl->conns[i].got : t;
    }

    if (lpg_bench_full(cl->ctl, &cl->res, sizeof(cl->res), true) != LPG_OK
        || lpg_bench_full(cl->ctl, &cl->hist, sizeof(cl->hist), true) != LPG_OK
        || lpg_bench_full(cl->ctl, &cl->hist_read, sizeof(cl->hist), true)
            != LPG_OK)
    {
        _exit(1);
    }
}


/* LPG_DONE on STOP */
static int
lpg_bench_control(lpg_bench_client_t *cl)
{
    lpg_bench_msg_t m;
    int             i;

    if (read(cl->ctl, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
        return LPG_DONE;
    }

    switch (m.type) {
    case LPG_BENCH_MSG_EXPECT:
        if (m.a < 0) {
            for (i = 0; i < cl->o->channels; i++) {
                cl->target[i] = m.b;
            }
        } else if (m.a < cl->o->channels) {
            cl->target[m.a] = m.b;
        }
        break;

    case LPG_BENCH_MSG_GO:
        lpg_bench_recount(cl);
        cl->go = true;
        break;

    case LPG_BENCH_MSG_WINDOW:
        cl->win_start = m.a;
        cl->win_end = m.b;
        break;

    case LPG_BENCH_MSG_REPORT:
        lpg_bench_report(cl);
        break;

    case LPG_BENCH_MSG_STOP:
    default:
        return LPG_DONE;
    }

    return LPG_OK;
}


void
lpg_bench_client_run(const lpg_bench_opts_t *o, int ctl, int first, int count,
                     int64_t start_last)
{
    lpg_bench_client_t cl;
    struct epoll_event evs[256], e;
    lpg_bench_conn_t  *c;
    int                i, n;
    int64_t            now;

    memset(&cl, 0, sizeof(cl));
    cl.o = o;
    cl.ctl = ctl;
    cl.first = first;
    cl.count = count;
    cl.conns = calloc((size_t) count, sizeof(lpg_bench_conn_t));
    cl.target = calloc((size_t) o->channels, sizeof(int64_t));
    cl.ep = epoll_create1(0);
    if (LPG_BENCH_IS_WS(o->proto) || o->proto == LPG_BENCH_SSE) {
        cl.rbuf = malloc(LPG_BENCH_WS_RBUF);
        cl.rng = (uint64_t) lpg_bench_wall_us() * 2654435761u
            ^ ((uint64_t) getpid() << 32) ^ (uint64_t) first;
    }

    if (cl.conns == NULL || cl.target == NULL || cl.ep == -1
        || ((LPG_BENCH_IS_WS(o->proto) || o->proto == LPG_BENCH_SSE)
            && cl.rbuf == NULL))
    {
        fprintf(stderr, "lpgate-bench: client setup failed\n");
        _exit(1);
    }

    for (i = 0; i < count; i++) {
        cl.conns[i].fd = -1;
        cl.conns[i].channel = (first + i) % o->channels;
        cl.conns[i].last = start_last;
    }

    e.events = EPOLLIN;
    e.data.ptr = NULL;
    (void) epoll_ctl(cl.ep, EPOLL_CTL_ADD, ctl, &e);

    for (;;) {
        while (cl.next_open < count && cl.connecting < LPG_BENCH_CONNECTING) {
            lpg_bench_open(&cl, &cl.conns[cl.next_open++]);
        }

        if (!cl.ready_sent && cl.sent == count) {
            cl.ready_sent = true;
            lpg_bench_ctl_send(&cl, LPG_BENCH_MSG_READY, cl.sent,
                               cl.res.errors);
        }

        if (cl.go && cl.pending <= 0) {
            cl.go = false;
            lpg_bench_ctl_send(&cl, LPG_BENCH_MSG_DONE, cl.res.received, 0);
        }

        n = epoll_wait(cl.ep, evs, (int) LPG_NELEMS(evs),
                       cl.retries > 0 ? 20 : 1000);

        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                if (lpg_bench_control(&cl) == LPG_DONE) {
                    _exit(0);
                }
                continue;
            }
            lpg_bench_io(&cl, evs[i].data.ptr, evs[i].events);
        }

        if (cl.retries > 0) {
            now = lpg_bench_now_us();
            for (i = 0; i < cl.next_open; i++) {
                c = &cl.conns[i];
                if (c->fd == -1 && c->retry_at <= now
                    && cl.connecting < LPG_BENCH_CONNECTING) {
                    cl.retries--;
                    lpg_bench_open(&cl, c);
                }
            }
        }
    }
}
