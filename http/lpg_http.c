/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http.c: connection state machine of a worker's HTTP server: accept,
 * read, parse, dispatch to the router, timers, handing a socket over,
 * close (the answer and its writes are lpg_http_out.c's).
 *
 * A connection owns one input buffer that holds the request being parsed
 * (offsets, not pointers, so the buffer may grow) and one output buffer for
 * the answer.  Pipelined requests wait in the input buffer: the parser is
 * paused at the end of each message and resumed after the answer is
 * written.  Limits: max_header_size bytes of request line and headers
 * (431), max_body_size bytes of body (413), client_header_timeout and
 * client_body_timeout (408), send_timeout for a client that stops reading,
 * and past max_conns open connections new requests get 503 with a
 * jittered Retry-After (health still answers).  A connection is freed as
 * soon as its peer closes, whatever it was waiting for.
 */

#include "lpg_http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


static void lpg_http_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_http_parse(lpg_http_conn_t *c);
static void lpg_http_dispatch(lpg_http_conn_t *c);
static void lpg_http_release(lpg_http_conn_t *c);


lpg_http_ctx_t              lpg_http_ctx;
static lpg_http_conn_t     *lpg_http_conns;
static size_t               lpg_http_nconns;
static size_t               lpg_http_ndetached; /* fds given away */
bool                        lpg_http_stopping;
static http_parser_settings lpg_http_settings;


void
lpg_http_init(const lpg_http_ctx_t *ctx)
{
    lpg_http_ctx = *ctx;

    lpg_http_parser_settings(&lpg_http_settings);

    /* request line and headers: 431 past this (HPE_HEADER_OVERFLOW) */
    http_parser_set_max_header_size(ctx->conf->max_header_size);
}


void
lpg_http_accept(int fd, bool admin)
{
    int              one = 1;
    lpg_http_conn_t *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "connection dropped");
        close(fd);
        return;
    }

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    c->fd = fd;
    c->admin = admin;
    c->accepted = lpg_time_mono_ms();
    lpg_http_peer(c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;

    ev_io_init(&c->io, lpg_http_read_cb, fd, EV_READ);
    ev_io_start(lpg_http_ctx.loop, &c->io);

    ev_init(&c->timer, lpg_http_timer_cb);
    c->timer.repeat = lpg_http_ctx.conf->client_header_timeout;
    ev_timer_again(lpg_http_ctx.loop, &c->timer);

    /* near the fd limit: answer 503 (health excepted), never run out;
     * such a connection gets a short time to say what it wants */
    c->over = lpg_http_nconns + lpg_http_ndetached >= lpg_http_ctx.max_conns;
    if (c->over && c->timer.repeat > 5.) {
        c->timer.repeat = 5.;
        ev_timer_again(lpg_http_ctx.loop, &c->timer);
    }

    c->next = lpg_http_conns;
    if (lpg_http_conns != NULL) {
        lpg_http_conns->prev = c;
    }
    lpg_http_conns = c;
    lpg_http_nconns++;

    atomic_fetch_add_explicit(&lpg_http_ctx.stats->connections, 1,
                              memory_order_relaxed);
    atomic_store_explicit(&lpg_http_ctx.stats->active,
                          lpg_http_nconns + lpg_http_ndetached,
                          memory_order_relaxed);
}


void
lpg_http_hold(lpg_http_conn_t *c, void (*cb)(void *data), void *data)
{
    c->hold_cb = cb;
    c->hold_data = data;
    lpg_http_release(c);
}


const lpg_conf_t *
lpg_http_conf(void)
{
    return lpg_http_ctx.conf;
}


void
lpg_http_kick(void)
{
    uint64_t one = 1;

    if (lpg_http_ctx.kick_fd >= 0
        && write(lpg_http_ctx.kick_fd, &one, sizeof(one)) == -1
        && errno != EAGAIN)
    {
        lpg_log(LPG_LOG_ERR, errno, "write(kick eventfd) failed");
    }
}


