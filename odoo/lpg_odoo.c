/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo.c: the worker's HTTP client toward Odoo (see lpg_odoo.h).
 *
 * One libcurl multi handle per worker, created after fork, driven by the
 * worker's libev loop: curl tells which sockets to watch (one ev_io each,
 * lpg_odoo_socket_cb) and when to call it back (one ev_timer,
 * lpg_odoo_timer_fn); the loop hands both back to curl_multi_socket_action.
 * The multi keeps the connections to Odoo alive between requests and its
 * threaded resolver keeps getaddrinfo off the loop.
 *
 * A slot (lpg_odoo_conn_t) is one easy handle; odoo_maxconn of them run at
 * once, the other requests wait in a FIFO.  A running slot owns the
 * request's text (moved from the request when it starts), so a cancelled
 * request's exchange ends on its own and its answer is dropped.
 */

#include "lpg_odoo.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define LPG_ODOO_MAX_BODY (4 * 1024 * 1024)
#define LPG_ODOO_QUIET    60000 /* ms the same failure is logged at debug */


struct lpg_odoo_conn_s {
    CURL              *easy;
    lpg_odoo_req_t    *req;     /* NULL: cancelled, the answer is dropped */
    lpg_buf_t          out;     /* moved from req, owned while running */
    struct curl_slist *headers; /* likewise */
    lpg_buf_t          body;    /* the answer so far, owned */
    bool               used;
    char               error[CURL_ERROR_SIZE];
};

/* one socket curl asked us to watch; owned by the list below */
typedef struct lpg_odoo_sock_s lpg_odoo_sock_t;

struct lpg_odoo_sock_s {
    ev_io            io;
    lpg_odoo_sock_t *next;
    lpg_odoo_sock_t *prev;
};


static int    lpg_odoo_start(lpg_odoo_conn_t *c, lpg_odoo_req_t *req);
static void   lpg_odoo_next(void);
static int    lpg_odoo_header(struct curl_slist **list, const char *name,
                              const char *value, size_t len);
static int    lpg_odoo_socket_cb(CURL *easy, curl_socket_t s, int what,
                                 void *userp, void *socketp);
static int    lpg_odoo_timer_fn(CURLM *multi, long timeout_ms, void *userp);
static void   lpg_odoo_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void   lpg_odoo_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void   lpg_odoo_read_done(void);
static void   lpg_odoo_finish(lpg_odoo_conn_t *c, CURLcode rc);
static void   lpg_odoo_failed(lpg_odoo_conn_t *c, CURLcode rc);
static void   lpg_odoo_release(lpg_odoo_conn_t *c);
static size_t lpg_odoo_write_cb(char *ptr, size_t size, size_t n, void *data);
static bool   lpg_odoo_clean(const char *s, size_t len);


static struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    bool              enabled;
    bool              global; /* curl_global_init done */
    char             *base;   /* odoo_url without its trailing '/', owned */
    CURLM            *multi;
    ev_timer          timer;
    lpg_odoo_sock_t  *socks;
    lpg_odoo_conn_t  *conns; /* odoo_maxconn of them */
    int               nconns;
    lpg_odoo_req_t   *head; /* waiting for a slot */
    lpg_odoo_req_t   *tail;
    CURLcode          last_error; /* of the last failure, CURLE_OK: none */
    int64_t           quiet_until;
} lpg_odoo;


