/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_gap.c: the cursor rule of lpg_gap.h.
 */

#include "lpg_gap.h"


size_t
lpg_gap_scan(lpg_gap_t *g, const int64_t *ids, size_t n, int64_t now,
             uint64_t xmin, uint64_t xmax, int64_t timeout_ms, bool *held,
             int *closed)
{
    size_t i;

    *closed = 0;

    for (i = 0; i < n; i++) {
        if (ids[i] <= g->cursor) {
            /* cannot happen with "id > cursor"; never move backwards */
            continue;
        }

        if (ids[i] == g->cursor + 1) {
            g->cursor = ids[i];
            continue;
        }

        /* ids (cursor, ids[i]) are missing */
        if (g->since == 0) {
            g->since = now;
            g->xmax_ref = 0;
        }

        if (g->xmax_ref == 0 && now - g->since >= LPG_GAP_SETTLE_MS) {
            g->xmax_ref = xmax;
        }

        if (g->xmax_ref != 0 && xmin >= g->xmax_ref) {
            *closed = 1;
            g->final++;

        } else if (now - g->since >= timeout_ms) {
            *closed = 2;
            g->forced++;

        } else {
            break;
        }

        g->last_from = g->cursor + 1;
        g->last_to = ids[i] - 1;
        g->cursor = ids[i];
        g->since = 0;
        g->xmax_ref = 0;
    }

    *held = i < n;

    if (!*held) {
        g->since = 0;
        g->xmax_ref = 0;
    }

    return i;
}
