/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo.c: the worker's HTTP client toward Odoo (see lpg_odoo.h).
 *
 * A request owns its text; a connection owns its socket, its watchers and
 * the body read so far, and points at the one request it serves.  The
 * address of odoo_url is resolved on first use and again after a failed
 * connect, so a restarted Odoo on a new address is found.
 */

#include "lpg_odoo.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


#define LPG_ODOO_MAX_BODY (4 * 1024 * 1024)


struct lpg_odoo_conn_s {
    int             fd;
    ev_io           io;
    ev_timer        timer;
    http_parser     parser;
    lpg_odoo_req_t *req;
    size_t          written;
    lpg_buf_t       body;
    int             status;
    bool            complete;
    bool            failed;
    bool            used;
};


static void lpg_odoo_start(lpg_odoo_conn_t *c, lpg_odoo_req_t *req);
static int  lpg_odoo_resolve(void);
static int  lpg_odoo_connect(void);
static void lpg_odoo_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_odoo_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_odoo_finish(lpg_odoo_conn_t *c, bool ok);
static int  lpg_odoo_on_body(http_parser *p, const char *at, size_t len);
static int  lpg_odoo_on_complete(http_parser *p);
static bool lpg_odoo_clean(const char *s, size_t len);


static struct {
    struct ev_loop         *loop;
    const lpg_conf_t       *conf;
    lpg_conf_url_t          url;
    bool                    enabled;
    struct sockaddr_storage addr;
    socklen_t               addr_len;
    bool                    resolved;
    lpg_odoo_conn_t        *conns; /* odoo_maxconn of them */
    int                     nconns;
    lpg_odoo_req_t         *head; /* waiting for a connection */
    lpg_odoo_req_t         *tail;
    http_parser_settings    settings;
} lpg_odoo;


int
lpg_odoo_init(struct ev_loop *loop, const lpg_conf_t *conf)
{
    int i;

    lpg_odoo.loop = loop;
    lpg_odoo.conf = conf;
    lpg_odoo.enabled = conf->odoo_url[0] != '\0'
        && lpg_conf_parse_url(conf->odoo_url, &lpg_odoo.url) == LPG_OK;

    lpg_odoo.nconns = conf->odoo_maxconn;
    lpg_odoo.conns = calloc(lpg_odoo.nconns, sizeof(lpg_odoo_conn_t));
    if (lpg_odoo.conns == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "odoo client allocation failed");
        return LPG_ERROR;
    }

    for (i = 0; i < lpg_odoo.nconns; i++) {
        lpg_odoo.conns[i].fd = -1;
        ev_init(&lpg_odoo.conns[i].io, lpg_odoo_io_cb);
        ev_init(&lpg_odoo.conns[i].timer, lpg_odoo_timer_cb);
        lpg_odoo.conns[i].io.data = &lpg_odoo.conns[i];
        lpg_odoo.conns[i].timer.data = &lpg_odoo.conns[i];
    }

    http_parser_settings_init(&lpg_odoo.settings);
    lpg_odoo.settings.on_body = lpg_odoo_on_body;
    lpg_odoo.settings.on_message_complete = lpg_odoo_on_complete;

    return LPG_OK;
}


