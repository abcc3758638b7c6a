/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc_batch.h: bus records going out on a websocket as text frames
 * of Odoo's notification list ([{"id", "channel"|..., "message"}, ...]),
 * the shape that Odoo's /websocket and the plain /ws API share.
 *
 * A batch frames what is added, at most max bytes of list per frame (half
 * of max_answer_size: lpg_odoo_list_add never drops a record), and moves
 * the subscription's last past what it framed.  lpg_wsc_batch_deliver
 * serves a ring wake-up: the sockets woken by the same records share one
 * frame, built once (server frames are not masked: the bytes are the same
 * for all).  The batch lives on the caller's stack; lpg_wsc_batch_free
 * releases its list.
 */

#ifndef LPG_WSC_BATCH_H
#define LPG_WSC_BATCH_H

#include "lpg_wsc.h"
#include "lpg_sub.h"
#include "lpg_odoo_poll.h"


typedef struct {
    lpg_wsc_t      *wsc;
    lpg_sub_t      *sub; /* its last moves past what is framed */
    size_t          max; /* bytes of one frame's list */
    lpg_buf_t       list;
    lpg_odoo_list_t l;
    size_t          sent;   /* records in frames the socket took */
    int64_t         max_id; /* of the records added */
    bool            failed; /* out of memory: the caller closes with 1011 */
} lpg_wsc_batch_t;


void lpg_wsc_batch_init(lpg_wsc_batch_t *b, lpg_wsc_t *wsc, lpg_sub_t *sub,
                        int version, size_t max);
void lpg_wsc_batch_add(lpg_wsc_batch_t *b, const lpg_bus_rec_t *r);
void lpg_wsc_batch_flush(lpg_wsc_batch_t *b);
void lpg_wsc_batch_free(lpg_wsc_batch_t *b);

/* the records that woke b->sub, through add (an lpg_sub_rec_pt that ends
 * in lpg_wsc_batch_add(b, ...)), as the frame of shape shared by the
 * batch's sockets; returns the records sent */
size_t lpg_wsc_batch_deliver(lpg_wsc_batch_t *b, int shape, lpg_sub_rec_pt add,
                             void *arg);

#endif /* LPG_WSC_BATCH_H */