int
lpg_odoo_init(struct ev_loop *loop, const lpg_conf_t *conf)
{
    int                     i;
    long                    ms;
    size_t                  len;
    lpg_conf_url_t          url;
    curl_version_info_data *v;

    lpg_odoo.loop = loop;
    lpg_odoo.conf = conf;
    lpg_odoo.enabled = conf->odoo_url[0] != '\0'
        && lpg_conf_parse_url(conf->odoo_url, &url) == LPG_OK;

    ev_init(&lpg_odoo.timer, lpg_odoo_timer_cb);

    if (!lpg_odoo.enabled) {
        return LPG_OK;
    }

    /* in the worker, after fork and before any thread: curl's resolver
     * threads and TLS state belong to this process only */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lpg_log(LPG_LOG_EMERG, 0, "curl_global_init() failed");
        return LPG_ERROR;
    }

    lpg_odoo.global = true;

    v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_ASYNCHDNS)) {
        lpg_log(LPG_LOG_WARN, 0,
                "libcurl %s resolves host names synchronously: a slow DNS "
                "answer for odoo_url stalls the worker",
                v->version);
    }

    len = strlen(conf->odoo_url);
    while (len > 0 && conf->odoo_url[len - 1] == '/') {
        len--;
    }

    lpg_odoo.base = strndup(conf->odoo_url, len);
    lpg_odoo.multi = curl_multi_init();
    lpg_odoo.nconns = conf->odoo_maxconn;
    lpg_odoo.conns = calloc(lpg_odoo.nconns, sizeof(lpg_odoo_conn_t));

    if (lpg_odoo.base == NULL || lpg_odoo.multi == NULL
        || lpg_odoo.conns == NULL) {
        goto failed;
    }

    curl_multi_setopt(lpg_odoo.multi, CURLMOPT_SOCKETFUNCTION,
                      lpg_odoo_socket_cb);
    curl_multi_setopt(lpg_odoo.multi, CURLMOPT_TIMERFUNCTION,
                      lpg_odoo_timer_fn);
    curl_multi_setopt(lpg_odoo.multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long) lpg_odoo.nconns);
    curl_multi_setopt(lpg_odoo.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long) lpg_odoo.nconns);
    curl_multi_setopt(lpg_odoo.multi, CURLMOPT_MAXCONNECTS,
                      (long) lpg_odoo.nconns);

    ms = (long) conf->odoo_timeout * 1000;

    for (i = 0; i < lpg_odoo.nconns; i++) {
        lpg_odoo_conn_t *c = &lpg_odoo.conns[i];
        CURL            *e = curl_easy_init();

        if (e == NULL) {
            goto failed;
        }

        c->easy = e;
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->error);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, lpg_odoo_write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
        /* straight to Odoo, whatever http_proxy says */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        if (conf->odoo_cafile[0] != '\0') {
            curl_easy_setopt(e, CURLOPT_CAINFO, conf->odoo_cafile);
        }
#if LIBCURL_VERSION_NUM >= 0x075700
        /* a timed-out lookup leaves its resolver thread to finish alone
         * instead of joining it on the loop */
        curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
    }

    return LPG_OK;

failed:

    lpg_log(LPG_LOG_EMERG, 0, "odoo client: libcurl handle allocation failed");
    lpg_odoo_exit();

    return LPG_ERROR;
}


int
lpg_odoo_post(lpg_odoo_req_t *req, const char *path, const char *host,
              size_t host_len, const char *cookie, size_t cookie_len,
              const char *body, size_t len)
{
    int                i, rc;
    lpg_buf_t         *o = &req->out;
    struct curl_slist *h = NULL;

    memset(o, 0, sizeof(*o));
    req->headers = NULL;
    req->next = NULL;
    req->prev = NULL;
    req->conn = NULL;
    req->queued = false;

    if (!lpg_odoo.enabled) {
        return LPG_ERROR;
    }

    rc = lpg_buf_append_str(o, lpg_odoo.base);
    rc = rc ?: lpg_buf_append_str(o, path);
    rc = rc ?: lpg_buf_append(o, "", 1);
    req->body_at = o->len;
    rc = rc ?: lpg_buf_append(o, body, len);

    /* Expect: none; Host: curl's own (odoo_url's) unless the client's */
    rc = rc ?: lpg_odoo_header(&h, "Content-Type", "application/json", 16);
    rc = rc ?: lpg_odoo_header(&h, "Accept", "application/json", 16);
    rc = rc ?: lpg_odoo_header(&h, "User-Agent", "lpgate", 6);
    rc = rc ?: lpg_odoo_header(&h, "Expect", "", 0);

    if (host != NULL && host_len > 0 && lpg_odoo_clean(host, host_len)) {
        rc = rc ?: lpg_odoo_header(&h, "Host", host, host_len);
    }

    if (cookie != NULL && cookie_len > 0 && lpg_odoo_clean(cookie, cookie_len))
    {
        rc = rc ?: lpg_odoo_header(&h, "Cookie", cookie, cookie_len);
    }

    req->headers = h;

    if (rc != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "odoo request: out of memory");
        goto failed;
    }

    for (i = 0; i < lpg_odoo.nconns; i++) {
        if (!lpg_odoo.conns[i].used) {
            if (lpg_odoo_start(&lpg_odoo.conns[i], req) != LPG_OK) {
                goto failed;
            }

            return LPG_OK;
        }
    }

    /* every slot is busy: wait for one */
    req->queued = true;
    req->prev = lpg_odoo.tail;
    if (lpg_odoo.tail != NULL) {
        lpg_odoo.tail->next = req;

    } else {
        lpg_odoo.head = req;
    }

    lpg_odoo.tail = req;

    return LPG_OK;

