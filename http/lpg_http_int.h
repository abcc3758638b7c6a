/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http_int.h: a connection's state, private to the HTTP server's
 * files: lpg_http.c (the connection's life, reads, timers),
 * lpg_http_out.c (the answer and its writes), lpg_http_parse.c (the
 * parser callbacks and the client's address) and lpg_http_batch.c.
 */

#ifndef LPG_HTTP_INT_H
#define LPG_HTTP_INT_H

/* a graceful stop leaves a silent connection this young open for its
 * first request (lpg_http_shutdown) */
#define LPG_HTTP_FRESH_MS 1000

#define LPG_HTTP_READ_CHUNK 4096


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
    LPG_HTTP_H_LAST_EVENT_ID,
    LPG_HTTP_H_OTHER
} lpg_http_header_e;


/* 32-bit: a request is far below 4 GiB (max_request_size), and a
 * connection holds a dozen of them */
typedef struct {
    uint32_t off;
    uint32_t len;
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
    lpg_http_span_t   last_event_id; /* an EventSource's resume */
    char             *cookies;       /* several: all of them, "; "-joined */
    size_t            cookies_len;
    size_t            cookies_cap;
    uint8_t           peer[16];    /* the socket peer's address, binary */
    uint8_t           peer_family; /* AF_INET, AF_INET6; 0: unknown */
    lpg_http_header_e header;
    bool              in_field;
    bool              headers_done;
    bool              complete;
    bool              busy;     /* the router holds the request */
    bool              closing;  /* close once the output is written */
    int               error;    /* status a parser callback chose */
    bool              admin;    /* accepted on the admin listener */
    bool              over;     /* accepted past max_conns: 503 */
    bool              queued;   /* out lent to a batch (lpg_http_batch) */
    bool              dropped;  /* closed while queued: close when sent */
    bool              answered; /* a response was started on it */
    int64_t           accepted; /* monotonic ms */

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

/* lpg_http_batch.c: queues c's output in the open batch (false: none
 * open, write now) */
bool lpg_http_batch_queue(lpg_http_conn_t *c);

/* lpg_http.c: the server stops (lpg_http_shutdown): answers close */
extern bool lpg_http_stopping;

/* lpg_http.c: frees c (or, its output queued in a batch, marks it) */
void lpg_http_close(lpg_http_conn_t *c);

/* lpg_http_out.c: writes c's output, then goes on with the next request */
void lpg_http_write(lpg_http_conn_t *c);

/* lpg_http_out.c: answers status and closes */
void lpg_http_error(lpg_http_conn_t *c, int status);

/* lpg_http_out.c: a queued send completed with res (bytes, or -errno) */
void lpg_http_sent(lpg_http_conn_t *c, int res);

/* forgets the joined Cookie text of the request (several headers) */
void lpg_http_cookie_free(lpg_http_conn_t *c);

/* reads the socket peer's address into c (binary: text costs 64 bytes
 * per connection) */
void lpg_http_peer(lpg_http_conn_t *c);

/* the socket peer's address, as text into buf ("" when unknown) */
const char *lpg_http_peer_text(const lpg_http_conn_t *c, char *buf, size_t len);

/* true when the socket peer is one of trusted_proxies */
bool lpg_http_proxied(lpg_http_conn_t *c);

/* forgets the header spans of the request */
void lpg_http_spans_reset(lpg_http_conn_t *c);

/* the client's address (the peer or, behind a trusted proxy, from
 * X-Forwarded-For), into buf */
const char *lpg_http_client(lpg_http_conn_t *c, char *buf, size_t len);


#endif /* LPG_HTTP_INT_H */
