/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc.c: a websocket's socket, from the upgrade to the end, for any
 * websocket application (lpg_wsc.h says how one uses it).
 *
 * Reads go through lpg_ws_feed (frames, control frames, limits, close
 * codes); writes drain lpg_ws_pending, whose queue is capped at
 * max_answer_size (a client that falls that far behind is cut) and a
 * client that stops reading for send_timeout is cut too.  The timers are
 * four FIFO lists of one duration each (lpg_wsc_time.c), walked by one
 * ev_timer: idle (an empty PING after websocket_ping_interval without
 * incoming bytes), pong (websocket_pong_timeout to answer it, or to answer
 * a clean close: then the TCP connection is closed), check (every
 * min(session_ttl, keep-alive): the keep-alive's 4002 and the
 * application's re-check) and stall.  A connection that must end is
 * "doomed": it leaves at the next timer run, so nothing is freed under a
 * caller's feet.  The stop: 1001 to every socket (SIGQUIT), or 4002
 * spread over the stop's span so the clients come back as a trickle (a
 * retiring generation).  Once everything is written after a close, the
 * connection lingers: shut down for writing, what the client still sends
 * (the rest of a frame too big, say) is read and dropped until its EOF,
 * for LPG_WSC_LINGER_MS at most, so that the close frame is not lost to a
 * reset from unread input (as nginx's lingering close).
 */

#include "lpg_wsc.h"
#include "lpg_wsc_int.h"
#include "lpg_websocket.h"
#include "lpg_json.h"
#include "lpg_ws_handshake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


#define LPG_WSC_READ_CHUNK 16384
#define LPG_WSC_READS      8 /* reads per wake-up, for fairness */
#define LPG_WSC_HEAD_MAX   512
#define LPG_WSC_LINGER_MS  2000


static void    lpg_wsc_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static int     lpg_wsc_start(lpg_wsc_t *w, int fd, char *rest, size_t rest_len);
static void    lpg_wsc_read(lpg_wsc_t *w);
static void    lpg_wsc_linger(lpg_wsc_t *w);
static void    lpg_wsc_drain(lpg_wsc_t *w);
static void    lpg_wsc_message(void *data, const uint8_t *msg, size_t len,
                               bool binary);
static void    lpg_wsc_pong(void *data);
static void    lpg_wsc_stop_deliveries(lpg_wsc_t *w);
static void    lpg_wsc_arm(lpg_wsc_t *w, int events);
static void    lpg_wsc_count_open(const lpg_wsc_t *w, int delta);
static ssize_t lpg_wsc_write(lpg_wsc_t *w, const uint8_t *p, size_t len);


lpg_wsc_global_t lpg_wsc;


void
lpg_wsc_init(const lpg_http_ctx_t *ctx)
{
    int i;

    if (lpg_wsc.inited) {
        return;
    }

    lpg_wsc.inited = true;
    lpg_wsc.ctx = *ctx;

    for (i = 0; i < LPG_WSC_LISTS; i++) {
        lpg_wsc.lists[i].slot = i <= LPG_WSC_PONG ? LPG_WSC_SLOT_TIME
            : i == LPG_WSC_CHECK                  ? LPG_WSC_SLOT_CHECK
                                                  : LPG_WSC_SLOT_STALL;
    }

    ev_init(&lpg_wsc.timer.ev, lpg_wsc_timer_cb);
    ev_init(&lpg_wsc.trickle, lpg_wsc_trickle_cb);
}


const lpg_http_ctx_t *
lpg_wsc_ctx(void)
{
    return &lpg_wsc.ctx;
}


size_t
lpg_wsc_open(void)
{
    return lpg_wsc.open;
}


size_t
lpg_websocket_open(void)
{
    return lpg_wsc.open;
}


int64_t
lpg_wsc_check_period(const lpg_wsc_t *w)
{
    const lpg_conf_t *conf = lpg_wsc.ctx.conf;
    int               s = conf->session_ttl;

    if (w->app->keep_alive && conf->websocket_keep_alive < s) {
        s = conf->websocket_keep_alive;
    }

    return (int64_t) s * 1000;
}


int
lpg_wsc_handshake(lpg_http_conn_t *c, const lpg_http_request_t *r, lpg_wsc_t *w,
                  const lpg_wsc_app_t *app)
{
    int              i;
    lpg_ws_upgrade_t u;
    lpg_ws_answer_t  ans;

    memset(&u, 0, sizeof(u));
    u.get = r->method == 1; /* HTTP_GET */
    u.http_major = r->http_major;
    u.http_minor = r->http_minor;
    u.host = r->host;
    u.host_len = r->host_len;
    u.origin = r->origin;
    u.origin_len = r->origin_len;
    u.upgrade = r->upgrade;
    u.upgrade_len = r->upgrade_len;
    u.connection = r->connection;
    u.connection_len = r->connection_len;
    u.key = r->ws_key;
    u.key_len = r->ws_key_len;
    u.version = r->ws_version;
    u.version_len = r->ws_version_len;
    u.origin_optional = app->origin_optional;

    if (lpg_ws_handshake(&u, &ans) != LPG_OK) {
        lpg_log(LPG_LOG_DEBUG, 0, "%s: handshake refused (%d): %s", app->name,
                ans.status, ans.body);
        lpg_http_respond(c, ans.status, NULL, ans.headers, ans.body,
                         ans.body_len);
        return LPG_ERROR;
    }

    w->app = app;
    w->fd = -1;
    w->conn = c;
    memcpy(w->accept, ans.accept, sizeof(ans.accept));
    for (i = 0; i < LPG_WSC_SLOTS; i++) {
        w->link[i].list = -1;
    }

    return LPG_OK;
}


/* the 101: the socket leaves the HTTP layer */
void
lpg_wsc_upgrade(lpg_wsc_t *w)
{
    int    fd;
    char  *rest;
    size_t rest_len;

    fd = lpg_http_detach(w->conn, &rest, &rest_len);
    w->conn = NULL;

    if (fd == -1) {
        w->app->free(w);
        return;
    }

    if (lpg_wsc_start(w, fd, rest, rest_len) != LPG_OK) {
        close(fd);
        lpg_http_detached_closed();
        w->app->free(w);
    }

    free(rest);
}


static int
lpg_wsc_start(lpg_wsc_t *w, int fd, char *rest, size_t rest_len)
{
    char                          head[LPG_WSC_HEAD_MAX];
    size_t                        n;
    int64_t                       now, ka;
    lpg_ws_answer_t               ans;
    const lpg_conf_t             *conf = lpg_wsc.ctx.conf;
    static const lpg_ws_handler_t h = { lpg_wsc_message, lpg_wsc_pong };

    memset(&ans, 0, sizeof(ans));
    ans.status = 101;
    memcpy(ans.accept, w->accept, sizeof(ans.accept));

    /* Odoo's 101 headers, but no session cookie: lpgate never sets one */
    n = lpg_ws_handshake_head(&ans,
                              "Server: lpgate\r\n"
                              "Access-Control-Allow-Origin: *\r\n"
                              "Access-Control-Allow-Methods: GET, POST\r\n"
                              "X-Content-Type-Options: nosniff\r\n",
                              head, sizeof(head));

    w->ws = lpg_ws_create(NULL, &h, w);
    if (n == 0 || w->ws == NULL
        || lpg_ws_send_framed(w->ws, (const uint8_t *) head, n) != LPG_OK)
    {
        lpg_log(LPG_LOG_ERR, ENOMEM, "%s dropped", w->app->name);
        lpg_ws_destroy(w->ws);
        w->ws = NULL;
        return LPG_ERROR;
    }

    w->fd = fd;
    ev_io_init(&w->io, lpg_wsc_io_cb, fd, EV_READ);
    ev_io_start(lpg_wsc.ctx.loop, &w->io);

    w->next = lpg_wsc.all;
    w->prev = NULL;
    if (lpg_wsc.all != NULL) {
        lpg_wsc.all->prev = w;
    }
    lpg_wsc.all = w;
    lpg_wsc.open++;
    lpg_wsc_count_open(w, 1);

    now = lpg_time_mono_ms();

    lpg_wsc_list_push(w, LPG_WSC_IDLE,
                      now + (int64_t) conf->websocket_ping_interval * 1000);

    if (w->app->keep_alive) {
        /* Odoo: keep-alive + random(0, keep-alive / 2) */
        ka = (int64_t) conf->websocket_keep_alive * 1000;
        w->keep_alive_at = now + ka + random() % (ka / 2 + 1);

    } else {
        w->keep_alive_at = INT64_MAX;
    }

    if (w->app->keep_alive || w->app->recheck != NULL) {
        lpg_wsc_list_push(w, LPG_WSC_CHECK, now + lpg_wsc_check_period(w));
    }

    if (lpg_wsc.stopping) {
        /* a handshake that was on its way when the stop came: a retiring
         * worker's successor is up, so the same 4002 as the trickle (the
         * client comes back at once); a stopping one says going away */
        lpg_wsc_close(w,
                      lpg_wsc.retiring ? LPG_WS_KEEP_ALIVE : LPG_WS_GOING_AWAY);
        return LPG_OK;
    }

    if (rest_len > 0) {
        /* frames the client sent right behind its request */
        w->in_feed = true;
        if (lpg_ws_feed(w->ws, (const uint8_t *) rest, rest_len, now)
            == LPG_ERROR) {
            w->in_feed = false;
            lpg_wsc_doom(w);
            return LPG_OK;
        }
        w->in_feed = false;
    }

    lpg_wsc_flush(w);

    return LPG_OK;
}


static void
lpg_wsc_count_open(const lpg_wsc_t *w, int delta)
{
    _Atomic uint64_t *g;

    g = (_Atomic uint64_t *) ((char *) lpg_wsc.ctx.stats + w->app->stat_open);

    if (delta > 0) {
        atomic_fetch_add_explicit(g, 1, memory_order_relaxed);

    } else {
        atomic_fetch_sub_explicit(g, 1, memory_order_relaxed);
    }
}


static void
lpg_wsc_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    lpg_wsc_t *w = (lpg_wsc_t *) ((char *) io - offsetof(lpg_wsc_t, io));

    if (revents & EV_WRITE) {
        lpg_wsc_flush(w);
    }

    if ((revents & EV_READ) && !w->doomed) {
        if (w->lingering) {
            lpg_wsc_drain(w);

        } else {
            lpg_wsc_read(w);
        }
    }
}


