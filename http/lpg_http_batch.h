/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_batch.h: a batch of HTTP answers sent in one go.
 *
 * Between lpg_http_batch_begin() and lpg_http_batch_end(), the first
 * send of each answer written by lpg_http_respond*() is queued instead of
 * written; lpg_http_batch_end() sends them all with one io_uring_enter()
 * (non-blocking sends, MSG_DONTWAIT), then finishes each answer as
 * write() would have: what the socket did not take is written when it
 * can, an error closes the connection.  The long poll's deliveries of a
 * ring batch (lpg_sub's batch hooks) run inside one; any transport that
 * answers through lpg_http may.  Built without liburing, or when the
 * kernel refuses io_uring (logged once), both calls do nothing and every
 * answer is written at once with write().
 */

#ifndef LPG_HTTP_BATCH_H
#define LPG_HTTP_BATCH_H


#include "lpg_core.h"


/* batches do not nest: a begin inside an open batch does nothing */
void lpg_http_batch_begin(void);
void lpg_http_batch_end(void);

/* the batch's ring is the process's own: call in the worker, after fork */
void lpg_http_batch_stop(void);


#endif /* LPG_HTTP_BATCH_H */
