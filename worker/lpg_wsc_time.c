/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc_time.c: a websocket's deadlines and the stop (lpg_wsc.c has the
 * socket itself).
 *
 * Four FIFO lists of one duration each, walked by one ev_timer
 * (lpg_dlist): idle (an empty PING after websocket_ping_interval without
 * incoming bytes), pong (websocket_pong_timeout to answer it, a clean
 * close, or a lingering connection's end), check (the keep-alive's 4002
 * and the application's re-check) and stall (send_timeout).  The stop:
 * 1001 to every socket (SIGQUIT), or 4002 spread over the stop's span (a
 * retiring generation).
 */

#include "lpg_wsc_int.h"
#include "lpg_websocket.h"


/* a doomed socket's deadline 0 goes first; others append in order */
void
lpg_wsc_list_push(lpg_wsc_t *w, int list, int64_t deadline)
{
    lpg_dlist_push(lpg_wsc.lists, list, &w->link[lpg_wsc.lists[list].slot],
                   deadline, deadline == 0);
    lpg_dlist_timer_at(lpg_wsc.ctx.loop, &lpg_wsc.timer, deadline);
}


void
lpg_wsc_list_remove(lpg_wsc_t *w, int slot)
{
    lpg_dlist_remove(lpg_wsc.lists, &w->link[slot]);
}


void
lpg_wsc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    int               i;
    int64_t           now;
    lpg_wsc_t        *w;
    lpg_dlist_link_t *k;
    const lpg_conf_t *conf = lpg_wsc.ctx.conf;

    now = lpg_time_mono_ms();

    for (i = 0; i < LPG_WSC_LISTS; i++) {
        while ((k = lpg_dlist_pop_due(lpg_wsc.lists, i, now)) != NULL) {
            w = lpg_wsc_of(k, lpg_wsc.lists[i].slot);

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
                if (!w->doomed && !w->lingering) {
                    lpg_log(LPG_LOG_DEBUG, 0,
                            "%s: no answer within "
                            "websocket_pong_timeout: connection closed",
                            w->app->name);
                }
                lpg_wsc_free(w);
                break;

            case LPG_WSC_CHECK:
                if (now >= w->keep_alive_at) {
                    lpg_log(LPG_LOG_DEBUG, 0,
                            "%s: keep-alive over: closed with 4002",
                            w->app->name);
                    lpg_wsc_close(w, LPG_WS_KEEP_ALIVE);
                    break;
                }

                lpg_wsc_list_push(w, LPG_WSC_CHECK,
                                  now + lpg_wsc_check_period(w));
                if (w->app->recheck != NULL) {
                    w->app->recheck(w);
                }
                lpg_wsc_flush(w);
                break;

            default:
                lpg_log(LPG_LOG_INFO, 0,
                        "%s: client stopped reading: connection cut "
                        "after send_timeout",
                        w->app->name);
                lpg_wsc_free(w);
                break;
            }
        }
    }

    lpg_dlist_timer_rearm(loop, &lpg_wsc.timer, lpg_wsc.lists, LPG_WSC_LISTS);
}


void
lpg_websocket_shutdown(bool retire, int64_t span_ms)
{
    lpg_wsc_t *w;

    lpg_wsc.stopping = true;
    lpg_wsc.retiring = retire;

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
    lpg_wsc.trickle_n = lpg_dlist_trickle(
        lpg_wsc.ctx.loop, &lpg_wsc.trickle, &span_ms,
        (int64_t) lpg_wsc.ctx.conf->shutdown_timeout * 1000, lpg_wsc.open);

    lpg_log(LPG_LOG_INFO, 0,
            "retiring: %zu websocket(s) closed with 4002 over %lld ms",
            lpg_wsc.open, (long long) span_ms);
}


void
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