/* everything is written after the close: FIN, then wait for the client's */
static void
lpg_wsc_linger(lpg_wsc_t *w)
{
    if (w->lingering) {
        return;
    }

    w->lingering = true;

    if (shutdown(w->fd, SHUT_WR) == -1) {
        lpg_log(LPG_LOG_DEBUG, errno, "%s: shutdown() failed", w->app->name);
        lpg_wsc_doom(w);
        return;
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_TIME);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_CHECK);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_STALL);
    lpg_wsc_list_push(w, LPG_WSC_PONG, lpg_time_mono_ms() + LPG_WSC_LINGER_MS);
    lpg_wsc_arm(w, EV_READ);
}


/* a lingering connection's input is dropped until EOF */
static void
lpg_wsc_drain(lpg_wsc_t *w)
{
    int     i;
    ssize_t n;
    uint8_t buf[LPG_WSC_READ_CHUNK];

    for (i = 0; i < LPG_WSC_READS; i++) {
        n = read(w->fd, buf, sizeof(buf));

        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }

        if (n <= 0) {
            lpg_wsc_doom(w);
            return;
        }
    }
}


static void
lpg_wsc_read(lpg_wsc_t *w)
{
    int     i, rc;
    ssize_t n;
    int64_t now;
    uint8_t buf[LPG_WSC_READ_CHUNK];

    for (i = 0; i < LPG_WSC_READS; i++) {
        n = read(w->fd, buf, sizeof(buf));

        if (n == 0) {
            lpg_log(LPG_LOG_DEBUG, 0, "%s: the client closed", w->app->name);
            lpg_wsc_doom(w);
            return;
        }

        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }

            lpg_log(LPG_LOG_DEBUG, errno, "%s: read() failed", w->app->name);
            lpg_wsc_doom(w);
            return;
        }

        now = lpg_time_mono_ms();

        w->in_feed = true;
        rc = lpg_ws_feed(w->ws, buf, (size_t) n, now);
        w->in_feed = false;

        if (rc == LPG_ERROR) {
            lpg_wsc_doom(w);
            return;
        }

        if (rc == LPG_DONE) {
            /* a close was exchanged or a protocol error sent: the rest
             * is written, then the connection ends */
            lpg_wsc_stop_deliveries(w);

            break;
        }

        if (!w->closing && !w->doomed) {
            /* incoming traffic: the next PING is ping_interval away */
            w->pinged = false;
            lpg_wsc_list_remove(w, LPG_WSC_SLOT_TIME);
            lpg_wsc_list_push(
                w, LPG_WSC_IDLE,
                now
                    + (int64_t) lpg_wsc.ctx.conf->websocket_ping_interval
                        * 1000);
        }

        if ((size_t) n < sizeof(buf)) {
            break;
        }
    }

    lpg_wsc_flush(w);
}


