/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sse_life.c: a Server-Sent Events stream's socket, from its 200 to
 * the end.
 *
 * Output is written at once when nothing waits (no copy); what the socket
 * does not take waits in the stream's queue, capped at max_answer_size (a
 * client that falls that far behind is cut), and a client that does not
 * drain it for send_timeout is cut too.  The timers are three FIFO lists
 * of one duration each (lpg_sse_int.h) walked by one ev_timer (lpg_dlist):
 * the heartbeat comment, the stall, and the doomed (closed, freed at the
 * next timer run so nothing goes under a caller's feet).  The stream never
 * reads what the client sends (an EventSource sends nothing): a read only
 * learns of its close.  The stop: every stream ends once its last events
 * are written (SIGQUIT), or they end spread over the stop's span so the
 * clients come back as a trickle (a retiring generation).
 */

#include "lpg_sse_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LPG_SSE_READ_CHUNK 4096  /* bytes discarded per read */
#define LPG_SSE_READS      4     /* reads per wake-up */
#define LPG_SSE_KEEP_CAP   16384 /* a drained queue keeps this much */


static void lpg_sse_flush(lpg_sse_t *s);
static void lpg_sse_free(lpg_sse_t *s);
static void lpg_sse_unlink_all(lpg_sse_t *s);
static void lpg_sse_arm(lpg_sse_t *s, int events);
static void lpg_sse_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_sse_list_push(lpg_sse_t *s, int list, int64_t deadline);
static void lpg_sse_list_remove(lpg_sse_t *s, int slot);
static void lpg_sse_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void lpg_sse_trickle_cb(struct ev_loop *loop, ev_timer *t, int revents);


lpg_sse_global_t lpg_sse;


void
lpg_sse_life_init(void)
{
    int i;

    for (i = 0; i < LPG_SSE_LISTS; i++) {
        lpg_sse.lists[i].slot =
            i == LPG_SSE_STALL ? LPG_SSE_SLOT_STALL : LPG_SSE_SLOT_TIME;
    }

    ev_init(&lpg_sse.timer.ev, lpg_sse_timer_cb);
    ev_init(&lpg_sse.trickle, lpg_sse_trickle_cb);
}


size_t
lpg_sse_open(void)
{
    return lpg_sse.open;
}


/* the detached fd is the stream's: read for its close, counted open, the
 * first heartbeat due */
void
lpg_sse_opened(lpg_sse_t *s, int fd)
{
    int i;

    for (i = 0; i < LPG_SSE_SLOTS; i++) {
        s->link[i].list = -1;
    }

    s->fd = fd;
    ev_io_init(&s->io, lpg_sse_io_cb, fd, EV_READ);
    ev_io_start(lpg_sse.ctx.loop, &s->io);

    s->next = lpg_sse.all;
    s->prev = NULL;
    if (lpg_sse.all != NULL) {
        lpg_sse.all->prev = s;
    }
    lpg_sse.all = s;
    lpg_sse.open++;
    atomic_store_explicit(&lpg_sse.ctx.stats->sse_open, lpg_sse.open,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&lpg_sse.ctx.stats->requests, 1,
                              memory_order_relaxed);

    lpg_sse_list_push(s, LPG_SSE_BEAT,
                      lpg_time_mono_ms()
                          + (int64_t) lpg_sse.ctx.conf->sse_heartbeat * 1000);
}


/*
 * Writes p now when nothing waits, queues what the socket does not take.
 * A stream that would have more than max_answer_size waiting is cut (its
 * client resumes from the last event it got whole), unless force (a
 * replay: its size is capped, and cutting it would only repeat it).
 * LPG_OK, or LPG_DONE when the stream ended (doomed: not freed before the
 * next timer run).
 */
int
lpg_sse_send(lpg_sse_t *s, const char *p, size_t len, bool force)
{
    size_t  pending;
    ssize_t n;

    if (s->doomed) {
        return LPG_DONE;
    }

    pending = s->out.len - s->off;

    if (pending == 0) {
        n = write(s->fd, p, len);

        if (n == (ssize_t) len) {
            return LPG_OK;
        }

        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR) {
                lpg_log(LPG_LOG_DEBUG, errno, "sse: write() failed");
                lpg_sse_doom(s);
                return LPG_DONE;
            }

            n = 0;
        }

        p += n;
        len -= (size_t) n;
        s->out.len = 0;
        s->off = 0;
    }

    if (!force && pending + len > (size_t) lpg_sse.ctx.conf->max_answer_size) {
        lpg_log(LPG_LOG_INFO, 0, "sse: client too slow, %zu bytes waiting: cut",
                pending + len);
        lpg_sse_doom(s);
        return LPG_DONE;
    }

    if (lpg_buf_append(&s->out, p, len) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, ENOMEM, "sse: output dropped, stream closed");
        lpg_sse_doom(s);
        return LPG_DONE;
    }

    if (s->link[LPG_SSE_SLOT_STALL].list == -1) {
        lpg_sse_list_push(s, LPG_SSE_STALL,
                          lpg_time_mono_ms()
                              + (int64_t) lpg_sse.ctx.conf->send_timeout
                                  * 1000);
    }

    lpg_sse_arm(s, EV_READ | EV_WRITE);

    return LPG_OK;
}