size_t
lpg_http_open(void)
{
    return lpg_http_nconns + lpg_http_ndetached;
}


int
lpg_http_detach(lpg_http_conn_t *c, char **rest, size_t *rest_len)
{
    int    fd;
    size_t n;

    *rest = NULL;
    *rest_len = 0;

    n = c->in != NULL ? c->in_len - c->parsed : 0;
    if (n > 0) {
        *rest = malloc(n);
        if (*rest == NULL) {
            lpg_log(LPG_LOG_ERR, ENOMEM, "connection dropped");
            lpg_http_close(c);
            return -1;
        }

        memcpy(*rest, c->in + c->parsed, n);
        *rest_len = n;
    }

    /* the fd leaves with the caller: close everything but it */
    fd = c->fd;
    c->fd = -1;
    c->hold_cb = NULL;
    lpg_http_ndetached++;
    lpg_http_close(c);

    return fd;
}


int
lpg_http_take(lpg_http_conn_t *c, char **bytes, size_t *len)
{
    int fd;

    *len = c->in != NULL ? c->in_len : 0;
    *bytes = malloc(*len ? *len : 1);
    if (*bytes == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "malloc() failed");
        return -1;
    }

    if (*len > 0) {
        memcpy(*bytes, c->in, *len);
    }

    fd = c->fd;
    c->fd = -1;
    c->hold_cb = NULL;
    lpg_http_close(c);

    return fd;
}


void
lpg_http_adopt(int fd, const char *bytes, size_t len)
{
    lpg_http_conn_t *c;

    lpg_http_accept(fd, false);

    /* lpg_http_accept puts the new connection first */
    c = lpg_http_conns;
    if (c == NULL || c->fd != fd || len == 0) {
        return;
    }

    c->in = malloc(len > LPG_HTTP_READ_CHUNK ? len : LPG_HTTP_READ_CHUNK);
    if (c->in == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "connection dropped");
        lpg_http_close(c);
        return;
    }

    c->in_cap = len > LPG_HTTP_READ_CHUNK ? len : LPG_HTTP_READ_CHUNK;
    memcpy(c->in, bytes, len);
    c->in_len = len;
    lpg_http_parse(c);
}


void
lpg_http_detached_closed(void)
{
    if (lpg_http_ndetached > 0) {
        lpg_http_ndetached--;
    }

    atomic_store_explicit(&lpg_http_ctx.stats->active,
                          lpg_http_nconns + lpg_http_ndetached,
                          memory_order_relaxed);
}


const char *
lpg_http_client_addr(lpg_http_conn_t *c, char *buf, size_t len)
{
    return lpg_http_client(c, buf, len);
}


size_t
lpg_http_shutdown(void)
{
    lpg_http_conn_t *c, *next;

    lpg_http_stopping = true;

    for (c = lpg_http_conns; c != NULL; c = next) {
        next = c->next;

        /* idle: nothing read of a next request, nothing to write, and
         * nothing waiting to be read (a request that arrived with the
         * signal is answered, with Connection: close); a connection
         * accepted just now whose first request is still on its way gets
         * LPG_HTTP_FRESH_MS for it (the worker calls this again) */
        if (!c->busy && c->out == NULL && c->in_len == 0) {
            char probe;

            if (recv(c->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) > 0
                || (!c->answered
                    && lpg_time_mono_ms() - c->accepted < LPG_HTTP_FRESH_MS))
            {
                continue;
            }

            lpg_http_close(c);
        }
    }

    return lpg_http_nconns + lpg_http_ndetached;
}