/* a complete message of the client: the application's */
static void
lpg_wsc_message(void *data, const uint8_t *msg, size_t len, bool binary)
{
    lpg_wsc_t *w = data;

    atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_in, 1,
                              memory_order_relaxed);

    if (w->closing) {
        return;
    }

    w->app->message(w, msg, len, binary);
}


static void
lpg_wsc_pong(void *data)
{
    lpg_wsc_t *w = data;

    w->pinged = false;
    atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_in, 1,
                              memory_order_relaxed);
}


/* queues a frame; a client that has max_answer_size waiting is cut */
int
lpg_wsc_text(lpg_wsc_t *w, const char *payload, size_t len)
{
    int       rc;
    size_t    n;
    uint8_t   head[LPG_WS_FRAME_HEAD_MAX];
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));
    n = lpg_ws_frame_head(head, LPG_WS_OP_TEXT, len);

    if (lpg_buf_append(&b, (const char *) head, n) != LPG_OK
        || lpg_buf_append(&b, payload, len) != LPG_OK)
    {
        lpg_buf_free(&b);
        lpg_log(LPG_LOG_ERR, ENOMEM, "%s: a frame dropped: cut", w->app->name);
        lpg_wsc_doom(w);
        return LPG_ERROR;
    }

    rc = lpg_wsc_send(w, (const uint8_t *) b.data, b.len);
    lpg_buf_free(&b);

    return rc;
}


