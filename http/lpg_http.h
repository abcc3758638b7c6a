/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_http.h: HTTP/1.1 connections of one worker (http-parser on libev).
 *
 * This layer reads and parses requests, enforces the size limits, writes
 * responses and keeps connections alive; it does not know the routes.  A
 * complete request goes to the context's route callback (the worker's
 * router, lpg_route.h), which answers at once or later (a parked poll),
 * one request at a time per connection.  Generic HTTP: nothing here knows
 * Odoo, so the odoo/ layer above may use it.
 */

#ifndef LPG_HTTP_H
#define LPG_HTTP_H


#include "lpg_conf.h"
#include "lpg_shm.h"

#include <ev.h>
#include <sys/uio.h>


typedef struct lpg_http_conn_s lpg_http_conn_t;


/* a parsed request; every pointer is borrowed from the connection until it
 * is answered */
typedef struct {
    unsigned    method; /* enum http_method */
    const char *path;
    size_t      path_len;
    const char *query;
    size_t      query_len;
    const char *body;
    size_t      body_len;
    const char *host;
    size_t      host_len;
    const char *origin;
    size_t      origin_len;
    const char *cookie; /* the Cookie headers, "; "-joined when several */
    size_t      cookie_len;
    bool        admin; /* came in on the admin listener */
    bool        keep_alive;
    unsigned    http_major;
    unsigned    http_minor;
    /* the websocket handshake's headers (NULL: absent) */
    const char *upgrade;
    size_t      upgrade_len;
    const char *connection;
    size_t      connection_len;
    const char *ws_key;
    size_t      ws_key_len;
    const char *ws_version;
    size_t      ws_version_len;
    /* Last-Event-ID, an EventSource's resume (NULL: absent) */
    const char *last_event_id;
    size_t      last_event_id_len;
    /* X-Forwarded-Host and -Proto, only from a trusted proxy (else NULL) */
    const char *fwd_host;
    size_t      fwd_host_len;
    const char *fwd_proto;
    size_t      fwd_proto_len;
} lpg_http_request_t;


typedef struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    lpg_shm_t        *shm;
    lpg_shm_worker_t *stats;
    int               slot;
    int               kick_fd;   /* wakes the master's fetch */
    size_t            max_conns; /* past this, 503: the fd limit's margin */

    /* a complete request: answer it now or later (lpg_http_respond) */
    void (*route)(lpg_http_conn_t *c, const lpg_http_request_t *r);
} lpg_http_ctx_t;


void lpg_http_init(const lpg_http_ctx_t *ctx);

/* takes ownership of an accepted, non-blocking socket */
void lpg_http_accept(int fd, bool admin);

/*
 * Answers the connection's current request.  headers holds extra header
 * lines, each ending in "\r\n" (or NULL); body is copied.  Closes the
 * connection after the answer when status >= 400 is a protocol error, when
 * the client asked for it, or when the worker is stopping.
 */
void lpg_http_respond(lpg_http_conn_t *c, int status, const char *type,
                      const char *headers, const char *body, size_t len);

/* the same with the body in parts, copied in order */
void lpg_http_respond_iov(lpg_http_conn_t *c, int status, const char *type,
                          const char *headers, const struct iovec *iov,
                          int niov);

/* the router parks the request: cb(data) runs if the connection closes
 * before lpg_http_respond(); after it, the holder must forget c.  From
 * here on the request's pointers (lpg_http_request_t) are invalid: its
 * buffers are freed, so a parked request costs little memory */
void lpg_http_hold(lpg_http_conn_t *c, void (*cb)(void *data), void *data);

/*
 * Takes the connection's socket from this layer for another protocol (a
 * websocket after its 101, which the caller writes): returns the
 * non-blocking fd and, in *rest (malloc'd, the caller's to free; NULL
 * when none), the *rest_len bytes the client sent after the request's
 * head.  c is freed; the fd still counts as an open connection (the
 * max_conns limit, lpg_http_open) until lpg_http_detached_closed().
 * Returns -1 when out of memory (c is closed then).  Call it while the
 * router holds the request (from the route callback or after
 * lpg_http_hold).
 */
int lpg_http_detach(lpg_http_conn_t *c, char **rest, size_t *rest_len);

/*
 * Takes the connection's socket to hand it to another worker: returns the
 * fd (the caller's to close once passed) and, in *bytes (malloc'd), the
 * *len bytes of the current request and any after it, as they were read.
 * c is freed and the fd no longer counts here.  -1 when out of memory (c
 * is left as it was).  Call it from the route callback.
 */
int lpg_http_take(lpg_http_conn_t *c, char **bytes, size_t *len);

/* a socket another worker took (lpg_http_take) and its bytes (copied):
 * served as if this worker had accepted it and read them */
void lpg_http_adopt(int fd, const char *bytes, size_t len);

/* the caller closed a detached fd */
void lpg_http_detached_closed(void);

/* the client's address, as lpgate logs it (trusted proxies followed) */
const char *lpg_http_client_addr(lpg_http_conn_t *c, char *buf, size_t len);

/* the worker's configuration (the master's copy, read-only) */
const lpg_conf_t *lpg_http_conf(void);

/* asks the master to fetch every database now (after a send) */
void lpg_http_kick(void);

/* graceful stop: idle connections close now, the others after their answer
 * (one accepted just now gets a second for its first request: call again
 * to close those that stayed silent); returns how many are still open */
size_t lpg_http_shutdown(void);

size_t lpg_http_open(void);


#endif /* LPG_HTTP_H */
