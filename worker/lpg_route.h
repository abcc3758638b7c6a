/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_route.h: what a worker does with a complete HTTP request.
 *
 * Routes live under longpolling_path: health today; poll, send and
 * im_status with the notification path.  A route answers through
 * lpg_http_respond(), at once or later.
 */

#ifndef LPG_ROUTE_H
#define LPG_ROUTE_H


#include "lpg_http.h"


void lpg_route_init(const lpg_http_ctx_t *ctx);
void lpg_route_request(lpg_http_conn_t *c, const lpg_http_request_t *r);


#endif /* LPG_ROUTE_H */
