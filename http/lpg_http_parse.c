/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_parse.c: what a connection learns from its bytes.
 *
 * The http-parser callbacks of every connection: the URL, the headers
 * lpgate reads (Host, Origin, X-Forwarded-For/-Host/-Proto, Cookie, and
 * the websocket handshake's Upgrade, Connection, Sec-WebSocket-Key and
 * -Version) as spans of the
 * input buffer, the body (copied, max_body_size at most: 413) and the
 * pause at the end of each message; plus the status line's reason, the
 * socket peer and the client's address behind trusted proxies.
 */

#include "lpg_http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


static bool              lpg_http_trusted(const char *addr, size_t len);
static lpg_http_header_e lpg_http_header_kind(const char *name, size_t len);
static lpg_http_span_t  *lpg_http_span(lpg_http_conn_t *c, lpg_http_header_e h);
static int lpg_http_cookie_add(lpg_http_conn_t *c, const char *s, size_t n);

static int lpg_http_on_message_begin(http_parser *p);
static int lpg_http_on_url(http_parser *p, const char *at, size_t len);
static int lpg_http_on_field(http_parser *p, const char *at, size_t len);
static int lpg_http_on_value(http_parser *p, const char *at, size_t len);
static int lpg_http_on_headers_complete(http_parser *p);
static int lpg_http_on_body(http_parser *p, const char *at, size_t len);
static int lpg_http_on_message_complete(http_parser *p);

void
lpg_http_parser_settings(http_parser_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->on_message_begin = lpg_http_on_message_begin;
    s->on_url = lpg_http_on_url;
    s->on_header_field = lpg_http_on_field;
    s->on_header_value = lpg_http_on_value;
    s->on_headers_complete = lpg_http_on_headers_complete;
    s->on_body = lpg_http_on_body;
    s->on_message_complete = lpg_http_on_message_complete;
}


static int
lpg_http_on_message_begin(http_parser *p)
{
    lpg_http_conn_t *c = p->data;

    c->header = LPG_HTTP_H_NONE;
    c->in_field = false;

    return 0;
}


static int
lpg_http_on_url(http_parser *p, const char *at, size_t len)
{
    lpg_http_conn_t *c = p->data;

    if (c->url.len == 0) {
        c->url.off = at - c->in;
    }

    c->url.len += len;

    return 0;
}


static int
lpg_http_on_field(http_parser *p, const char *at, size_t len)
{
    lpg_http_conn_t *c = p->data;

    if (!c->in_field) {
        c->in_field = true;
        c->field.off = at - c->in;
        c->field.len = 0;
    }

    c->field.len += len;

    return 0;
}


static int
lpg_http_on_value(http_parser *p, const char *at, size_t len)
{
    const char      *name;
    lpg_http_span_t *v;
    lpg_http_conn_t *c = p->data;

    if (c->in_field) {
        c->in_field = false;
        name = c->in + c->field.off;

        if (c->field.len == 4 && strncasecmp(name, "host", 4) == 0) {
            c->header = LPG_HTTP_H_HOST;
            c->host.off = at - c->in;
            c->host.len = 0;

        } else if (c->field.len == 6 && strncasecmp(name, "origin", 6) == 0) {
            c->header = LPG_HTTP_H_ORIGIN;
            c->origin.off = at - c->in;
            c->origin.len = 0;

        } else if (c->field.len == 15
                   && strncasecmp(name, "x-forwarded-for", 15) == 0) {
            c->header = LPG_HTTP_H_XFF;
            c->xff.off = at - c->in;
            c->xff.len = 0;

        } else if (c->field.len == 6 && strncasecmp(name, "cookie", 6) == 0) {
            c->header = LPG_HTTP_H_COOKIE;

            if (c->cookie.off == 0) {
                c->cookie.off = at - c->in;
                c->cookie.len = 0;

            } else {
                /*
                 * another Cookie header (HTTP/2 crumbs, passed on one by
                 * one by nginx 1.22): read as one, "; "-joined (RFC 6265
                 * 5.4), in a buffer of its own from here on
                 */
                if ((c->cookies == NULL
                     && lpg_http_cookie_add(c, c->in + c->cookie.off,
                                            c->cookie.len)
                         != LPG_OK)
                    || lpg_http_cookie_add(c, "; ", 2) != LPG_OK)
                {
                    c->error = 503;
                    return -1;
                }
            }

        } else {
            c->header = lpg_http_header_kind(name, c->field.len);
            v = lpg_http_span(c, c->header);
            if (v != NULL) {
                v->off = at - c->in;
                v->len = 0;
            }
        }
    }

    if (c->header == LPG_HTTP_H_COOKIE && c->cookies != NULL) {
        if (lpg_http_cookie_add(c, at, len) != LPG_OK) {
            c->error = 503;
            return -1;
        }

        return 0;
    }

    v = lpg_http_span(c, c->header);
    if (v != NULL) {
        v->len += len;
    }

    return 0;
}


