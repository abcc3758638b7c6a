/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket_life.c: a websocket's socket, from the 101 to the end.
 *
 * Reads go through lpg_ws_feed (frames, control frames, limits, close
 * codes); writes drain lpg_ws_pending, whose queue is capped at
 * max_answer_size (a client that falls that far behind is cut) and a
 * client that stops reading for send_timeout is cut too.  The timers are
 * four FIFO lists of one duration each (lpg_websocket_int.h), walked by
 * one ev_timer: idle (an empty PING after websocket_ping_interval without
 * incoming bytes), pong (websocket_pong_timeout to answer it, or to answer
 * a clean close: then the TCP connection is closed), check (every
 * min(session_ttl, keep-alive): the keep-alive's 4002 and the session
 * re-check) and stall.  A connection that must end is "doomed": it leaves
 * at the next timer run, so nothing is freed under a caller's feet.  The
 * stop: 1001 to every socket (SIGQUIT), or 4002 spread over the stop's
 * span so the clients come back as a trickle (a retiring generation).
 */

#include "lpg_websocket_int.h"
#include "lpg_ws_handshake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_WSC_READ_CHUNK 16384
#define LPG_WSC_READS      8  /* reads per wake-up, for fairness */
#define LPG_WSC_TRICKLE_MS 50 /* a retiring worker's close ticks */
#define LPG_WSC_HEAD_MAX   512


static void lpg_wsc_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_wsc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void lpg_wsc_trickle_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void lpg_wsc_read(lpg_wsc_t *w);
static void lpg_wsc_pong(void *data);
static void lpg_wsc_doom(lpg_wsc_t *w);
static void lpg_wsc_arm(lpg_wsc_t *w, int events);
static void lpg_wsc_timer_at(int64_t deadline);
static void lpg_wsc_unlink_all(lpg_wsc_t *w);


lpg_wsc_global_t lpg_wsc;


void
lpg_wsc_life_init(void)
{
    int i;

    for (i = 0; i < LPG_WSC_LISTS; i++) {
        lpg_wsc.lists[i].slot = i <= LPG_WSC_PONG ? LPG_WSC_SLOT_TIME
            : i == LPG_WSC_CHECK                  ? LPG_WSC_SLOT_CHECK
                                                  : LPG_WSC_SLOT_STALL;
    }

    ev_init(&lpg_wsc.timer, lpg_wsc_timer_cb);
    ev_init(&lpg_wsc.trickle, lpg_wsc_trickle_cb);
}


size_t
lpg_websocket_open(void)
{
    return lpg_wsc.open;
}


int64_t
lpg_wsc_check_period(void)
{
    const lpg_conf_t *conf = lpg_wsc.ctx.conf;
    int               s = conf->session_ttl;

    if (conf->websocket_keep_alive < s) {
        s = conf->websocket_keep_alive;
    }

    return (int64_t) s * 1000;
}


