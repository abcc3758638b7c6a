/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsapi.h: the plain WebSocket API, GET <path>/ws, for applications
 * that publish with lpgate_send() (or any bus_bus row): the plain poll
 * API's channels on one socket.
 *
 * Client messages (TEXT frames, one JSON object each):
 *   {"op": "subscribe", "channels": ["a", ...], "last": N, "db": "..."}
 *   {"op": "unsubscribe", "channels": ["a", ...]}
 *   {"op": "publish", "channel": "a", "message": <any JSON>, "db": "..."}
 * Server messages: a batch of records `[{"id", "channel", "message"}, ...]`
 * (a JSON array), an acknowledgement `{"op": ..., ...}` or an error
 * `{"error": "what is wrong", "op": <the op or null>}` (an object); README
 * "Plain WebSocket API" has the details.
 */

#ifndef LPG_WSAPI_H
#define LPG_WSAPI_H


#include "lpg_http.h"


void lpg_wsapi_init(const lpg_http_ctx_t *ctx);

/* GET <path>/ws: 101, or the handshake's error */
void lpg_wsapi_request(lpg_http_conn_t *c, const lpg_http_request_t *r);


#endif /* LPG_WSAPI_H */