/* writes what waits; a closing stream ends once it is all written */
static void
lpg_sse_flush(lpg_sse_t *s)
{
    ssize_t n;

    while (s->off < s->out.len) {
        n = write(s->fd, s->out.data + s->off, s->out.len - s->off);

        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }

            lpg_log(LPG_LOG_DEBUG, errno, "sse: write() failed");
            lpg_sse_doom(s);
            return;
        }

        s->off += (size_t) n;
    }

    s->out.len = 0;
    s->off = 0;
    if (s->out.cap > LPG_SSE_KEEP_CAP) {
        lpg_buf_free(&s->out);
    }

    lpg_sse_list_remove(s, LPG_SSE_SLOT_STALL);
    lpg_sse_arm(s, EV_READ);

    if (s->closing) {
        lpg_sse_doom(s);
    }
}


/* no more events: the stream ends once its output is written */
void
lpg_sse_finish(lpg_sse_t *s)
{
    if (s->doomed || s->closing) {
        return;
    }

    s->closing = true;
    lpg_sub_release(&s->sub);
    lpg_sse_unlink_all(s);
    lpg_sse_list_remove(s, LPG_SSE_SLOT_TIME);

    if (s->off == s->out.len) {
        lpg_sse_doom(s);
    }
}


/* the connection ends now; the stream is freed at the next timer run */
void
lpg_sse_doom(lpg_sse_t *s)
{
    if (s->doomed) {
        return;
    }

    s->doomed = true;
    s->closing = true;
    lpg_ahead_cancel(&s->ahead);
    lpg_sub_release(&s->sub);
    lpg_sse_unlink_all(s);

    ev_io_stop(lpg_sse.ctx.loop, &s->io);
    close(s->fd);
    s->fd = -1;
    lpg_http_detached_closed();
    lpg_sse.open--;
    atomic_store_explicit(&lpg_sse.ctx.stats->sse_open, lpg_sse.open,
                          memory_order_relaxed);

    lpg_buf_free(&s->out);
    s->off = 0;

    lpg_sse_list_remove(s, LPG_SSE_SLOT_STALL);
    lpg_sse_list_push(s, LPG_SSE_DOOM, 0);
}


static void
lpg_sse_free(lpg_sse_t *s)
{
    int i;

    for (i = 0; i < LPG_SSE_SLOTS; i++) {
        lpg_sse_list_remove(s, i);
    }

    lpg_ahead_cancel(&s->ahead);
    lpg_sub_release(&s->sub);
    free(s);
}


/* out of the list of streams a stop closes */
static void
lpg_sse_unlink_all(lpg_sse_t *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;

    } else if (lpg_sse.all == s) {
        lpg_sse.all = s->next;
    }

    if (s->next != NULL) {
        s->next->prev = s->prev;
    }

    s->next = NULL;
    s->prev = NULL;
}


static void
lpg_sse_arm(lpg_sse_t *s, int events)
{
    if (ev_is_active(&s->io) && s->io.events == events) {
        return;
    }

    ev_io_stop(lpg_sse.ctx.loop, &s->io);
    ev_io_set(&s->io, s->fd, events);
    ev_io_start(lpg_sse.ctx.loop, &s->io);
}