int
lpg_odoo_post(lpg_odoo_req_t *req, const char *path, const char *host,
              size_t host_len, const char *cookie, size_t cookie_len,
              const char *body, size_t len)
{
    int        i, rc;
    char       num[300];
    lpg_buf_t *o = &req->out;

    memset(o, 0, sizeof(*o));
    req->next = NULL;
    req->prev = NULL;
    req->conn = NULL;
    req->queued = false;

    if (!lpg_odoo.enabled) {
        return LPG_ERROR;
    }

    if (host == NULL || host_len == 0 || !lpg_odoo_clean(host, host_len)) {
        host = num;
        host_len = (size_t) snprintf(num, sizeof(num), "%s:%d",
                                     lpg_odoo.url.host, lpg_odoo.url.port);
    }

    rc = lpg_buf_append_str(o, "POST ");
    rc = rc ?: lpg_buf_append_str(o, lpg_odoo.url.prefix);
    rc = rc ?: lpg_buf_append_str(o, path);
    rc = rc ?: lpg_buf_append_str(o, " HTTP/1.1\r\nHost: ");
    rc = rc ?: lpg_buf_append(o, host, host_len);
    rc = rc
        ?: lpg_buf_append_str(o,
                              "\r\nContent-Type: application/json\r\n"
                              "Accept: application/json\r\n"
                              "User-Agent: lpgate\r\n"
                              "Connection: close\r\n");

    if (cookie != NULL && cookie_len > 0 && lpg_odoo_clean(cookie, cookie_len))
    {
        rc = rc ?: lpg_buf_append_str(o, "Cookie: ");
        rc = rc ?: lpg_buf_append(o, cookie, cookie_len);
        rc = rc ?: lpg_buf_append_str(o, "\r\n");
    }

    snprintf(num, sizeof(num), "Content-Length: %zu\r\n\r\n", len);
    rc = rc ?: lpg_buf_append_str(o, num);
    rc = rc ?: lpg_buf_append(o, body, len);

    if (rc != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "odoo request: out of memory");
        lpg_buf_free(o);
        return LPG_ERROR;
    }

    for (i = 0; i < lpg_odoo.nconns; i++) {
        if (!lpg_odoo.conns[i].used) {
            lpg_odoo_start(&lpg_odoo.conns[i], req);
            return LPG_OK;
        }
    }

    /* every connection is busy: wait for one */
    req->queued = true;
    req->prev = lpg_odoo.tail;
    if (lpg_odoo.tail != NULL) {
        lpg_odoo.tail->next = req;

    } else {
        lpg_odoo.head = req;
    }

    lpg_odoo.tail = req;

    return LPG_OK;
}


void
lpg_odoo_cancel(lpg_odoo_req_t *req)
{
    lpg_odoo_conn_t *c = req->conn;

    if (req->queued) {
        if (req->prev != NULL) {
            req->prev->next = req->next;

        } else {
            lpg_odoo.head = req->next;
        }

        if (req->next != NULL) {
            req->next->prev = req->prev;

        } else {
            lpg_odoo.tail = req->prev;
        }

        req->queued = false;
    }

    if (c != NULL) {
        /* the exchange goes on; its answer is dropped */
        c->req = NULL;
        req->conn = NULL;
    }

    lpg_buf_free(&req->out);
}


/* opens c's socket and starts req on it; a failure shows up in the loop */
static void
lpg_odoo_start(lpg_odoo_conn_t *c, lpg_odoo_req_t *req)
{
    int fd;

    c->used = true;
    c->req = req;
    c->written = 0;
    c->status = 0;
    c->complete = false;
    c->failed = false;
    memset(&c->body, 0, sizeof(c->body));
    req->conn = c;

    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;

    fd = lpg_odoo_resolve() == LPG_OK ? lpg_odoo_connect() : -1;
    if (fd == -1) {
        /* reported from the loop like any other failure, never from
         * inside lpg_odoo_post() */
        c->failed = true;
        ev_timer_set(&c->timer, 0., 0.);
        ev_timer_start(lpg_odoo.loop, &c->timer);
        return;
    }

    ev_timer_set(&c->timer, (double) lpg_odoo.conf->odoo_timeout, 0.);
    ev_timer_start(lpg_odoo.loop, &c->timer);

    c->fd = fd;
    ev_io_set(&c->io, fd, EV_WRITE);
    ev_io_start(lpg_odoo.loop, &c->io);
}


/* a non-blocking connect() toward odoo_url under way; -1 (logged) when
 * it failed at once */
static int
lpg_odoo_connect(void)
{
    int fd;

    fd = socket(lpg_odoo.addr.ss_family,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd != -1
        && (connect(fd, (struct sockaddr *) &lpg_odoo.addr, lpg_odoo.addr_len)
                == 0
            || errno == EINPROGRESS))
    {
        return fd;
    }

    lpg_log(LPG_LOG_WARN, errno, "connect() to odoo_url %s failed",
            lpg_odoo.conf->odoo_url);
    if (fd != -1) {
        close(fd);
    }

    /* maybe Odoo moved: resolve again next time */
    lpg_odoo.resolved = false;

    return -1;
}


static int
lpg_odoo_resolve(void)
{
    int             rc;
    char            port[16];
    struct addrinfo hints, *res;
    lpg_conf_url_t *u = &lpg_odoo.url;

    if (lpg_odoo.resolved) {
        return LPG_OK;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", u->port);

    rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        lpg_log(LPG_LOG_WARN, 0, "odoo_url host \"%s\": %s", u->host,
                gai_strerror(rc));
        return LPG_ERROR;
    }

    memcpy(&lpg_odoo.addr, res->ai_addr, res->ai_addrlen);
    lpg_odoo.addr_len = res->ai_addrlen;
    lpg_odoo.resolved = true;
    freeaddrinfo(res);

    return LPG_OK;
}


