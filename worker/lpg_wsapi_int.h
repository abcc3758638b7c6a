/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsapi_int.h: a /ws socket's state, private to lpg_wsapi.c (the
 * upgrade and the client's ops) and lpg_wsapi_out.c (replays, deliveries
 * and the server's messages).  The socket itself is lpg_wsc, embedded.
 */

#ifndef LPG_WSAPI_INT_H
#define LPG_WSAPI_INT_H


#include "lpg_wsapi.h"
#include "lpg_ahead.h"
#include "lpg_backfill.h"
#include "lpg_strlist.h"
#include "lpg_sub.h"
#include "lpg_wsc.h"

#include <jansson.h>


/* the shared-bytes shape of a /ws batch (lpg_sub_shared_find): apart from
 * the poll's (Odoo versions) and /websocket's (0x10000 + version) */
#define LPG_WSA_SHAPE 0x20000

/* client ops waiting behind a replay or a publish */
#define LPG_WSA_QUEUE_MAX 64

/* bytes of one channel name (its key stays under LPG_SUB_KEY_MAX) */
#define LPG_WSA_CHANNEL_MAX 512


typedef struct {
    lpg_sub_t sub; /* first: the sub layer's callbacks cast back */
    lpg_wsc_t wsc;

    bool dead;       /* the socket is gone; freed when deliver comes */
    bool subscribed; /* sub holds the keys of channels */

    lpg_strlist_t channels; /* the client's channel strings, owned */
    json_t       *queued;   /* ops waiting while busy, owned (or NULL) */

    /* a subscribe's replay: records of the keys held before it (old) up
     * to old_last were sent already, the others' up to new_last are the
     * client's */
    char  **old;
    size_t *old_lens;
    size_t  nold;
    int64_t old_last;
    int64_t new_last;

    /* a subscribe whose last is above this node's high waits for a
     * fetch (lpg_ahead.h, held while it waits: the op), then runs again
     * with ahead_done */
    lpg_ahead_held_t *ahead;
    bool              ahead_done;

    /* a publish's INSERT, allocated while it runs (lpg_wsapi.c) */
    struct lpg_wsa_pub_s *pub;
} lpg_wsa_t;


/* a publish's INSERT, answered with the row's id */
typedef struct lpg_wsa_pub_s {
    lpg_backfill_req_t req; /* first: the callback casts back */
    lpg_wsa_t         *w;
    char              *sql; /* owned */
} lpg_wsa_pub_t;


extern const lpg_http_ctx_t *lpg_wsa_ctx;


/* a replay, a publish or an ahead wait runs: the client's next ops wait
 * in queued */
static inline bool
lpg_wsa_busy(const lpg_wsa_t *w)
{
    return w->pub != NULL || w->ahead != NULL || lpg_sub_filling(&w->sub);
}


/* lpg_wsapi.c */
void lpg_wsa_run_queued(lpg_wsa_t *w);
void lpg_wsa_pub_free(lpg_wsa_t *w);

/* lpg_wsapi_out.c */
extern const lpg_sub_ops_t lpg_wsa_sub_ops;

void lpg_wsa_error(lpg_wsa_t *w, const char *op, const char *why);
void lpg_wsa_reply(lpg_wsa_t *w, json_t *j);
void lpg_wsa_replay_start(lpg_wsa_t *w);
void lpg_wsa_forget_old(lpg_wsa_t *w);
void lpg_wsa_free(lpg_wsc_t *c);


#endif /* LPG_WSAPI_INT_H */
