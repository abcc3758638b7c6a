/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_wsroutes.h: Odoo 16+'s HTTP routes beside the /websocket
 * upgrade, which nginx sends to the same port (Odoo's documented
 * `location /websocket`).
 *
 *   GET|HEAD /websocket/health        {"status": "pass"}, lpgate's health
 *   POST /websocket/peek_notifications {"channels", "notifications"} now
 *   POST /websocket/update_bus_presence presence + im_status notification
 *
 * The two JSON routes take the session_id (and dgid) cookie as the
 * websocket does (lpg_session.h).  Odoo also makes them refuse a session
 * without its is_websocket_session flag, set by a peek with is_first_poll:
 * lpgate cannot write Odoo's session, and a per-worker flag would refuse
 * at random after a session_ttl or on another worker, so the flag is not
 * asked for (it protects nothing: any client sets it with is_first_poll).
 * The upgrade itself (GET /websocket) is not served here.
 */

#ifndef LPG_ODOO_WSROUTES_H
#define LPG_ODOO_WSROUTES_H


#include "lpg_http.h"


/* ctx is copied; its pointers are borrowed for the worker's life */
void lpg_odoo_wsroutes_init(const lpg_http_ctx_t *ctx);

/* true when r is one of the routes under /websocket/ (answered now or
 * later); false for anything else, /websocket itself included */
bool lpg_odoo_wsroutes_request(lpg_http_conn_t *c, const lpg_http_request_t *r);


#endif /* LPG_ODOO_WSROUTES_H */
