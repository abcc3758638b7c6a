/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc_batch.c: bus records as websocket frames of Odoo's notification
 * list, for Odoo's /websocket and the plain /ws API (lpg_wsc_batch.h).
 */

#include "lpg_wsc_batch.h"
#include "lpg_odoo_ws.h"

#include <string.h>


static void lpg_wsc_batch_max_id(const lpg_bus_rec_t *r, void *arg);


void
lpg_wsc_batch_init(lpg_wsc_batch_t *b, lpg_wsc_t *wsc, lpg_sub_t *sub,
                   int version, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->wsc = wsc;
    b->sub = sub;
    b->max = max;
    lpg_odoo_list_init(&b->l, &b->list, version);
}


void
lpg_wsc_batch_add(lpg_wsc_batch_t *b, const lpg_bus_rec_t *r)
{
    size_t before;

    if (b->list.len >= b->max) {
        lpg_wsc_batch_flush(b);
    }

    before = b->l.n;
    lpg_odoo_list_add(r, &b->l);

    if (b->l.n > before && r->id > b->max_id) {
        b->max_id = r->id;
    }

    if (b->l.failed) {
        b->failed = true;
    }
}


/* the records added so far as one frame; last moves past them */
void
lpg_wsc_batch_flush(lpg_wsc_batch_t *b)
{
    lpg_buf_t frame;

    if (b->l.n == 0 || b->failed) {
        return;
    }

    memset(&frame, 0, sizeof(frame));

    if (lpg_odoo_ws_frame(&frame, &b->list) != LPG_OK) {
        b->failed = true;

    } else if (lpg_wsc_send(b->wsc, (const uint8_t *) frame.data, frame.len)
               != LPG_DONE)
    {
        b->sent += b->l.n;
    }

    lpg_buf_free(&frame);

    b->list.len = 0;
    b->l.n = 0;

    if (b->max_id > b->sub->last) {
        b->sub->last = b->max_id;
    }
}


void
lpg_wsc_batch_free(lpg_wsc_batch_t *b)
{
    lpg_buf_free(&b->list);
}


size_t
lpg_wsc_batch_deliver(lpg_wsc_batch_t *b, int shape, lpg_sub_rec_pt add,
                      void *arg)
{
    size_t     n;
    int64_t    max;
    lpg_buf_t *shared;
    lpg_sub_t *s = b->sub;

    shared = lpg_sub_shared_find(s, shape);

    if (shared == NULL) {
        (void) lpg_sub_each_match(s, add, arg);

        if (!b->failed && b->l.n == (size_t) s->nmatches) {
            /* every match went into one list: the batch's frame */
            shared = lpg_sub_shared_new();

            if (lpg_odoo_ws_frame(shared, &b->list) == LPG_OK) {
                lpg_sub_shared_keep(s, shape);

            } else {
                shared = NULL;
            }
        }

        if (shared == NULL) {
            lpg_wsc_batch_flush(b);
            return b->sent;
        }
    }

    max = s->last;
    n = lpg_sub_each_match(s, lpg_wsc_batch_max_id, &max);

    if (lpg_wsc_send(b->wsc, (const uint8_t *) shared->data, shared->len)
        != LPG_DONE)
    {
        b->sent += n;
    }

    s->last = max;

    return b->sent;
}


static void
lpg_wsc_batch_max_id(const lpg_bus_rec_t *r, void *arg)
{
    int64_t *max = arg;

    if (r->id > *max) {
        *max = r->id;
    }
}