static void
lpg_http_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ssize_t          n;
    lpg_http_conn_t *c = (lpg_http_conn_t *) w; /* io is the first member */

    if (revents & EV_CUSTOM) {
        /* a pipelined request waiting since the last answer */
        lpg_http_parse(c);
        return;
    }

    if (revents & EV_WRITE) {
        lpg_http_write(c);
        return;
    }

    if (c->busy || c->out != NULL) {
        /*
         * The answer is pending: do not read the next request, but notice
         * a peer that went away (a parked poll must be freed at once).
         */
        char probe;

        n = recv(c->fd, &probe, 1, MSG_PEEK);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            lpg_http_close(c);
            return;
        }

        if (n == 1) {
            /* pipelined bytes: stop watching until the answer is out */
            ev_io_stop(loop, &c->io);
        }

        return;
    }

    if (c->in_cap - c->in_len < LPG_HTTP_READ_CHUNK) {
        size_t cap = c->in_cap ? c->in_cap * 2 : LPG_HTTP_READ_CHUNK;
        char  *in;

        if (cap > 2
                * ((size_t) lpg_http_ctx.conf->max_header_size
                   + (size_t) lpg_http_ctx.conf->max_body_size))
        {
            /* the parser's limits fire before this; belt and braces */
            lpg_http_error(c, 413);
            return;
        }

        in = realloc(c->in, cap);
        if (in == NULL) {
            lpg_log(LPG_LOG_ERR, ENOMEM, "connection dropped");
            lpg_http_close(c);
            return;
        }

        c->in = in;
        c->in_cap = cap;
    }

    n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);

    if (n == 0) {
        lpg_http_close(c);
        return;
    }

    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR) {
            lpg_log(LPG_LOG_DEBUG, errno, "read() failed");
            lpg_http_close(c);
        }

        return;
    }

    c->in_len += n;

    if (c->parsed == 0) {
        /* the first bytes of a request start the header timeout */
        c->timer.repeat = lpg_http_ctx.conf->client_header_timeout;
        ev_timer_again(loop, &c->timer);
    }

    lpg_http_parse(c);
}


static void
lpg_http_parse(lpg_http_conn_t *c)
{
    size_t n;

    n = http_parser_execute(&c->parser, &lpg_http_settings, c->in + c->parsed,
                            c->in_len - c->parsed);
    c->parsed += n;

    if (c->complete) {
        lpg_http_dispatch(c);
        return;
    }

    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        char client[64];

        if (c->error == 0) {
            c->error = HTTP_PARSER_ERRNO(&c->parser) == HPE_HEADER_OVERFLOW
                ? 431
                : 400;
        }

        lpg_log(LPG_LOG_INFO, 0, "bad request (%d) from %s: %s", c->error,
                lpg_http_client(c, client, sizeof(client)),
                http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        lpg_http_error(c, c->error);
        return;
    }
}


