/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_poll.h: Odoo's POST <path>/poll, answered at once or parked.
 *
 * A poll whose channels have records newer than its `last` in the worker's
 * history is answered at once; otherwise it is parked in the dispatcher
 * until a matching record arrives (all matching records newer than last,
 * in id order) or its timeout passes ([]).  Answers take the shape of the
 * database's Odoo version: 8-14 {"id","channel","message"}, 15
 * {"id","message"} with channel_with_db keys and the implicit broadcast.
 */

#ifndef LPG_POLL_H
#define LPG_POLL_H


#include "lpg_http.h"
#include "lpg_ring.h"


int lpg_poll_init(const lpg_http_ctx_t *ctx, int doorbell,
                  lpg_ring_t *ring) LPG_MUSTCHECK;

void lpg_poll_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/* the database of a request: ?db=, dbfilter on Host, or the only one;
 * -1 when none */
int lpg_poll_pick_db(const lpg_http_request_t *r);

/* answers c with Odoo's JSON-RPC error shape for version (HTTP 200) */
void lpg_poll_rpc_error(lpg_http_conn_t *c, int version, const char *id,
                        const char *name, const char *msg);

/* the same with Odoo's code and title (100, "Odoo Session Expired") */
void lpg_poll_rpc_fail(lpg_http_conn_t *c, int version, const char *id,
                       int code, const char *title, const char *name,
                       const char *msg);

/* the Odoo version whose shapes database db gets */
int lpg_poll_version(int db);

/* graceful stop: every parked poll gets [] now */
void lpg_poll_shutdown(void);

size_t lpg_poll_parked(void);


#endif /* LPG_POLL_H */