/* the headers of the websocket handshake, of a proxy's forwarding and
 * an EventSource's resume */
static lpg_http_header_e
lpg_http_header_kind(const char *name, size_t len)
{
    size_t i;

    static const struct {
        const char       *name;
        lpg_http_header_e kind;
    } known[] = {
        { "upgrade", LPG_HTTP_H_UPGRADE },
        { "connection", LPG_HTTP_H_CONNECTION },
        { "sec-websocket-key", LPG_HTTP_H_WS_KEY },
        { "sec-websocket-version", LPG_HTTP_H_WS_VERSION },
        { "x-forwarded-host", LPG_HTTP_H_XFH },
        { "x-forwarded-proto", LPG_HTTP_H_XFP },
        { "last-event-id", LPG_HTTP_H_LAST_EVENT_ID },
    };

    for (i = 0; i < LPG_NELEMS(known); i++) {
        if (strlen(known[i].name) == len
            && strncasecmp(name, known[i].name, len) == 0) {
            return known[i].kind;
        }
    }

    return LPG_HTTP_H_OTHER;
}


/* where the value of a header of kind h is kept, NULL: not kept */
static lpg_http_span_t *
lpg_http_span(lpg_http_conn_t *c, lpg_http_header_e h)
{
    switch (h) {
    case LPG_HTTP_H_HOST:
        return &c->host;
    case LPG_HTTP_H_ORIGIN:
        return &c->origin;
    case LPG_HTTP_H_XFF:
        return &c->xff;
    case LPG_HTTP_H_COOKIE:
        return &c->cookie;
    case LPG_HTTP_H_UPGRADE:
        return &c->upgrade;
    case LPG_HTTP_H_CONNECTION:
        return &c->connection;
    case LPG_HTTP_H_WS_KEY:
        return &c->ws_key;
    case LPG_HTTP_H_WS_VERSION:
        return &c->ws_version;
    case LPG_HTTP_H_XFH:
        return &c->xfh;
    case LPG_HTTP_H_XFP:
        return &c->xfp;
    case LPG_HTTP_H_LAST_EVENT_ID:
        return &c->last_event_id;
    default:
        return NULL;
    }
}


void
lpg_http_spans_reset(lpg_http_conn_t *c)
{
    memset(&c->url, 0, sizeof(c->url));
    memset(&c->field, 0, sizeof(c->field));
    memset(&c->host, 0, sizeof(c->host));
    memset(&c->origin, 0, sizeof(c->origin));
    memset(&c->xff, 0, sizeof(c->xff));
    memset(&c->cookie, 0, sizeof(c->cookie));
    memset(&c->upgrade, 0, sizeof(c->upgrade));
    memset(&c->connection, 0, sizeof(c->connection));
    memset(&c->ws_key, 0, sizeof(c->ws_key));
    memset(&c->ws_version, 0, sizeof(c->ws_version));
    memset(&c->xfh, 0, sizeof(c->xfh));
    memset(&c->xfp, 0, sizeof(c->xfp));
    memset(&c->last_event_id, 0, sizeof(c->last_event_id));
}


/* appends n bytes to the joined Cookie text, kept NUL-terminated */
static int
lpg_http_cookie_add(lpg_http_conn_t *c, const char *s, size_t n)
{
    char  *buf;
    size_t cap;

    if (c->cookies_cap - c->cookies_len < n + 1) {
        cap = c->cookies_cap ? c->cookies_cap : 256;
        while (cap - c->cookies_len < n + 1) {
            cap *= 2;
        }

        buf = realloc(c->cookies, cap);
        if (buf == NULL) {
            lpg_log(LPG_LOG_ERR, errno, "realloc(%zu) failed", cap);
            return LPG_ERROR;
        }

        c->cookies = buf;
        c->cookies_cap = cap;
    }

    memcpy(c->cookies + c->cookies_len, s, n);
    c->cookies_len += n;
    c->cookies[c->cookies_len] = '\0';

    return LPG_OK;
}


void
lpg_http_cookie_free(lpg_http_conn_t *c)
{
    free(c->cookies);
    c->cookies = NULL;
    c->cookies_len = 0;
    c->cookies_cap = 0;
}


