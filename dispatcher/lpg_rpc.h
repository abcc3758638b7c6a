/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_rpc.h: the decoders of what comes from outside: an Odoo JSON-RPC
 * poll request and a NOTIFY payload.
 *
 * Pure functions (over jansson, and a reader of the common poll body
 * without it), so they are unit-tested and fuzzed on their own
 * (tests/fuzz/).  Every failure has a message meant for the client or
 * the log; no input crashes or leaks.
 */

#ifndef LPG_RPC_H
#define LPG_RPC_H


#include "lpg_core.h"

#include <jansson.h>


/* channels the fast reader takes in one poll (more: jansson) */
#define LPG_RPC_FAST_CHANNELS 64


typedef struct {
    json_t *body;     /* owned: the whole request (NULL: the fast reader's) */
    json_t *channels; /* borrowed from body: an array of strings */
    int64_t last;
    bool    peek;
    int64_t inactivity; /* options.bus_inactivity in ms, -1: absent */
    char   *id;         /* owned: JSON text of the request id, or NULL */

    /* the fast reader's channels (body NULL): the strings' bytes in the
     * request, which needed no unescaping; borrowed from its buffer */
    size_t nfast;
    struct {
        const char *p;
        size_t      len;
    } fast[LPG_RPC_FAST_CHANNELS];
} lpg_rpc_poll_t;


/*
 * Decodes {"params": {"channels": [...], "last": N, "options": {...}}}:
 * the channels are rp->channels (jansson) or, when rp->body is NULL,
 * rp->fast[0 .. nfast).  On error *why says what is wrong (Odoo's own text for a non-string
 * channel) and rp->id may still be set for the error answer.  The caller
 * calls lpg_rpc_poll_free() in every case.
 */
int lpg_rpc_poll_parse(const char *buf, size_t len, size_t max_channels,
                       lpg_rpc_poll_t *rp, const char **why) LPG_MUSTCHECK;

void lpg_rpc_poll_free(lpg_rpc_poll_t *rp);

/* the two readers lpg_rpc_poll_parse() tries in turn, for the tests: the
 * common shape without jansson (lpg_rpc_fast.c: true when it took the
 * body, which it then decoded exactly as jansson would, with rp->body
 * NULL; false leaves nothing to free), then jansson for every body */
bool lpg_rpc_poll_fast(const char *buf, size_t len, size_t max_channels,
                       lpg_rpc_poll_t *rp);
int  lpg_rpc_poll_parse_json(const char *buf, size_t len, size_t max_channels,
                             lpg_rpc_poll_t *rp, const char **why) LPG_MUSTCHECK;

/*
 * Which of the ndbs served databases a NOTIFY payload concerns: Odoo's
 * payload is a JSON array of channels; ["db", ...] names db, any other
 * channel may belong to any database.  Sets mask[i] for dbs[i].
 * LPG_ERROR when the payload is not a JSON array (fetch everything then).
 */
int lpg_rpc_payload_dbs(const char *payload, size_t len, const char *const *dbs,
                        int ndbs, bool *mask) LPG_MUSTCHECK;


#endif /* LPG_RPC_H */