failed:

    lpg_buf_free(&req->out);
    curl_slist_free_all(req->headers);
    req->headers = NULL;

    return LPG_ERROR;
}


void
lpg_odoo_cancel(lpg_odoo_req_t *req)
{
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

    if (req->conn != NULL) {
        /* the exchange goes on with the slot's copy; its answer is
         * dropped */
        req->conn->req = NULL;
        req->conn = NULL;
    }

    lpg_buf_free(&req->out);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
}


void
lpg_odoo_exit(void)
{
    int              i;
    lpg_odoo_req_t  *req;
    lpg_odoo_sock_t *s;

    for (i = 0; lpg_odoo.conns != NULL && i < lpg_odoo.nconns; i++) {
        lpg_odoo_conn_t *c = &lpg_odoo.conns[i];

        if (c->used) {
            curl_multi_remove_handle(lpg_odoo.multi, c->easy);
            if (c->req != NULL) {
                c->req->conn = NULL;
            }

            lpg_odoo_release(c);
        }

        if (c->easy != NULL) {
            curl_easy_cleanup(c->easy);
        }
    }

    while ((req = lpg_odoo.head) != NULL) {
        lpg_odoo_cancel(req);
    }

    if (lpg_odoo.multi != NULL) {
        curl_multi_cleanup(lpg_odoo.multi);
    }

    /* the watchers curl did not take back */
    while ((s = lpg_odoo.socks) != NULL) {
        lpg_odoo.socks = s->next;
        ev_io_stop(lpg_odoo.loop, &s->io);
        free(s);
    }

    if (lpg_odoo.loop != NULL) {
        ev_timer_stop(lpg_odoo.loop, &lpg_odoo.timer);
    }

    free(lpg_odoo.conns);
    free(lpg_odoo.base);

    if (lpg_odoo.global) {
        curl_global_cleanup();
    }

    lpg_odoo.conns = NULL;
    lpg_odoo.nconns = 0;
    lpg_odoo.base = NULL;
    lpg_odoo.multi = NULL;
    lpg_odoo.global = false;
    lpg_odoo.enabled = false;
}


/* hands req's text to the free slot c and adds it to the multi;
 * LPG_ERROR (logged) leaves req as it was */
static int
lpg_odoo_start(lpg_odoo_conn_t *c, lpg_odoo_req_t *req)
{
    CURL     *e = c->easy;
    CURLMcode rc;

    curl_easy_setopt(e, CURLOPT_URL, req->out.data);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->out.data + req->body_at);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t) (req->out.len - req->body_at));
    c->error[0] = '\0';

    /* no callback from here: curl asks for a timer, which runs later */
    rc = curl_multi_add_handle(lpg_odoo.multi, e);
    if (rc != CURLM_OK) {
        lpg_log(LPG_LOG_ERR, 0, "curl_multi_add_handle() failed: %s",
                curl_multi_strerror(rc));
        return LPG_ERROR;
    }

    c->used = true;
    c->req = req;
    c->out = req->out;
    c->headers = req->headers;
    memset(&c->body, 0, sizeof(c->body));
    memset(&req->out, 0, sizeof(req->out));
    req->headers = NULL;
    req->conn = c;

    return LPG_OK;
}