static int
lpg_http_on_headers_complete(http_parser *p)
{
    lpg_http_conn_t *c = p->data;

    c->headers_done = true;

    /* the body has client_body_timeout from here */
    c->timer.repeat = lpg_http_ctx.conf->client_body_timeout;
    ev_timer_again(lpg_http_ctx.loop, &c->timer);

    if ((p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX
        && p->content_length > (uint64_t) lpg_http_ctx.conf->max_body_size)
    {
        c->error = 413;
        return -1;
    }

    return 0;
}


static int
lpg_http_on_body(http_parser *p, const char *at, size_t len)
{
    char            *body;
    size_t           cap;
    lpg_http_conn_t *c = p->data;

    if (c->body_len + len > (size_t) lpg_http_ctx.conf->max_body_size) {
        c->error = 413;
        return -1;
    }

    if (c->body_cap - c->body_len < len + 1) {
        cap = c->body_cap ? c->body_cap : 1024;
        while (cap - c->body_len < len + 1) {
            cap *= 2;
        }

        body = realloc(c->body, cap);
        if (body == NULL) {
            c->error = 503;
            return -1;
        }

        c->body = body;
        c->body_cap = cap;
    }

    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';

    return 0;
}


static int
lpg_http_on_message_complete(http_parser *p)
{
    lpg_http_conn_t *c = p->data;

    c->complete = true;
    http_parser_pause(p, 1);

    return 0;
}


const char *
lpg_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 101:
        return "Switching Protocols";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}


void
lpg_http_peer(lpg_http_conn_t *c)
{
    socklen_t               slen;
    struct sockaddr_storage sa;

    slen = sizeof(sa);
    c->peer_family = 0;

    if (getpeername(c->fd, (struct sockaddr *) &sa, &slen) != 0) {
        return;
    }

    if (sa.ss_family == AF_INET) {
        memcpy(c->peer, &((struct sockaddr_in *) &sa)->sin_addr, 4);
        c->peer_family = AF_INET;

    } else if (sa.ss_family == AF_INET6) {
        memcpy(c->peer, &((struct sockaddr_in6 *) &sa)->sin6_addr, 16);
        c->peer_family = AF_INET6;
    }
}


const char *
lpg_http_peer_text(const lpg_http_conn_t *c, char *buf, size_t len)
{
    buf[0] = '\0';

    if (c->peer_family != 0
        && inet_ntop(c->peer_family, c->peer, buf, len) == NULL) {
        buf[0] = '\0';
    }

    return buf;
}


/* is addr (len bytes) one of the comma-separated trusted_proxies? */
static bool
lpg_http_trusted(const char *addr, size_t len)
{
    size_t      n;
    const char *p, *end;

    for (p = lpg_http_ctx.conf->trusted_proxies; *p != '\0'; p = end) {
        while (*p == ',' || *p == ' ') {
            p++;
        }

        for (end = p; *end != '\0' && *end != ','; end++) {
            /* void */
        }

        for (n = end - p; n > 0 && p[n - 1] == ' '; n--) {
            /* void */
        }

        if (n > 0 && n == len && memcmp(p, addr, len) == 0) {
            return true;
        }
    }

    return false;
}


bool
lpg_http_proxied(lpg_http_conn_t *c)
{
    char peer[INET6_ADDRSTRLEN];

    lpg_http_peer_text(c, peer, sizeof(peer));

    return peer[0] != '\0' && lpg_http_trusted(peer, strlen(peer));
}


/*
 * The client's address: the peer, unless the peer is a trusted proxy that
 * sent X-Forwarded-For; then the right-most address of that list that is
 * not itself a trusted proxy (what a client writes there is not believed).
 */
const char *
lpg_http_client(lpg_http_conn_t *c, char *buf, size_t len)
{
    size_t      n;
    const char *xff, *end, *p;

    char peer[INET6_ADDRSTRLEN];

    lpg_http_peer_text(c, peer, sizeof(peer));
    snprintf(buf, len, "%s", peer[0] ? peer : "?");

    if (c->xff.len == 0 || !lpg_http_trusted(peer, strlen(peer))) {
        return buf;
    }

    xff = c->in + c->xff.off;
    end = xff + c->xff.len;

    while (end > xff) {
        for (p = end; p > xff && p[-1] != ','; p--) {
            /* void */
        }

        while (p < end && *p == ' ') {
            p++;
        }

        for (n = end - p; n > 0 && p[n - 1] == ' '; n--) {
            /* void */
        }

        if (n > 0 && n < len) {
            memcpy(buf, p, n);
            buf[n] = '\0';

            if (!lpg_http_trusted(p, n)) {
                return buf;
            }
        }

        end = p > xff ? p - 1 : xff;
        while (end > xff && end[-1] == ' ') {
            end--;
        }
    }

    return buf;
}
