/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo.h: JSON POSTs to Odoo's HTTP server (odoo_url) from a worker.
 *
 * libcurl's multi interface on the worker's libev loop: the host name is
 * resolved off the loop (curl's threaded resolver), connections to Odoo
 * are kept alive and reused, https:// odoo_url is verified against the
 * system's CAs or odoo_cafile.  At most odoo_maxconn requests run at once
 * (the others wait in a FIFO), odoo_timeout each.  It never blocks the
 * worker; the callback always runs later, from the loop, never from
 * inside lpg_odoo_post().
 */

#ifndef LPG_ODOO_H
#define LPG_ODOO_H


#include "lpg_conf.h"
#include "lpg_json.h"

#include <ev.h>


typedef struct lpg_odoo_req_s  lpg_odoo_req_t;
typedef struct lpg_odoo_conn_s lpg_odoo_conn_t;

/* status: the HTTP status, or 0 when Odoo could not be reached, timed out
 * or answered garbage; body is borrowed for the call */
typedef void (*lpg_odoo_cb_pt)(lpg_odoo_req_t *req, int status,
                               const char *body, size_t len);

/* embedded in the caller's object, which must outlive the callback or
 * cancel it */
struct lpg_odoo_req_s {
    lpg_odoo_cb_pt cb;

    /* private */
    lpg_buf_t          out;     /* the URL, a NUL, the body; owned */
    size_t             body_at; /* where the body starts in out */
    struct curl_slist *headers; /* owned */
    lpg_odoo_req_t    *next;
    lpg_odoo_req_t    *prev;
    lpg_odoo_conn_t   *conn;
    bool               queued;
};


/* after fork, in the worker; LPG_ERROR (logged) when libcurl fails */
int lpg_odoo_init(struct ev_loop *loop, const lpg_conf_t *conf) LPG_MUSTCHECK;

/*
 * POSTs body (JSON) to odoo_url + path.  host is the client's Host header
 * (Odoo's dbfilter chooses the database by it; NULL: odoo_url's), cookie
 * the Cookie header to send (NULL: none); both are copied and must hold
 * no control characters.  LPG_ERROR (logged) when it cannot even start:
 * no odoo_url, out of memory.
 */
int lpg_odoo_post(lpg_odoo_req_t *req, const char *path, const char *host,
                  size_t host_len, const char *cookie, size_t cookie_len,
                  const char *body, size_t len) LPG_MUSTCHECK;

/* forget the request; its callback will not run */
void lpg_odoo_cancel(lpg_odoo_req_t *req);

/* at worker exit: drops what runs or waits (no callback runs) and frees
 * libcurl's handles */
void lpg_odoo_exit(void);


#endif /* LPG_ODOO_H */
