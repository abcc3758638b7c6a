/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_batch.c: a batch of HTTP answers sent with one io_uring_enter
 * (see the header).
 *
 * A queued connection is marked (c->queued) and its output buffer is
 * lent to the kernel until the completion is reaped in
 * lpg_http_batch_end(): lpg_http_close() on a queued connection only
 * marks it closing, the completion closes it.  The ring is created on
 * the first batch, in the worker; when the submission queue is full the
 * batch so far is sent and the batch goes on.
 */

#include "lpg_http_batch.h"
#include "lpg_http_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#if defined(LPG_HAVE_LIBURING)
#include <liburing.h>
#endif


#define LPG_HTTP_BATCH_ENTRIES 1024 /* sends per io_uring_enter at most */


#if defined(LPG_HAVE_LIBURING)

static struct {
    struct io_uring ring;
    bool            tried; /* the ring was set up, or failed (off) */
    bool            on;
    bool            open;
    unsigned        queued;
} lpg_http_batch;


static void lpg_http_batch_send(void);


void
lpg_http_batch_begin(void)
{
    int rc;

    if (!lpg_http_batch.tried) {
        lpg_http_batch.tried = true;
        rc = io_uring_queue_init(LPG_HTTP_BATCH_ENTRIES, &lpg_http_batch.ring,
                                 0);
        if (rc < 0) {
            lpg_log(LPG_LOG_NOTICE, -rc,
                    "io_uring not available: answers are written one by "
                    "one");
            return;
        }

        lpg_http_batch.on = true;
    }

    if (lpg_http_batch.on) {
        lpg_http_batch.open = true;
    }
}


bool
lpg_http_batch_queue(lpg_http_conn_t *c)
{
    struct io_uring_sqe *sqe;

    if (!lpg_http_batch.open || c->queued) {
        return false;
    }

    sqe = io_uring_get_sqe(&lpg_http_batch.ring);
    if (sqe == NULL) {
        /* the queue is full: send what it holds, the batch goes on */
        lpg_http_batch_send();
        sqe = io_uring_get_sqe(&lpg_http_batch.ring);
        if (sqe == NULL) {
            return false;
        }
    }

    io_uring_prep_send(sqe, c->fd, c->out + c->out_sent,
                       c->out_len - c->out_sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, c);
    c->queued = true;
    lpg_http_batch.queued++;

    return true;
}


void
lpg_http_batch_end(void)
{
    if (!lpg_http_batch.open) {
        return;
    }

    lpg_http_batch_send();
    lpg_http_batch.open = false;
}


/* submits what is queued, then finishes each answer */
static void
lpg_http_batch_send(void)
{
    int                  rc;
    unsigned             n, head, i, k;
    lpg_http_conn_t     *c;
    struct io_uring_cqe *cqe;
    lpg_http_conn_t     *done[LPG_HTTP_BATCH_ENTRIES];
    int                  res[LPG_HTTP_BATCH_ENTRIES];

    n = lpg_http_batch.queued;
    if (n == 0) {
        return;
    }

    do {
        rc = io_uring_submit_and_wait(&lpg_http_batch.ring, n);
    } while (rc == -EINTR);

    if (rc < 0) {
        lpg_log(LPG_LOG_ALERT, -rc, "io_uring_submit_and_wait() failed");
    }

    atomic_fetch_add_explicit(&lpg_http_ctx.stats->batch_submits, 1,
                              memory_order_relaxed);

    /* reap every completion first: finishing an answer may queue again
     * (a pipelined request answered at once) */
    for (i = 0; i < n;) {
        if (io_uring_wait_cqe(&lpg_http_batch.ring, &cqe) != 0) {
            break;
        }

        k = 0;
        io_uring_for_each_cqe(&lpg_http_batch.ring, head, cqe)
        {
            if (i == n) {
                break;
            }

            done[i] = io_uring_cqe_get_data(cqe);
            res[i] = cqe->res;
            i++;
            k++;
        }

        io_uring_cq_advance(&lpg_http_batch.ring, k);
    }

    lpg_http_batch.queued = 0;
    atomic_fetch_add_explicit(&lpg_http_ctx.stats->batched_sends, i,
                              memory_order_relaxed);

    if (i < n) {
        /* only a broken ring gets here: its connections stay marked
         * (never freed: the kernel may still read their buffers), and
         * the ring is not used again */
        lpg_log(LPG_LOG_ALERT, 0, "io_uring lost %u sends", n - i);
        lpg_http_batch.on = false;
    }

    lpg_http_batch.open = false;

    for (n = i, i = 0; i < n; i++) {
        c = done[i];
        c->queued = false;
        lpg_http_sent(c, res[i]);
    }

    lpg_http_batch.open = lpg_http_batch.on;
}


void
lpg_http_batch_stop(void)
{
    if (lpg_http_batch.on) {
        io_uring_queue_exit(&lpg_http_batch.ring);
    }

    lpg_http_batch.on = false;
    lpg_http_batch.open = false;
}

#else

void
lpg_http_batch_begin(void)
{
}


void
lpg_http_batch_end(void)
{
}


bool
lpg_http_batch_queue(lpg_http_conn_t *c)
{
    return false;
}


void
lpg_http_batch_stop(void)
{
}

#endif