static void
lpg_sse_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int        i;
    char       buf[LPG_SSE_READ_CHUNK];
    ssize_t    n;
    lpg_sse_t *s = (lpg_sse_t *) ((char *) w - offsetof(lpg_sse_t, io));

    if (revents & EV_WRITE) {
        lpg_sse_flush(s);
    }

    if (!(revents & EV_READ) || s->doomed) {
        return;
    }

    for (i = 0; i < LPG_SSE_READS; i++) {
        n = read(s->fd, buf, sizeof(buf));

        if (n == 0) {
            lpg_log(LPG_LOG_DEBUG, 0, "sse: the client closed");
            lpg_sse_doom(s);
            return;
        }

        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR) {
                lpg_log(LPG_LOG_DEBUG, errno, "sse: read() failed");
                lpg_sse_doom(s);
            }

            return;
        }
    }
}


/* appended: a stream's DOOM deadline 0 waits behind the ones retried */
static void
lpg_sse_list_push(lpg_sse_t *s, int list, int64_t deadline)
{
    lpg_dlist_push(lpg_sse.lists, list, &s->link[lpg_sse.lists[list].slot],
                   deadline, false);
    lpg_dlist_timer_at(lpg_sse.ctx.loop, &lpg_sse.timer, deadline);
}


static void
lpg_sse_list_remove(lpg_sse_t *s, int slot)
{
    lpg_dlist_remove(lpg_sse.lists, &s->link[slot]);
}


static void
lpg_sse_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    int               i;
    int64_t           now;
    lpg_sse_t        *s;
    lpg_dlist_link_t *k;

    /* a comment, then the blank line that ends a block (EventSource
     * dispatches nothing for it) */
    static const char beat[] = ": hb\n\n";

    now = lpg_time_mono_ms();

    for (i = 0; i < LPG_SSE_LISTS; i++) {
        while ((k = lpg_dlist_pop_due(lpg_sse.lists, i, now)) != NULL) {
            s = lpg_sse_of(k, lpg_sse.lists[i].slot);

            switch (i) {
            case LPG_SSE_BEAT:
                /* a comment line: proxies see traffic, EventSource
                 * ignores it */
                if (lpg_sse_send(s, beat, sizeof(beat) - 1, false) == LPG_OK) {
                    lpg_sse_list_push(
                        s, LPG_SSE_BEAT,
                        now + (int64_t) lpg_sse.ctx.conf->sse_heartbeat * 1000);
                }
                break;

            case LPG_SSE_DOOM:
                if (s->sub.ready) {
                    /* on the ready list (never across loop iterations):
                     * next time */
                    lpg_sse_list_push(s, LPG_SSE_DOOM, now + 1);
                    goto next;
                }

                lpg_sse_free(s);
                break;

            default:
                lpg_log(LPG_LOG_INFO, 0,
                        "sse: client stopped reading: stream cut after "
                        "send_timeout");
                lpg_sse_doom(s);
                break;
            }
        }

    next:
        continue;
    }

    lpg_dlist_timer_rearm(loop, &lpg_sse.timer, lpg_sse.lists, LPG_SSE_LISTS);
}


void
lpg_sse_shutdown(bool retire, int64_t span_ms)
{
    lpg_sse_t *s;

    lpg_sse.stopping = true;

    if (!retire) {
        ev_timer_stop(lpg_sse.ctx.loop, &lpg_sse.trickle);

        /* what is ready goes out first: the last events, then the end */
        lpg_sub_flush();

        while ((s = lpg_sse.all) != NULL) {
            lpg_sse_finish(s);
        }

        return;
    }

    if (lpg_sse.all == NULL) {
        return;
    }

    /* closed evenly over the span: a trickle of reconnects */
    lpg_sse.trickle_n = lpg_dlist_trickle(
        lpg_sse.ctx.loop, &lpg_sse.trickle, &span_ms,
        (int64_t) lpg_sse.ctx.conf->shutdown_timeout * 1000, lpg_sse.open);

    lpg_log(LPG_LOG_INFO, 0, "retiring: %zu sse stream(s) closed over %lld ms",
            lpg_sse.open, (long long) span_ms);
}


static void
lpg_sse_trickle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    size_t     i;
    lpg_sse_t *s;

    for (i = 0; i < lpg_sse.trickle_n && (s = lpg_sse.all) != NULL; i++) {
        if (s->sub.ready) {
            /* its records go out first */
            lpg_sub_flush();
        }

        lpg_sse_finish(s);
    }

    if (lpg_sse.all == NULL) {
        ev_timer_stop(loop, t);
    }
}