/* starts waiting requests on free slots; one that cannot start is
 * answered as a failure (from the loop, never inside lpg_odoo_post) */
static void
lpg_odoo_next(void)
{
    int             i;
    lpg_odoo_req_t *req;

    for (i = 0; i < lpg_odoo.nconns && lpg_odoo.head != NULL; i++) {
        if (lpg_odoo.conns[i].used) {
            continue;
        }

        req = lpg_odoo.head;
        lpg_odoo.head = req->next;
        if (lpg_odoo.head != NULL) {
            lpg_odoo.head->prev = NULL;

        } else {
            lpg_odoo.tail = NULL;
        }

        req->next = NULL;
        req->queued = false;

        if (lpg_odoo_start(&lpg_odoo.conns[i], req) != LPG_OK) {
            lpg_buf_free(&req->out);
            curl_slist_free_all(req->headers);
            req->headers = NULL;
            req->cb(req, 0, "", 0);
            /* the callback may have taken slots: look again */
            i = -1;
        }
    }
}


/* appends "name: value" to *list (value of len bytes) */
static int
lpg_odoo_header(struct curl_slist **list, const char *name, const char *value,
                size_t len)
{
    char              *line;
    size_t             n = strlen(name);
    struct curl_slist *l;

    line = malloc(n + len + 3);
    if (line == NULL) {
        return LPG_ERROR;
    }

    memcpy(line, name, n);
    /* "Expect:" with nothing after the colon removes curl's own */
    memcpy(line + n, ": ", 2);
    memcpy(line + n + (len ? 2 : 1), value, len);
    line[n + (len ? 2 : 1) + len] = '\0';

    l = curl_slist_append(*list, line);
    free(line);
    if (l == NULL) {
        return LPG_ERROR;
    }

    *list = l;

    return LPG_OK;
}


/* curl says which events it wants on s (CURLMOPT_SOCKETFUNCTION) */
static int
lpg_odoo_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                   void *socketp)
{
    int              events;
    lpg_odoo_sock_t *w = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            ev_io_stop(lpg_odoo.loop, &w->io);
            if (w->prev != NULL) {
                w->prev->next = w->next;

            } else {
                lpg_odoo.socks = w->next;
            }

            if (w->next != NULL) {
                w->next->prev = w->prev;
            }

            free(w);
        }

        return 0;
    }

    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            lpg_log(LPG_LOG_ERR, 0, "odoo client: out of memory");
            return -1;
        }

        ev_init(&w->io, lpg_odoo_io_cb);
        w->next = lpg_odoo.socks;
        if (w->next != NULL) {
            w->next->prev = w;
        }

        lpg_odoo.socks = w;
        curl_multi_assign(lpg_odoo.multi, s, w);

    } else {
        ev_io_stop(lpg_odoo.loop, &w->io);
    }

    events = (what & CURL_POLL_IN ? EV_READ : 0)
        | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_set(&w->io, s, events);
    ev_io_start(lpg_odoo.loop, &w->io);

    return 0;
}


/* curl wants to be called in timeout_ms, -1: never (CURLMOPT_TIMERFUNCTION);
 * 0 also goes through the loop, as curl's documentation asks */
static int
lpg_odoo_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    ev_timer_stop(lpg_odoo.loop, &lpg_odoo.timer);

    if (timeout_ms >= 0) {
        ev_timer_set(&lpg_odoo.timer, (double) timeout_ms / 1000., 0.);
        ev_timer_start(lpg_odoo.loop, &lpg_odoo.timer);
    }

    return 0;
}


static void
lpg_odoo_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int running;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0)
        | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);

    /* w may be freed inside: not touched after */
    curl_multi_socket_action(lpg_odoo.multi, w->fd, action, &running);
    lpg_odoo_read_done();
}