int
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
        lpg_log(LPG_LOG_ERR, ENOMEM, "websocket dropped");
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
    atomic_store_explicit(&lpg_wsc.ctx.stats->ws_open, lpg_wsc.open,
                          memory_order_relaxed);

    now = lpg_time_mono_ms();
    ka = (int64_t) conf->websocket_keep_alive * 1000;
    /* Odoo: keep-alive + random(0, keep-alive / 2) */
    w->keep_alive_at = now + ka + random() % (ka / 2 + 1);

    lpg_wsc_list_push(w, LPG_WSC_IDLE,
                      now + (int64_t) conf->websocket_ping_interval * 1000);
    lpg_wsc_list_push(w, LPG_WSC_CHECK, now + lpg_wsc_check_period());

    lpg_log(LPG_LOG_DEBUG, 0, "websocket open: db %d, user %lld, %s", w->sub.db,
            (long long) w->uid, w->logged ? "with a session" : "public");

    if (lpg_wsc.stopping) {
        lpg_wsc_close(w, LPG_WS_GOING_AWAY);
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
lpg_wsc_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    lpg_wsc_t *w = (lpg_wsc_t *) ((char *) io - offsetof(lpg_wsc_t, io));

    if (revents & EV_WRITE) {
        lpg_wsc_flush(w);
    }

    if ((revents & EV_READ) && !w->doomed) {
        lpg_wsc_read(w);
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
            lpg_log(LPG_LOG_DEBUG, 0, "websocket: the client closed");
            lpg_wsc_doom(w);
            return;
        }

        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }

            lpg_log(LPG_LOG_DEBUG, errno, "websocket: read() failed");
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
            if (!w->closing) {
                w->closing = true;
                lpg_sub_detach(&w->sub);
                lpg_wsc_unlink_all(w);
            }

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
lpg_wsc_send(lpg_wsc_t *w, const uint8_t *frame, size_t len)
{
    int            rc;
    size_t         pending;
    const uint8_t *p;

    if (w->closing || w->doomed || w->ws == NULL) {
        return LPG_DONE;
    }

    pending = lpg_ws_pending(w->ws, &p);
    if (pending + len > (size_t) lpg_wsc.ctx.conf->max_answer_size) {
        lpg_log(LPG_LOG_INFO, 0,
                "websocket: client too slow, %zu bytes waiting: cut",
                pending + len);
        lpg_wsc_doom(w);
        return LPG_DONE;
    }

    rc = lpg_ws_send_framed(w->ws, frame, len);
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

        n = write(w->fd, p, len);

        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                lpg_wsc_arm(w, EV_READ | EV_WRITE);

                if (w->link[LPG_WSC_SLOT_STALL].list == -1) {
                    lpg_wsc_list_push(
                        w, LPG_WSC_STALL,
                        lpg_time_mono_ms()
                            + (int64_t) lpg_wsc.ctx.conf->send_timeout * 1000);
                }

                return;
            }

            lpg_log(LPG_LOG_DEBUG, errno, "websocket: write() failed");
            lpg_wsc_doom(w);
            return;
        }

        lpg_ws_consume(w->ws, (size_t) n);
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_STALL);
    lpg_wsc_arm(w, EV_READ);

    if (lpg_ws_done(w->ws)) {
        /* everything written after the close: the TCP connection ends */
        lpg_wsc_doom(w);
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

    w->closing = true;
    lpg_sub_detach(&w->sub);
    lpg_wsc_unlink_all(w);

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
static void
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


/* the connection ends at the next timer run */
static void
lpg_wsc_doom(lpg_wsc_t *w)
{
    if (w->doomed) {
        return;
    }

    w->doomed = true;
    w->closing = true;
    lpg_sub_detach(&w->sub);
    lpg_wsc_unlink_all(w);

    if (w->fd != -1) {
        ev_io_stop(lpg_wsc.ctx.loop, &w->io);
    }

    lpg_wsc_list_remove(w, LPG_WSC_SLOT_TIME);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_CHECK);
    lpg_wsc_list_remove(w, LPG_WSC_SLOT_STALL);
    lpg_wsc_list_push(w, LPG_WSC_PONG, 0);
}


void
lpg_wsc_free(lpg_wsc_t *w)
{
    int                   i;
    unsigned              code;
    lpg_shm_worker_t     *st = lpg_wsc.ctx.stats;
    static const unsigned codes[] = LPG_SHM_WS_CODES;

    if (w->sub.ready) {
        /* on the ready list: freed when its deliver comes */
        w->dead = true;
        return;
    }

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

        lpg_log(LPG_LOG_DEBUG, 0, "websocket closed (%u)", code);

        ev_io_stop(lpg_wsc.ctx.loop, &w->io);
        close(w->fd);
        lpg_http_detached_closed();
        lpg_wsc.open--;
        atomic_store_explicit(&st->ws_open, lpg_wsc.open, memory_order_relaxed);
    }

    lpg_wsc_forget(w);
    lpg_ws_destroy(w->ws);
    free(w);
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


void
lpg_wsc_list_push(lpg_wsc_t *w, int list, int64_t deadline)
{
    lpg_wsc_list_t *l = &lpg_wsc.lists[list];
    lpg_wsc_link_t *k = &w->link[l->slot];

    if (k->list != -1) {
        lpg_wsc_list_remove(w, l->slot);
    }

    /* a doomed socket's deadline 0 goes first; others append in order */
    if (deadline == 0 && l->head != NULL) {
        k->prev = NULL;
        k->next = l->head;
        l->head->link[l->slot].prev = w;
        l->head = w;

    } else {
        k->prev = l->tail;
        k->next = NULL;
        if (l->tail != NULL) {
            l->tail->link[l->slot].next = w;

        } else {
            l->head = w;
        }

        l->tail = w;
    }

    k->deadline = deadline;
    k->list = list;

    lpg_wsc_timer_at(deadline);
}


void
lpg_wsc_list_remove(lpg_wsc_t *w, int slot)
{
    lpg_wsc_link_t *k = &w->link[slot];
    lpg_wsc_list_t *l;

    if (k->list == -1) {
        return;
    }

    l = &lpg_wsc.lists[k->list];

    if (k->prev != NULL) {
        k->prev->link[slot].next = k->next;

    } else {
        l->head = k->next;
    }

    if (k->next != NULL) {
        k->next->link[slot].prev = k->prev;

    } else {
        l->tail = k->prev;
    }

    k->prev = NULL;
    k->next = NULL;
    k->list = -1;
}


/* the timer fires by deadline at the latest */
static void
lpg_wsc_timer_at(int64_t deadline)
{
    int64_t now, d;

    if (ev_is_active(&lpg_wsc.timer) && deadline >= lpg_wsc.timer_at) {
        return;
    }

    now = lpg_time_mono_ms();
    d = deadline - now;
    d = d < 1 ? 1 : d;

    ev_timer_stop(lpg_wsc.ctx.loop, &lpg_wsc.timer);
    ev_timer_set(&lpg_wsc.timer, (double) d / 1000., 0.);
    ev_timer_start(lpg_wsc.ctx.loop, &lpg_wsc.timer);
    lpg_wsc.timer_at = now + d;
}


