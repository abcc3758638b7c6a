/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_plain.h: the plain poll API (GET <path>/poll?channels=&last=), the
 * JSON-RPC poll's shapes for clients that are not Odoo's.
 */

#ifndef LPG_PLAIN_H
#define LPG_PLAIN_H


#include "lpg_http.h"
#include "lpg_json.h"
#include "lpg_odoo_poll.h"


/* the query string as the body of an equivalent JSON-RPC call (the
 * caller frees it), *nchannels the channels it names; NULL with *why on a
 * malformed query */
char *lpg_plain_query_body(const lpg_http_request_t *r, size_t *nchannels,
                           const char **why);

/*
 * The plain API's request into s (database, version, channel keys, last)
 * and q (the rest; lpg_odoo_poll_free() it either way): ?db= or the only
 * database, ?channels= (at most max_channels_per_poll), ?last=.
 * LPG_ERROR with *why, the 400's reason, on a malformed query or an
 * unknown database.
 */
int lpg_plain_parse(const lpg_http_request_t *r, lpg_odoo_poll_t *q,
                    lpg_sub_t *s, size_t *nchannels,
                    const char **why) LPG_MUSTCHECK;

/* answers c with 400 {"error": why} */
void lpg_plain_error(lpg_http_conn_t *c, const char *why);

/* the answer: the result list as a bare JSON array, into out */
int lpg_plain_body(lpg_buf_t *out, const lpg_buf_t *list) LPG_MUSTCHECK;


#endif /* LPG_PLAIN_H */