int
lpg_wsc_send(lpg_wsc_t *w, const uint8_t *frame, size_t len)
{
    int            rc;
    ssize_t        n;
    size_t         pending;
    const uint8_t *p;

    if (w->closing || w->doomed || w->ws == NULL) {
        return LPG_DONE;
    }

    pending = lpg_ws_pending(w->ws, &p);
    if (pending + len > (size_t) lpg_wsc.ctx.conf->max_answer_size) {
        lpg_log(LPG_LOG_INFO, 0, "%s: client too slow, %zu bytes waiting: cut",
                w->app->name, pending + len);
        lpg_wsc_doom(w);
        return LPG_DONE;
    }

    if (pending == 0 && !w->in_feed && w->fd != -1) {
        /* nothing queued: the frame (often a batch's shared one) goes
         * out from where it is, and only what the socket does not take
         * is copied into the queue */
        rc = lpg_ws_writable(w->ws);
        if (rc != LPG_OK) {
            return rc;
        }

        n = lpg_wsc_write(w, frame, len);
        if (n == -1) {
            return LPG_DONE;
        }

        frame += n;
        len -= (size_t) n;
    }

    rc = len == 0 ? LPG_OK : lpg_ws_send_framed(w->ws, frame, len);
    if (rc == LPG_ERROR) {
        lpg_wsc_doom(w);
        return LPG_ERROR;
    }

    if (rc == LPG_OK) {
        atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_out, 1,
                                  memory_order_relaxed);
    }

    return rc;
}


/* one write(): the bytes the socket took (0: it is full), or -1 when the
 * connection failed (w is doomed) */
static ssize_t
lpg_wsc_write(lpg_wsc_t *w, const uint8_t *p, size_t len)
{
    ssize_t n;

    n = write(w->fd, p, len);

    if (n >= 0) {
        return n;
    }

    if (errno == EAGAIN || errno == EINTR) {
        return 0;
    }

    lpg_log(LPG_LOG_DEBUG, errno, "%s: write() failed", w->app->name);
    lpg_wsc_doom(w);

    return -1;
}


/* writes what is pending; never frees w (a doomed one goes at the next
 * timer run) */
void
lpg_wsc_flush(lpg_wsc_t *w)
{
    size_t         len;
    ssize_t        n;
    const uint8_t *p;

    if (w->in_feed || w->doomed || w->fd == -1) {
        return;
    }

    for (;;) {
        len = lpg_ws_pending(w->ws, &p);
        if (len == 0) {
            break;
        }

        n = lpg_wsc_write(w, p, len);
        if (n == -1) {
            return;
        }

        if (n == 0) {
            lpg_wsc_arm(w, EV_READ | EV_WRITE);

            if (w->link[LPG_WSC_SLOT_STALL].list == -1) {
                lpg_wsc_list_push(w, LPG_WSC_STALL,
                                  lpg_time_mono_ms()
                                      + (int64_t) lpg_wsc.ctx.conf->send_timeout
                                          * 1000);
            }

            return;
        }

        lpg_ws_consume(w->ws, (size_t) n);
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_STALL);
    lpg_wsc_arm(w, EV_READ);

    if (lpg_ws_done(w->ws)) {
        /* everything written after the close: the TCP connection ends
         * once the client has closed its side */
        lpg_wsc_linger(w);
    }
}


