/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket.h: GET /websocket, Odoo 16/17's bus on one socket per
 * browser: the second transport of subscriptions (lpg_sub), beside the
 * parked poll.
 *
 * The upgrade is checked as Odoo does (ws/lpg_ws_handshake), the
 * session of its cookies asked like a poll's (odoo/lpg_session), then the
 * connection leaves the HTTP layer (lpg_http_detach) and speaks RFC 6455
 * (ws/lpg_ws) with Odoo's events and frames (odoo/lpg_odoo_ws).
 */

#ifndef LPG_WEBSOCKET_H
#define LPG_WEBSOCKET_H


#include "lpg_http.h"


/* after lpg_poll_init() (the Odoo modules it uses) */
int lpg_websocket_init(const lpg_http_ctx_t *ctx) LPG_MUSTCHECK;

/* GET /websocket on the public port: 101, or the handshake's error */
void lpg_websocket_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/*
 * Graceful stop of every websocket application's sockets (lpg_wsc): retire
 * (SIGHUP's new generation, a binary upgrade) closes
 * every socket with 4002 spread over shutdown_timeout (at most span_ms),
 * so that the clients come back as a trickle; otherwise (SIGQUIT) every
 * socket gets 1001 now.
 */
void lpg_websocket_shutdown(bool retire, int64_t span_ms);

size_t lpg_websocket_open(void);


#endif /* LPG_WEBSOCKET_H */
