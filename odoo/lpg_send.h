/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_send.h: Odoo 8-14's public POST <path>/send, off by default.
 *
 * send(channel, message) inserts a bus_bus row as bus.sendone does, then
 * wakes the master (kick eventfd), which fetches as for a NOTIFY.  Only
 * string channels matching send_channels and messages under
 * send_max_bytes are accepted.
 */

#ifndef LPG_SEND_H
#define LPG_SEND_H


#include "lpg_http.h"


void lpg_send_request(lpg_http_conn_t *c, const lpg_http_request_t *r);


#endif /* LPG_SEND_H */
