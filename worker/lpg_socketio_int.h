/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_socketio_int.h: a Socket.IO session's state, private to the
 * transport's files: lpg_socketio.c (the HTTP requests: handshake,
 * polling, the websocket and its upgrade), lpg_socketio_sess.c (the
 * session table, the output queue, ping/pong, closing),
 * lpg_socketio_ns.c (Socket.IO packets: namespaces, their connect and
 * Odoo session, acks), lpg_socketio_event.c (the client's events:
 * subscribe, unsubscribe, publish) and lpg_socketio_out.c (the
 * subscriptions' replays and deliveries).
 *
 * Ownership: the session table owns the sessions; a session owns its
 * namespaces until it closes, then a namespace whose subscription is on
 * the ready list frees itself at its deliver; a websocket (lpg_sio_ws_t)
 * is lpg_wsc's until its free callback, and only points at its session.
 */

#ifndef LPG_SOCKETIO_INT_H
#define LPG_SOCKETIO_INT_H


#include "lpg_socketio.h"
#include "lpg_ahead.h"
#include "lpg_backfill.h"
#include "lpg_session.h"
#include "lpg_sio.h"
#include "lpg_sub.h"
#include "lpg_wsc.h"

#include <jansson.h>


#define LPG_SIO_SID_LEN     20 /* 2 hex digits of the worker slot + 18 */
#define LPG_SIO_QUEUE_MAX   64 /* events waiting behind a replay or publish */
#define LPG_SIO_CHANNEL_MAX 512

/* the shared-bytes shapes are not used: a packet names its namespace */

/* engine.io's HTTP errors: {"code": N, "message": ...} */
enum {
    LPG_SIO_ERR_TRANSPORT = 0, /* Transport unknown */
    LPG_SIO_ERR_SID,           /* Session ID unknown */
    LPG_SIO_ERR_METHOD,        /* Bad handshake method */
    LPG_SIO_ERR_REQUEST,       /* Bad request */
    LPG_SIO_ERR_FORBIDDEN,     /* Forbidden */
    LPG_SIO_ERR_VERSION        /* Unsupported protocol version */
};


typedef struct lpg_sio_s     lpg_sio_t;
typedef struct lpg_sio_nsp_s lpg_sio_nsp_t;


/* a websocket of the transport: lpg_wsc's until its free callback */
typedef struct {
    lpg_wsc_t  wsc;
    lpg_sio_t *s; /* its session; NULL once the session is gone */
} lpg_sio_ws_t;


/* a Socket.IO socket: one namespace of a session */
struct lpg_sio_nsp_s {
    lpg_sub_t  sub; /* first: the sub layer's callbacks cast back */
    lpg_sio_t *s;   /* NULL once the session is gone (then dead) */
    char       name[LPG_SIO_NSP_MAX + 1];
    size_t     name_len;
    char       id[LPG_SIO_SID_LEN + 1];

    bool connected;  /* its 40 was sent */
    bool dead;       /* freed when its deliver comes */
    bool subscribed; /* sub holds the keys of channels */

    json_t *channels;  /* the client's channel names, owned */
    json_t *queued;    /* EVENT packets waiting while busy, owned */
    int64_t auth_last; /* the connect's auth.last, -1: none */

    /* the connect, while Odoo is asked about its session */
    bool               session_wait;
    lpg_session_wait_t swait;
    char              *cookie; /* "session_id=..." asked with, owned */
    size_t             cookie_len;
    char             **skeys; /* the session's channels, owned */
    size_t            *skey_lens;
    size_t             nskeys;

    /* a subscribe's replay: records of the keys held before (old) up
     * to old_last were sent already, the others' up to new_last are the
     * client's */
    char  **old;
    size_t *old_lens;
    size_t  nold;
    int64_t old_last;
    int64_t new_last;

    /* a last above this node's high (the connect's auth.last, or a
     * subscribe's) waits for a fetch (lpg_ahead.h): the subscribe's
     * arguments, owned, then it runs again with ahead_done */
    lpg_ahead_t ahead;
    json_t     *ahead_data;
    int64_t     ahead_ack;
    bool        ahead_done;

    /* a publish's INSERT, while it runs */
    lpg_backfill_req_t pub;
    char              *pub_sql;
    int64_t            pub_ack;
    bool               publishing;

    lpg_sio_nsp_t *next;
};


struct lpg_sio_s {
    char sid[LPG_SIO_SID_LEN + 1];
    int  db; /* the handshake's (?db=, Host): -1 none */
    int  version;

    lpg_http_conn_t *poll;  /* a parked polling GET */
    lpg_sio_ws_t    *ws;    /* the websocket transport, once upgraded */
    lpg_sio_ws_t    *probe; /* a websocket between its probe and "5" */

    bool closed;    /* out of the table; freed by its timer */
    bool probed;    /* the probe's "2probe" came: polls get a noop */
    bool pinged;    /* a ping is out: the pong is due */
    bool in_packet; /* packets of a request are handled: no flush */

    /* packets waiting for a poll, LPG_EIO_SEP-joined */
    lpg_buf_t out;

    ev_timer timer; /* the next ping, the pong's deadline, the free */

    /* the handshake's Cookie and Host, to ask Odoo about a session */
    char  *cookie;
    size_t cookie_len;
    char  *host;
    size_t host_len;

    lpg_sio_nsp_t *nsps;

    lpg_sio_t *hnext; /* the table's bucket */
    lpg_sio_t *next;  /* every session */
    lpg_sio_t *prev;
};


/* the transport's globals (lpg_socketio_sess.c) */
typedef struct {
    lpg_http_ctx_t ctx;
    size_t         open;
    bool           stopping;
} lpg_sio_global_t;

extern lpg_sio_global_t lpg_sio;


/* lpg_socketio.c */
void lpg_sio_ws_message(lpg_wsc_t *w, const uint8_t *msg, size_t len,
                        bool binary);

/* lpg_socketio_sess.c */
void       lpg_sio_sess_init(void);
lpg_sio_t *lpg_sio_create(const lpg_http_request_t *r);
lpg_sio_t *lpg_sio_find(const char *sid, size_t len);
int        lpg_sio_open_packet(lpg_sio_t *s, lpg_buf_t *b) LPG_MUSTCHECK;
void       lpg_sio_queue(lpg_sio_t *s, const char *pkt, size_t len);
void       lpg_sio_flush(lpg_sio_t *s);
void       lpg_sio_eio_packet(lpg_sio_t *s, const lpg_eio_packet_t *p);
void       lpg_sio_close(lpg_sio_t *s, const char *why);
void       lpg_sio_poll_answer(lpg_sio_t *s, const char *body, size_t len);
void       lpg_sio_random_id(char *id, size_t n);

/* lpg_socketio_ns.c */
void lpg_sio_message(lpg_sio_t *s, const char *data, size_t len);
void lpg_sio_nsp_close(lpg_sio_nsp_t *n);
void lpg_sio_send(lpg_sio_nsp_t *n, int type, int64_t ack, json_t *data);
void lpg_sio_error(lpg_sio_nsp_t *n, int64_t ack, const char *event,
                   const char *why);
void lpg_sio_connected(lpg_sio_nsp_t *n);

/* lpg_socketio_event.c */
void lpg_sio_event(lpg_sio_nsp_t *n, int64_t ack, json_t *data);
void lpg_sio_run_queued(lpg_sio_nsp_t *n);
void lpg_sio_fetched(lpg_ahead_t *a);
int  lpg_sio_rekey(lpg_sio_nsp_t *n);

/* lpg_socketio_out.c */
extern const lpg_sub_ops_t lpg_sio_sub_ops;

void lpg_sio_replay_start(lpg_sio_nsp_t *n);
void lpg_sio_forget_old(lpg_sio_nsp_t *n);
void lpg_sio_nsp_stop(lpg_sio_nsp_t *n);
void lpg_sio_nsp_free(lpg_sio_nsp_t *n);


static inline bool
lpg_sio_busy(const lpg_sio_nsp_t *n)
{
    return n->publishing || n->session_wait || n->ahead.waiting
        || lpg_sub_filling(&n->sub);
}


#endif /* LPG_SOCKETIO_INT_H */
