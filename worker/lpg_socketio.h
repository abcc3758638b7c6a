/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio.h: a Socket.IO v4 server (engine.io protocol 4) at
 * <longpolling_path>/socket.io/, the fourth transport of subscriptions
 * (lpg_sub), for applications that publish with lpgate_send().
 *
 * Both engine.io transports (HTTP long polling, the websocket, and the
 * upgrade from one to the other), ping/pong, namespaces (a namespace is a
 * channel prefix: "/chat" serves the channels "chat/<name>", "/" the
 * names themselves), the client's `subscribe`, `unsubscribe` and
 * `publish` events (with acks) and a `notification` event per record.  A
 * session id carries its worker's slot: a request that another worker
 * accepted is handed to this one (lpg_handoff.h).
 */

#ifndef LPG_SOCKETIO_H
#define LPG_SOCKETIO_H


#include "lpg_http.h"


void lpg_socketio_init(const lpg_http_ctx_t *ctx);

/* any method on <path>/socket.io/ (and without the trailing '/') */
void lpg_socketio_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/* graceful stop: every session is closed now (its parked poll gets the
 * close packet, its websocket a close frame) */
void lpg_socketio_shutdown(void);

size_t lpg_socketio_open(void);


#endif /* LPG_SOCKETIO_H */
