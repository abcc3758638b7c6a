/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sse.h: GET <path>/sse?channels=a,b[&db=D][&last=N], Server-Sent
 * Events: one transport of subscriptions (lpg_sub), beside the parked poll
 * and the websockets.
 *
 * The request is read as the plain poll API's (lpg_plain.h: channels,
 * database, last; Last-Event-ID wins over ?last), answered 200
 * text/event-stream, and the connection leaves the HTTP layer
 * (lpg_http_detach): each record becomes an event `id: <bus id>` with
 * `data: {"channel": ..., "message": ...}`, from the history or a backfill
 * first, then as records arrive; `retry:` once, a comment line every
 * sse_heartbeat seconds.
 */

#ifndef LPG_SSE_H
#define LPG_SSE_H


#include "lpg_http.h"


void lpg_sse_init(const lpg_http_ctx_t *ctx);

/* GET <path>/sse on the public port: the stream, or a 400 that says why */
void lpg_sse_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/*
 * Graceful stop: retire (SIGHUP's new generation) closes every stream
 * spread over shutdown_timeout (at most span_ms), so that the clients come
 * back as a trickle; otherwise (SIGQUIT) every stream gets what is ready
 * for it, then closes once its output is written.  Either way the client
 * reconnects with its Last-Event-ID.
 */
void lpg_sse_shutdown(bool retire, int64_t span_ms);

size_t lpg_sse_open(void);


#endif /* LPG_SSE_H */