static void
lpg_http_dispatch(lpg_http_conn_t *c)
{
    lpg_http_request_t     r;
    struct http_parser_url u;
    const char            *url = c->in + c->url.off;

    memset(&r, 0, sizeof(r));

    http_parser_url_init(&u);
    if (http_parser_parse_url(url, c->url.len, c->parser.method == HTTP_CONNECT,
                              &u)
            != 0
        || !(u.field_set & (1 << UF_PATH)))
    {
        lpg_http_error(c, 400);
        return;
    }

    r.method = c->parser.method;
    r.path = url + u.field_data[UF_PATH].off;
    r.path_len = u.field_data[UF_PATH].len;

    if (u.field_set & (1 << UF_QUERY)) {
        r.query = url + u.field_data[UF_QUERY].off;
        r.query_len = u.field_data[UF_QUERY].len;
    }

    r.body = c->body ? c->body : "";
    r.body_len = c->body_len;
    r.host = c->host.len ? c->in + c->host.off : NULL;
    r.host_len = c->host.len;
    r.origin = c->origin.len ? c->in + c->origin.off : NULL;
    r.origin_len = c->origin.len;
    r.cookie = c->cookies ? c->cookies
        : c->cookie.len   ? c->in + c->cookie.off
                          : NULL;
    r.cookie_len = c->cookies ? c->cookies_len : c->cookie.len;
    r.keep_alive = http_should_keep_alive(&c->parser);
    r.admin = c->admin;
    r.http_major = c->parser.http_major;
    r.http_minor = c->parser.http_minor;

#define LPG_HTTP_SPAN(f, s)                                                    \
    r.f = c->s.len ? c->in + c->s.off : NULL;                                  \
    r.f##_len = c->s.len

    LPG_HTTP_SPAN(upgrade, upgrade);
    LPG_HTTP_SPAN(connection, connection);
    LPG_HTTP_SPAN(ws_key, ws_key);
    LPG_HTTP_SPAN(ws_version, ws_version);
    LPG_HTTP_SPAN(last_event_id, last_event_id);

    if (lpg_http_proxied(c)) {
        LPG_HTTP_SPAN(fwd_host, xfh);
        LPG_HTTP_SPAN(fwd_proto, xfp);
    }

#undef LPG_HTTP_SPAN

    c->busy = true;

    /* while the router holds the request, only a peer close matters */
    ev_timer_stop(lpg_http_ctx.loop, &c->timer);

    if (c->over
        && !(r.path_len >= 7
             && memcmp(r.path + r.path_len - 7, "/health", 7) == 0))
    {
        char retry[64];

        /* seconds with jitter, so refused clients do not return at once */
        snprintf(retry, sizeof(retry), "Retry-After: %ld\r\n",
                 5 + random() % 10);
        c->closing = true;
        atomic_fetch_add_explicit(&lpg_http_ctx.stats->answered_refused, 1,
                                  memory_order_relaxed);
        lpg_http_respond(c, 503, NULL, retry, "503 Service Unavailable\n", 24);
        return;
    }


    lpg_http_ctx.route(c, &r);
}


/*
 * A held (parked) request needs none of its bytes any more: the router
 * copied what it keeps.  Its buffers go back, so a parked poll costs its
 * connection and poll structures only; unless pipelined bytes follow.
 */
static void
lpg_http_release(lpg_http_conn_t *c)
{
    if (c->parsed != c->in_len) {
        return;
    }

    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    c->in_cap = 0;
    c->parsed = 0;
    lpg_http_spans_reset(c);
    lpg_http_cookie_free(c);

    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->body_cap = 0;
}


static void
lpg_http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_http_conn_t *c =
        (lpg_http_conn_t *) ((char *) w - offsetof(lpg_http_conn_t, timer));

    if (c->out != NULL) {
        lpg_log(LPG_LOG_INFO, 0,
                "client stopped reading: connection cut after send_timeout "
                "with %zu bytes unsent",
                c->out_len - c->out_sent);
        lpg_http_close(c);
        return;
    }

    if (c->in_len > 0 && !c->busy) {
        char client[64];

        lpg_log(LPG_LOG_INFO, 0,
                "client %s sent an incomplete request too slowly",
                lpg_http_client(c, client, sizeof(client)));
        lpg_http_error(c, 408);
        return;
    }

    lpg_http_close(c);
}


void
lpg_http_close(lpg_http_conn_t *c)
{
    if (c->queued) {
        /* the kernel holds c->out until the batch is reaped */
        c->dropped = true;
        return;
    }

    if (c->hold_cb != NULL) {
        /* the holder frees its request; it must not answer any more */
        c->hold_cb(c->hold_data);
        c->hold_cb = NULL;
    }

    ev_io_stop(lpg_http_ctx.loop, &c->io);
    ev_timer_stop(lpg_http_ctx.loop, &c->timer);
    if (c->fd != -1) {
        close(c->fd);
    }

    if (c->prev != NULL) {
        c->prev->next = c->next;

    } else {
        lpg_http_conns = c->next;
    }

    if (c->next != NULL) {
        c->next->prev = c->prev;
    }

    lpg_http_nconns--;
    atomic_store_explicit(&lpg_http_ctx.stats->active,
                          lpg_http_nconns + lpg_http_ndetached,
                          memory_order_relaxed);

    free(c->in);
    free(c->body);
    free(c->out);
    free(c->cookies);
    free(c);
}