static void
lpg_odoo_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int running;

    curl_multi_socket_action(lpg_odoo.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    lpg_odoo_read_done();
}


/* the transfers curl finished, each answered */
static void
lpg_odoo_read_done(void)
{
    int              left;
    CURL            *e;
    CURLMsg         *msg;
    CURLcode         rc;
    lpg_odoo_conn_t *c;

    while ((msg = curl_multi_info_read(lpg_odoo.multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg dies with the handle's removal */
        e = msg->easy_handle;
        rc = msg->data.result;
        c = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &c);

        lpg_odoo_finish(c, rc);
    }
}


/* frees c, calls back, then starts what waits */
static void
lpg_odoo_finish(lpg_odoo_conn_t *c, CURLcode rc)
{
    long            code = 0;
    lpg_buf_t       body = c->body;
    lpg_odoo_req_t *req = c->req;

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        lpg_odoo.last_error = CURLE_OK;

    } else {
        lpg_odoo_failed(c, rc);
    }

    curl_multi_remove_handle(lpg_odoo.multi, c->easy);
    memset(&c->body, 0, sizeof(c->body));
    lpg_odoo_release(c);

    if (req != NULL) {
        req->conn = NULL;
        req->cb(req, (int) code, body.data != NULL ? body.data : "", body.len);
    }

    lpg_buf_free(&body);
    lpg_odoo_next();
}


/* logs why c failed: at WARN, but the same failure again within
 * LPG_ODOO_QUIET at DEBUG (Odoo down must not flood the log) */
static void
lpg_odoo_failed(lpg_odoo_conn_t *c, CURLcode rc)
{
    int         level = LPG_LOG_WARN;
    int64_t     now = lpg_time_mono_ms();
    const char *url = lpg_odoo.conf->odoo_url;
    const char *why = c->error[0] != '\0' ? c->error : curl_easy_strerror(rc);

    if (rc == lpg_odoo.last_error && now < lpg_odoo.quiet_until) {
        level = LPG_LOG_DEBUG;

    } else {
        lpg_odoo.last_error = rc;
        lpg_odoo.quiet_until = now + LPG_ODOO_QUIET;
    }

    switch (rc) {

    case CURLE_COULDNT_RESOLVE_HOST:
        lpg_log(level, 0, "odoo_url %s: host not resolved: %s", url, why);
        break;

    case CURLE_COULDNT_CONNECT:
        lpg_log(level, 0, "connect() to odoo_url %s failed: %s", url, why);
        break;

    case CURLE_OPERATION_TIMEDOUT:
        lpg_log(level, 0, "odoo_url %s did not answer within %d s: %s", url,
                lpg_odoo.conf->odoo_timeout, why);
        break;

    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
        lpg_log(level, 0, "TLS with odoo_url %s failed: %s%s", url, why,
                lpg_odoo.conf->odoo_cafile[0] != '\0'
                    ? ""
                    : " (a private CA goes into odoo_cafile)");
        break;

    case CURLE_WRITE_ERROR:
        lpg_log(level, 0, "odoo_url %s answered more than %d bytes", url,
                LPG_ODOO_MAX_BODY);
        break;

    default:
        lpg_log(level, 0, "request to odoo_url %s failed: %s", url, why);
        break;
    }
}


/* frees what the slot owns and makes it free */
static void
lpg_odoo_release(lpg_odoo_conn_t *c)
{
    lpg_buf_free(&c->out);
    lpg_buf_free(&c->body);
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    c->req = NULL;
    c->used = false;
}


static size_t
lpg_odoo_write_cb(char *ptr, size_t size, size_t n, void *data)
{
    lpg_odoo_conn_t *c = data;
    size_t           len = size * n;

    if (c->body.len + len > LPG_ODOO_MAX_BODY
        || lpg_buf_append(&c->body, ptr, len) != LPG_OK)
    {
        /* CURLE_WRITE_ERROR */
        return 0;
    }

    return len;
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
