/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_int.h: a connection's state, private to the HTTP server's two
 * files: lpg_http.c (the connection's life, reads, writes, timers) and
 * lpg_http_parse.c (the parser callbacks and the client's address).
 */

#ifndef LPG_HTTP_INT_H
#define LPG_HTTP_INT_H


#include "lpg_http.h"

#include <http_parser.h>


typedef enum {
    LPG_HTTP_H_NONE = 0,
    LPG_HTTP_H_HOST,
    LPG_HTTP_H_ORIGIN,
    LPG_HTTP_H_XFF,
    LPG_HTTP_H_COOKIE,
    LPG_HTTP_H_UPGRADE,
    LPG_HTTP_H_CONNECTION,
    LPG_HTTP_H_WS_KEY,
    LPG_HTTP_H_WS_VERSION,
    LPG_HTTP_H_XFH,
    LPG_HTTP_H_XFP,
    LPG_HTTP_H_OTHER
} lpg_http_header_e;


typedef struct {
    size_t off;
    size_t len;
} lpg_http_span_t;


struct lpg_http_conn_s {
    ev_io    io;
    ev_timer timer;
    int      fd;

    http_parser parser;

    /* input: [0, parsed) went through the parser, [parsed, len) did not */
    char  *in;
    size_t in_len;
    size_t in_cap;
    size_t parsed;

    lpg_http_span_t   url;
    lpg_http_span_t   field;
    lpg_http_span_t   host;
    lpg_http_span_t   origin;
    lpg_http_span_t   xff;
    lpg_http_span_t   cookie;  /* the first Cookie header */
    lpg_http_span_t   upgrade; /* the websocket handshake's headers */
    lpg_http_span_t   connection;
    lpg_http_span_t   ws_key;
    lpg_http_span_t   ws_version;
    lpg_http_span_t   xfh; /* X-Forwarded-Host, -Proto */
    lpg_http_span_t   xfp;
    char             *cookies; /* several: all of them, "; "-joined */
    size_t            cookies_len;
    size_t            cookies_cap;
    char              peer[64]; /* the socket peer, text */
    lpg_http_header_e header;
    bool              in_field;
    bool              headers_done;
    bool              complete;
    bool              busy;    /* the router holds the request */
    bool              closing; /* close once the output is written */
    int               error;   /* status a parser callback chose */
    bool              admin;   /* accepted on the admin listener */
    bool              over;    /* accepted past max_conns: 503 */

    char  *body;
    size_t body_len;
    size_t body_cap;

    char  *out;
    size_t out_len;
    size_t out_sent;

    /* who holds a parked request, told when the peer goes away */
    void (*hold_cb)(void *data);
    void *hold_data;

    lpg_http_conn_t *next;
    lpg_http_conn_t *prev;
};


/* the worker's context (lpg_http.c), read-only after lpg_http_init() */
extern lpg_http_ctx_t lpg_http_ctx;


/* the callbacks of lpg_http_parse.c */
void lpg_http_parser_settings(http_parser_settings *s);

const char *lpg_http_reason(int status);

/* forgets the joined Cookie text of the request (several headers) */
void lpg_http_cookie_free(lpg_http_conn_t *c);

/* the socket peer's address, as text ("" when unknown) */
void lpg_http_peer(int fd, char *buf, size_t len);

/* true when the socket peer is one of trusted_proxies */
bool lpg_http_proxied(lpg_http_conn_t *c);

/* forgets the header spans of the request */
void lpg_http_spans_reset(lpg_http_conn_t *c);

/* the client's address (the peer or, behind a trusted proxy, from
 * X-Forwarded-For), into buf */
const char *lpg_http_client(lpg_http_conn_t *c, char *buf, size_t len);


#endif /* LPG_HTTP_INT_H */
