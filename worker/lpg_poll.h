/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_poll.h: the parked HTTP poll (Odoo's POST <path>/poll and the plain
 * GET), answered at once or parked: one transport of subscriptions.
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


/* after lpg_sub_init(): the Odoo modules a poll uses (sessions, presence,
 * database picking, shapes) */
int lpg_poll_init(const lpg_http_ctx_t *ctx) LPG_MUSTCHECK;

void lpg_poll_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/* graceful stop: every parked poll gets [] now */
void lpg_poll_shutdown(void);

size_t lpg_poll_parked(void);


#endif /* LPG_POLL_H */