/*
 * Server-side close with code: deliveries stop; after 1000/1001/1012 the
 * client's CLOSE is awaited for pong_timeout, after any other code the
 * connection ends once the frame is written.
 */
void
lpg_wsc_close(lpg_wsc_t *w, unsigned code)
{
    int rc;

    if (w->closing || w->doomed) {
        return;
    }

    if (w->ws == NULL) {
        lpg_wsc_doom(w);
        return;
    }

    lpg_wsc_stop_deliveries(w);

    rc = lpg_ws_close(w->ws, code, "", 0);
    atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_out, 1,
                              memory_order_relaxed);

    if (rc == LPG_ERROR) {
        lpg_wsc_doom(w);
        return;
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_TIME);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_CHECK);
    lpg_wsc_list_push(w, LPG_WSC_PONG,
                      lpg_time_mono_ms()
                          + (int64_t) lpg_wsc.ctx.conf->websocket_pong_timeout
                              * 1000);

    lpg_wsc_flush(w);
}


/* out of the list of open sockets a stop closes (it is closing) */
void
lpg_wsc_unlink_all(lpg_wsc_t *w)
{
    if (w->prev != NULL) {
        w->prev->next = w->next;

    } else if (lpg_wsc.all == w) {
        lpg_wsc.all = w->next;
    }

    if (w->next != NULL) {
        w->next->prev = w->prev;
    }

    w->next = NULL;
    w->prev = NULL;
}


/* deliveries stop, once: the application detaches, the stop skips w */
static void
lpg_wsc_stop_deliveries(lpg_wsc_t *w)
{
    if (w->closing) {
        return;
    }

    w->closing = true;
    lpg_wsc_unlink_all(w);
    w->app->closing(w);
}


/* the connection ends at the next timer run */
void
lpg_wsc_doom(lpg_wsc_t *w)
{
    if (w->doomed) {
        return;
    }

    lpg_wsc_stop_deliveries(w);
    w->doomed = true;

    if (w->fd != -1) {
        ev_io_stop(lpg_wsc.ctx.loop, &w->io);
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_TIME);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_CHECK);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_STALL);
    lpg_wsc_list_push(w, LPG_WSC_PONG, 0);
}


/* the socket is closed; the application frees its object */
void
lpg_wsc_free(lpg_wsc_t *w)
{
    int                   i;
    unsigned              code;
    lpg_shm_worker_t     *st = lpg_wsc.ctx.stats;
    static const unsigned codes[] = LPG_SHM_WS_CODES;

    lpg_wsc_stop_deliveries(w);

    for (i = 0; i < LPG_WSC_SLOTS; i++) {
        lpg_wsc_list_remove(w, i);
    }

    lpg_wsc_unlink_all(w);

    if (w->fd != -1) {
        code = w->ws != NULL ? lpg_ws_code_sent(w->ws) : 0;
        code = code ? code : 1006;

        for (i = 0; i < (int) LPG_NELEMS(codes); i++) {
            if (codes[i] == code) {
                break;
            }
        }

        atomic_fetch_add_explicit(&st->ws_closes[i], 1, memory_order_relaxed);

        lpg_log(LPG_LOG_DEBUG, 0, "%s closed (%u)", w->app->name, code);

        ev_io_stop(lpg_wsc.ctx.loop, &w->io);
        close(w->fd);
        w->fd = -1;
        lpg_http_detached_closed();
        lpg_wsc.open--;
        lpg_wsc_count_open(w, -1);
    }

    lpg_ws_destroy(w->ws);
    w->ws = NULL;
    w->app->free(w);
}


static void
lpg_wsc_arm(lpg_wsc_t *w, int events)
{
    if (ev_is_active(&w->io) && w->io.events == events) {
        return;
    }

    ev_io_stop(lpg_wsc.ctx.loop, &w->io);
    ev_io_set(&w->io, w->fd, events);
    ev_io_start(lpg_wsc.ctx.loop, &w->io);
}
