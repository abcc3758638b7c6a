/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws_rate.c: Odoo's websocket rate limit (_limit_rate), applied to
 * every incoming frame, control frames included: a ring of the arrival
 * times of the last rate_burst frames; a frame is refused (1013) when the
 * burst-th frame before it came less than burst * delay ago.  The stamps
 * are monotonic msec truncated to 32 bits (differences stay exact for
 * windows below 24 days), kept inside lpg_ws_t for the default burst.
 */

#include "lpg_ws_int.h"

#include <stdlib.h>


int
lpg_ws_rate_init(lpg_ws_t *ws, const lpg_ws_conf_t *conf)
{
    ws->rate_burst = conf->rate_burst;
    ws->rate_window =
        (uint32_t) (conf->rate_delay * (int64_t) conf->rate_burst);
    ws->rate = ws->rate_inline;

    if (ws->rate_burst > LPG_WS_RATE_INLINE) {
        ws->rate = calloc(ws->rate_burst, sizeof(uint32_t));
        if (ws->rate == NULL) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


void
lpg_ws_rate_free(lpg_ws_t *ws)
{
    if (ws->rate != ws->rate_inline) {
        free(ws->rate);
    }

    ws->rate = NULL;
}


bool
lpg_ws_rate_ok(lpg_ws_t *ws)
{
    unsigned tail;
    uint32_t now;

    if (ws->rate_burst == 0) {
        return true;
    }

    now = (uint32_t) ws->now;

    if (ws->rate_n == ws->rate_burst) {
        if ((uint32_t) (now - ws->rate[ws->rate_head]) < ws->rate_window) {
            return false;
        }

        ws->rate[ws->rate_head] = now;
        ws->rate_head = (ws->rate_head + 1) % ws->rate_burst;

        return true;
    }

    tail = (ws->rate_head + ws->rate_n) % ws->rate_burst;
    ws->rate[tail] = now;
    ws->rate_n++;

    return true;
}
