/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_poll.h: Odoo's poll protocol, whatever the transport.
 *
 * The JSON-RPC poll request (channels, last, options, peek) as a
 * subscription's keys in Odoo's json_dump form (8-14: the channel; 15+:
 * [db, channel] and the implicit broadcast), the session's channels, the
 * notification entries of each version (8-14 {"id","channel","message"},
 * 15+ {"id","message"}), the JSON-RPC envelope (peek: notifications and
 * channels) and Odoo's error shapes, shared by every Odoo route.
 */

#ifndef LPG_ODOO_POLL_H
#define LPG_ODOO_POLL_H


#include "lpg_http.h"
#include "lpg_json.h"
#include "lpg_session.h"
#include "lpg_sub.h"

#include <sys/uio.h>


/* what a poll request says besides its subscription */
typedef struct {
    char   *id;         /* JSON text of the request id, owned (or NULL) */
    int64_t inactivity; /* options.bus_inactivity, -1: none */
    bool    peek;       /* answer at once, with the channels */
    char  **strings;    /* 16+: the client's string channels, each owned,
                         * for the session lookup (lpg_session_get_for) */
    size_t  nstrings;
} lpg_odoo_poll_t;


/* a result list being built: the entries, comma separated, of the records
 * added (lpg_odoo_list_add is an lpg_sub_rec_pt) */
typedef struct {
    lpg_buf_t *out;
    size_t     n; /* entries written (the size cap stops adding) */
    int        version;
    bool       failed; /* out of memory: the answer is a 503 */
} lpg_odoo_list_t;


/* ctx is copied; its pointers are borrowed for the worker's life */
void lpg_odoo_poll_init(const lpg_http_ctx_t *ctx);

/*
 * Fills q and s (whose db and version the caller set) from a JSON-RPC
 * body: s gets the channel keys and last (17+: not the strings that
 * select records, lpg_session_selector), q the strings on 16+.  With s->db < 0 only the id is
 * read.  On error *why says what is wrong; q->id may be set either way
 * (the error answer wants it), freed by lpg_odoo_poll_free().
 */
int  lpg_odoo_poll_parse(lpg_odoo_poll_t *q, lpg_sub_t *s, const char *body,
                         size_t len, const char **why) LPG_MUSTCHECK;
void lpg_odoo_poll_free(lpg_odoo_poll_t *q);

/* adds a poll's channel (any JSON value) to s, whose db and version are
 * set, as Odoo stores it: json_dump(channel), 15+ json_dump([db, channel])
 * (the plain APIs' channels too) */
int lpg_odoo_add_key(lpg_sub_t *s, const char *db,
                     json_t *channel) LPG_MUSTCHECK;

/* the same for a string channel of len bytes (UTF-8; escaped here) */
int lpg_odoo_add_key_str(lpg_sub_t *s, const char *db, const char *str,
                         size_t len) LPG_MUSTCHECK;

/* adds the channels Odoo gave the session (info->keys) to s */
int lpg_odoo_session_keys(lpg_sub_t                *s,
                          const lpg_session_info_t *info) LPG_MUSTCHECK;

/* the session's database db is not s's: s moves there, its keys renamed
 * (Odoo serves a poll from its session's database); before attaching */
int lpg_odoo_switch_db(lpg_sub_t *s, int db) LPG_MUSTCHECK;

void lpg_odoo_list_init(lpg_odoo_list_t *l, lpg_buf_t *out, int version);
void lpg_odoo_list_add(const lpg_bus_rec_t *r, void *arg);

/* the common answer, {"jsonrpc", "id", "result": [list]}, as 5 parts
 * pointing at id and list */
int lpg_odoo_poll_iov(struct iovec *iov, const char *id, const lpg_buf_t *list);

/* the same into out, or with peek {"notifications": [list], "channels":
 * [s's keys]} */
int lpg_odoo_poll_body(lpg_buf_t *out, const char *id, bool peek,
                       const lpg_sub_t *s, const lpg_buf_t *list) LPG_MUSTCHECK;

/* the CORS header line of the poll route for version, or NULL */
const char *lpg_odoo_cors(int version);

/* answers c with Odoo's JSON-RPC error shape for version (HTTP 200) */
void lpg_odoo_rpc_error(lpg_http_conn_t *c, int version, const char *id,
                        const char *name, const char *msg);

/* the same with Odoo's code and title (100, "Odoo Session Expired") */
void lpg_odoo_rpc_fail(lpg_http_conn_t *c, int version, const char *id,
                       int code, const char *title, const char *name,
                       const char *msg);


#endif /* LPG_ODOO_POLL_H */
