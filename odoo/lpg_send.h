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
#include "lpg_json.h"

#include <jansson.h>


void lpg_send_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/*
 * The send route's checks for a database of version (allow_send or demo,
 * 8-14 only, a string channel matching send_channels, a message under
 * send_max_bytes), shared by every transport that publishes: LPG_OK with
 * the INSERT's text (NUL-terminated) appended to sql, for
 * lpg_backfill_queue(), then lpg_http_kick() once it is done; else
 * LPG_ERROR and *why.
 */
int lpg_send_check(int version, const json_t *channel, const json_t *message,
                   lpg_buf_t *sql, const char **why) LPG_MUSTCHECK;


#endif /* LPG_SEND_H */
