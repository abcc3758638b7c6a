/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_websocket_int.h: a websocket's state, private to the transport's
 * two files: lpg_websocket.c (the upgrade, the session, Odoo's events and
 * the deliveries) and lpg_websocket_life.c (the socket's I/O, the
 * deadline lists, closing, the stop).
 */

#ifndef LPG_WEBSOCKET_INT_H
#define LPG_WEBSOCKET_INT_H


#include "lpg_websocket.h"
#include "lpg_odoo_ws.h"
#include "lpg_presence.h"
#include "lpg_session.h"
#include "lpg_sub.h"
#include "lpg_ws.h"

#include <ev.h>


/*
 * The deadline lists: every socket of a list has the same duration, so
 * appending at the tail keeps each list in deadline order and one ev_timer
 * serves them all (O(1) per socket, whatever their number).
 */
enum {
    LPG_WSC_IDLE = 0, /* ping_interval after the last incoming bytes */
    LPG_WSC_PONG,     /* pinged, or closing: pong_timeout to answer */
    LPG_WSC_CHECK,    /* keep-alive and session re-check period */
    LPG_WSC_STALL,    /* output blocked: send_timeout */
    LPG_WSC_LISTS
};

/* a socket's link in each kind of list: IDLE and PONG share slot 0 */
enum {
    LPG_WSC_SLOT_TIME = 0,
    LPG_WSC_SLOT_CHECK,
    LPG_WSC_SLOT_STALL,
    LPG_WSC_SLOTS
};


typedef struct lpg_wsc_s lpg_wsc_t;

typedef struct {
    lpg_wsc_t *prev;
    lpg_wsc_t *next;
    int64_t    deadline; /* monotonic ms */
    int        list;     /* -1: in none */
} lpg_wsc_link_t;


struct lpg_wsc_s {
    lpg_sub_t sub; /* first: the sub is the socket */
    ev_io     io;
    int       fd; /* -1 until the upgrade is done */
    lpg_ws_t *ws;

    bool subscribed; /* a subscribe came: sub holds its keys */
    bool closing;    /* a close was sent: deliveries stop */
    bool dead;       /* freed when deliver comes (it was ready) */
    bool pinged;
    bool in_feed; /* inside lpg_ws_feed(): output waits, nothing freed */
    bool doomed;  /* the connection ends at the next timer run */

    /* the upgrade's HTTP connection, until detached */
    lpg_http_conn_t *conn;
    char             accept[32]; /* Sec-WebSocket-Accept */

    /* the session: the request's cookies and Host, kept to ask again */
    char              *cookie;
    size_t             cookie_len;
    char              *host;
    size_t             host_len;
    bool               session_wait;
    lpg_session_wait_t swait;
    bool               logged; /* Odoo said a user (or guest) */
    int64_t            uid;
    int64_t            guest_id;
    size_t             nskeys; /* the session's channels, owned */
    char             **skeys;
    size_t            *skey_lens;
    lpg_presence_t    *presence;
    int64_t            keep_alive_at; /* monotonic ms: 4002 */

    /* 17+: the last subscribe's strings (asked with at each re-check),
     * and a subscribe that waits for Odoo's answer (lpg_websocket_select);
     * both owned (json_decref) */
    json_t *strings;
    json_t *pending;
    int64_t pending_last;

    lpg_wsc_link_t link[LPG_WSC_SLOTS];

    lpg_wsc_t *next; /* every open socket */
    lpg_wsc_t *prev;
};


typedef struct {
    lpg_wsc_t *head;
    lpg_wsc_t *tail;
    int        slot;
} lpg_wsc_list_t;


/* the transport's globals (lpg_websocket_life.c) */
typedef struct {
    lpg_http_ctx_t ctx;
    lpg_wsc_list_t lists[LPG_WSC_LISTS];
    ev_timer       timer;
    int64_t        timer_at;
    ev_timer       trickle;
    size_t         trickle_n; /* sockets closed per trickle tick */
    lpg_wsc_t     *all;
    size_t         open;
    bool           stopping;
} lpg_wsc_global_t;

extern lpg_wsc_global_t lpg_wsc;


/* lpg_websocket_life.c */
void    lpg_wsc_life_init(void);
int     lpg_wsc_start(lpg_wsc_t *w, int fd, char *rest,
                      size_t rest_len) LPG_MUSTCHECK;
void    lpg_wsc_list_push(lpg_wsc_t *w, int list, int64_t deadline);
void    lpg_wsc_list_remove(lpg_wsc_t *w, int slot);
void    lpg_wsc_flush(lpg_wsc_t *w);
void    lpg_wsc_close(lpg_wsc_t *w, unsigned code);
void    lpg_wsc_free(lpg_wsc_t *w);
int     lpg_wsc_send(lpg_wsc_t *w, const uint8_t *frame, size_t len);
int64_t lpg_wsc_check_period(void);

/* lpg_websocket.c */
void lpg_wsc_message(void *data, const uint8_t *msg, size_t len, bool binary);
void lpg_wsc_recheck(lpg_wsc_t *w);
void lpg_wsc_forget(lpg_wsc_t *w);
void lpg_wsc_session(lpg_wsc_t *w, const lpg_session_info_t *info);
void lpg_wsc_subscribe_now(lpg_wsc_t *w, lpg_odoo_ws_event_t *ev);

/* lpg_websocket_select.c */
int          lpg_wsc_select(lpg_wsc_t *w, const lpg_odoo_ws_event_t *ev);
const char **lpg_wsc_strings(const json_t *channels, size_t *n);
void         lpg_wsc_session_request(const lpg_wsc_t *w, lpg_http_request_t *r);


#endif /* LPG_WEBSOCKET_INT_H */