static void
lpg_wsc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    int               i;
    int64_t           now, next;
    lpg_wsc_t        *w;
    lpg_wsc_list_t   *l;
    const lpg_conf_t *conf = lpg_wsc.ctx.conf;

    now = lpg_time_mono_ms();

    for (i = 0; i < LPG_WSC_LISTS; i++) {
        l = &lpg_wsc.lists[i];

        while ((w = l->head) != NULL && w->link[l->slot].deadline <= now) {
            lpg_wsc_list_remove(w, l->slot);

            switch (i) {
            case LPG_WSC_IDLE:
                /* nothing came for ping_interval: an empty PING */
                w->pinged = true;
                if (lpg_ws_ping(w->ws) == LPG_OK) {
                    atomic_fetch_add_explicit(&lpg_wsc.ctx.stats->ws_out, 1,
                                              memory_order_relaxed);
                }
                lpg_wsc_list_push(
                    w, LPG_WSC_PONG,
                    now + (int64_t) conf->websocket_pong_timeout * 1000);
                lpg_wsc_flush(w);
                break;

            case LPG_WSC_PONG:
                if (!w->doomed) {
                    lpg_log(LPG_LOG_DEBUG, 0,
                            "websocket: no answer within "
                            "websocket_pong_timeout: connection closed");
                }
                lpg_wsc_free(w);
                break;

            case LPG_WSC_CHECK:
                if (now >= w->keep_alive_at) {
                    lpg_log(LPG_LOG_DEBUG, 0,
                            "websocket: keep-alive over: closed with 4002");
                    lpg_wsc_close(w, LPG_WS_KEEP_ALIVE);
                    break;
                }

                lpg_wsc_list_push(w, LPG_WSC_CHECK,
                                  now + lpg_wsc_check_period());
                lpg_wsc_recheck(w);
                lpg_wsc_flush(w);
                break;

            default:
                lpg_log(LPG_LOG_INFO, 0,
                        "websocket: client stopped reading: connection cut "
                        "after send_timeout");
                lpg_wsc_free(w);
                break;
            }
        }
    }

    next = INT64_MAX;
    for (i = 0; i < LPG_WSC_LISTS; i++) {
        w = lpg_wsc.lists[i].head;
        if (w != NULL && w->link[lpg_wsc.lists[i].slot].deadline < next) {
            next = w->link[lpg_wsc.lists[i].slot].deadline;
        }
    }

    if (next != INT64_MAX) {
        ev_timer_stop(loop, t);
        lpg_wsc.timer_at = INT64_MAX;
        lpg_wsc_timer_at(next);
    }
}


void
lpg_websocket_shutdown(bool retire, int64_t span_ms)
{
    size_t     ticks;
    lpg_wsc_t *w;

    lpg_wsc.stopping = true;

    if (!retire) {
        ev_timer_stop(lpg_wsc.ctx.loop, &lpg_wsc.trickle);

        while ((w = lpg_wsc.all) != NULL) {
            lpg_wsc_close(w, LPG_WS_GOING_AWAY);
            if (lpg_wsc.all == w) {
                lpg_wsc_unlink_all(w);
            }
        }

        return;
    }

    if (lpg_wsc.open == 0) {
        return;
    }

    /* 4002 to every socket, spread evenly: a trickle of reconnects */
    if (span_ms > (int64_t) lpg_wsc.ctx.conf->shutdown_timeout * 1000) {
        span_ms = (int64_t) lpg_wsc.ctx.conf->shutdown_timeout * 1000;
    }

    ticks = span_ms > LPG_WSC_TRICKLE_MS ? span_ms / LPG_WSC_TRICKLE_MS : 1;
    lpg_wsc.trickle_n = (lpg_wsc.open + ticks - 1) / ticks;

    lpg_log(LPG_LOG_INFO, 0,
            "retiring: %zu websocket(s) closed with 4002 over %lld ms",
            lpg_wsc.open, (long long) span_ms);

    ev_timer_set(&lpg_wsc.trickle, 0., LPG_WSC_TRICKLE_MS / 1000.);
    ev_timer_start(lpg_wsc.ctx.loop, &lpg_wsc.trickle);
}


static void
lpg_wsc_trickle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    size_t     i;
    lpg_wsc_t *w;

    for (i = 0; i < lpg_wsc.trickle_n && (w = lpg_wsc.all) != NULL; i++) {
        lpg_wsc_close(w, LPG_WS_KEEP_ALIVE);
        if (lpg_wsc.all == w) {
            lpg_wsc_unlink_all(w);
        }
    }

    if (lpg_wsc.all == NULL) {
        ev_timer_stop(loop, t);
    }
}