static void
lpg_odoo_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int              err;
    char             buf[16384];
    ssize_t          n;
    size_t           parsed;
    socklen_t        len;
    lpg_odoo_conn_t *c = w->data;
    lpg_buf_t       *o;

    if (revents & EV_WRITE) {
        if (c->written == 0) {
            err = 0;
            len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
                || err != 0) {
                lpg_log(LPG_LOG_WARN, err, "connect() to odoo_url %s failed",
                        lpg_odoo.conf->odoo_url);
                lpg_odoo.resolved = false;
                lpg_odoo_finish(c, false);
                return;
            }
        }

        if (c->req == NULL) {
            /* cancelled before a byte went out */
            lpg_odoo_finish(c, false);
            return;
        }

        o = &c->req->out;
        n = write(c->fd, o->data + c->written, o->len - c->written);
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }

            lpg_log(LPG_LOG_WARN, errno, "write() to odoo_url failed");
            lpg_odoo_finish(c, false);
            return;
        }

        c->written += (size_t) n;
        if (c->written == o->len) {
            ev_io_stop(loop, &c->io);
            ev_io_set(&c->io, c->fd, EV_READ);
            ev_io_start(loop, &c->io);
        }

        return;
    }

    n = read(c->fd, buf, sizeof(buf));
    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }

        lpg_log(LPG_LOG_WARN, errno, "read() from odoo_url failed");
        lpg_odoo_finish(c, false);
        return;
    }

    /* n == 0 tells the parser about EOF (a body without a length) */
    parsed =
        http_parser_execute(&c->parser, &lpg_odoo.settings, buf, (size_t) n);

    if (c->complete) {
        lpg_odoo_finish(c, true);
        return;
    }

    if (parsed != (size_t) n || c->parser.http_errno != HPE_OK || n == 0) {
        lpg_log(LPG_LOG_WARN, 0, "odoo_url answered no valid HTTP (%s)",
                n == 0 ? "connection closed early"
                       : http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        lpg_odoo_finish(c, false);
    }
}


static void
lpg_odoo_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_odoo_conn_t *c = w->data;

    if (!c->failed) {
        lpg_log(LPG_LOG_WARN, 0, "odoo_url %s did not answer within %d s",
                lpg_odoo.conf->odoo_url, lpg_odoo.conf->odoo_timeout);
    }

    lpg_odoo_finish(c, false);
}


/* closes c, calls back, then starts the next waiting request on c */
static void
lpg_odoo_finish(lpg_odoo_conn_t *c, bool ok)
{
    int             status = ok ? c->status : 0;
    lpg_buf_t       body = c->body;
    lpg_odoo_req_t *req = c->req;

    ev_io_stop(lpg_odoo.loop, &c->io);
    ev_timer_stop(lpg_odoo.loop, &c->timer);
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }

    c->used = false;
    c->req = NULL;
    memset(&c->body, 0, sizeof(c->body));

    if (req != NULL) {
        req->conn = NULL;
        lpg_buf_free(&req->out);
        req->cb(req, status, body.data != NULL ? body.data : "", body.len);
    }

    lpg_buf_free(&body);

    if (!c->used && lpg_odoo.head != NULL) {
        req = lpg_odoo.head;
        lpg_odoo.head = req->next;
        if (lpg_odoo.head != NULL) {
            lpg_odoo.head->prev = NULL;

        } else {
            lpg_odoo.tail = NULL;
        }

        req->next = NULL;
        req->queued = false;
        lpg_odoo_start(c, req);
    }
}


static int
lpg_odoo_on_body(http_parser *p, const char *at, size_t len)
{
    lpg_odoo_conn_t *c = p->data;

    if (c->body.len + len > LPG_ODOO_MAX_BODY
        || lpg_buf_append(&c->body, at, len) != LPG_OK)
    {
        return -1;
    }

    return 0;
}


static int
lpg_odoo_on_complete(http_parser *p)
{
    lpg_odoo_conn_t *c = p->data;

    c->status = (int) p->status_code;
    c->complete = true;

    /* nothing after the one answer matters */
    http_parser_pause(p, 1);

    return 0;
}


/* a header value must not smuggle a line break or a control byte */
static bool
lpg_odoo_clean(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }

    return true;
}
