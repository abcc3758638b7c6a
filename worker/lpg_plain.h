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


/* the query string as the body of an equivalent JSON-RPC call (the
 * caller frees it); NULL with *why on a malformed query */
char *lpg_plain_query_body(const lpg_http_request_t *r, const char **why);

/* answers c with 400 {"error": why} */
void lpg_plain_error(lpg_http_conn_t *c, const char *why);

/* the answer: the result list as a bare JSON array, into out */
int lpg_plain_body(lpg_buf_t *out, const lpg_buf_t *list) LPG_MUSTCHECK;


#endif /* LPG_PLAIN_H */
