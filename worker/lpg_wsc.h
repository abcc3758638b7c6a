/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_wsc.h: a websocket connection for any websocket application of the
 * worker (Odoo's /websocket, the plain /ws API, Socket.IO's websocket
 * transport): the upgrade, the socket's I/O, PING/PONG, the deadline
 * lists, the send queue and its limits, closing, and the graceful stop.
 * What the messages mean is the application's.
 *
 * How an application uses it:
 *
 *   1. A static lpg_wsc_app_t: its name (the logs' prefix), message (a
 *      complete client message), closing (deliveries stop: detach its
 *      subscription), free (the socket is gone: free the object, now or,
 *      while a subscription of it is on the ready list, from its deliver),
 *      optionally recheck (every check period) and keep_alive (Odoo's 4002
 *      after websocket_keep_alive), and stat_open, the offset in
 *      lpg_shm_worker_t of its open-sockets gauge.
 *
 *   2. Its own object embeds an lpg_wsc_t (and, usually, an lpg_sub_t):
 *      the house pattern; the callbacks get the lpg_wsc_t and go back to
 *      the object with lpg_wsc_data().
 *
 *   3. On the GET: lpg_wsc_handshake(c, r, w, app) answers a bad upgrade
 *      (400, 426, ...) and returns LPG_ERROR (nothing to free), else w is
 *      ready.  The application may hold the request (lpg_http_hold, e.g.
 *      while a session is asked) and then calls lpg_wsc_upgrade(w): the
 *      101, the connection leaves the HTTP layer and counts against the
 *      worker's connection margin (503 past it, before the upgrade).  From
 *      lpg_wsc_upgrade() on (even when it fails) the object ends only
 *      through app->free.  Before it, the application frees its object
 *      itself (a hold's gone callback, a refusal).
 *
 *   4. Sending: lpg_wsc_send(w, frame, len) writes complete frame bytes
 *      (lpg_ws_frame_head + payload; the same bytes may go to many
 *      sockets) at once when nothing is queued, and queues (copies) what
 *      the socket does not take: no allocation per delivery.
 *      lpg_wsc_text() frames a text payload.  A queue past
 *      max_answer_size cuts the client, output blocked for send_timeout
 *      too.  lpg_wsc_flush(w) writes (call it after a delivery outside a
 *      message callback).  lpg_wsc_close(w, code) closes cleanly.
 *
 *   Inside app->message no socket is freed and output waits for the end
 *   of the read; every callback may call lpg_wsc_send/close.
 */

#ifndef LPG_WSC_H
#define LPG_WSC_H


#include "lpg_dlist.h"
#include "lpg_http.h"
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
    LPG_WSC_CHECK,    /* keep-alive and re-check period */
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


/* what an application does with its sockets; a static table */
typedef struct {
    const char *name; /* "websocket", "ws": the logs' prefix */

    /* a complete client message (inside the read: nothing is freed) */
    void (*message)(lpg_wsc_t *w, const uint8_t *msg, size_t len, bool binary);

    /* once, when deliveries must stop (a close sent or received, the
     * connection cut): detach the subscription */
    void (*closing)(lpg_wsc_t *w);

    /* the socket is closed and w is out of every list: free the object
     * (now, or later if the sub layer still holds it) */
    void (*free)(lpg_wsc_t *w);

    /* every check period (NULL: none); may close w */
    void (*recheck)(lpg_wsc_t *w);

    /* Odoo's keep-alive: closed with 4002 after websocket_keep_alive
     * plus up to half of it */
    bool keep_alive;

    /* offsetof(lpg_shm_worker_t, its open-sockets gauge) */
    size_t stat_open;

    /* an upgrade without Origin is served (RFC 6455: non-browser
     * clients need not send one); Odoo's /websocket refuses it */
    bool origin_optional;
} lpg_wsc_app_t;


/* embedded in the application's object; everything here is this layer's */
struct lpg_wsc_s {
    const lpg_wsc_app_t *app;

    /* one space for two lives: until the 101 (lpg_wsc_start) the
     * upgrade's HTTP connection and the Sec-WebSocket-Accept to answer
     * with; from then on, with fd set, the socket's watcher (io is
     * touched only when fd != -1) */
    union {
        struct {
            lpg_http_conn_t *conn;
            char             accept[32];
        };
        ev_io io;
    };

    int       fd; /* -1 until the upgrade is done */
    lpg_ws_t *ws;

    bool closing; /* a close was sent or received: deliveries stop */
    bool pinged;
    bool in_feed;   /* inside lpg_ws_feed(): output waits, nothing freed */
    bool doomed;    /* the connection ends at the next timer run */
    bool lingering; /* all written and shut down: input is read and
                       dropped until the client's EOF (lpg_wsc.c) */

    int64_t keep_alive_at; /* monotonic ms: 4002 */

    lpg_dlist_link_t link[LPG_WSC_SLOTS];

    lpg_wsc_t *next; /* every open socket */
    lpg_wsc_t *prev;
};


/* the application's object of type that holds w as its member field */
#define lpg_wsc_data(w, type, field)                                           \
    ((type *) lpg_wsc_back((w), offsetof(type, field)))

static inline void *
lpg_wsc_back(lpg_wsc_t *w, size_t off)
{
    return (char *) w - off;
}


/* once per worker (every application's init calls it; the first wins) */
void                  lpg_wsc_init(const lpg_http_ctx_t *ctx);
const lpg_http_ctx_t *lpg_wsc_ctx(void);

/* checks the upgrade of r: LPG_OK with w set for app, else c is answered
 * (the handshake's status) and LPG_ERROR */
int lpg_wsc_handshake(lpg_http_conn_t *c, const lpg_http_request_t *r,
                      lpg_wsc_t *w, const lpg_wsc_app_t *app) LPG_MUSTCHECK;

/* the 101: w leaves the HTTP layer; on failure app->free is called */
void lpg_wsc_upgrade(lpg_wsc_t *w);

/* queues frame bytes: LPG_OK, LPG_AGAIN (queued behind others), LPG_DONE
 * (w is closing or was cut: dropped), LPG_ERROR (w cut) */
int lpg_wsc_send(lpg_wsc_t *w, const uint8_t *frame, size_t len);

/* frames payload as one TEXT frame and queues it */
int lpg_wsc_text(lpg_wsc_t *w, const char *payload, size_t len);

void lpg_wsc_flush(lpg_wsc_t *w);
void lpg_wsc_close(lpg_wsc_t *w, unsigned code);

/* the check period: min(session_ttl, websocket_keep_alive) for a
 * keep-alive application, else session_ttl */
int64_t lpg_wsc_check_period(const lpg_wsc_t *w);

/* every application's sockets (the worker's stop) */
size_t lpg_wsc_open(void);


#endif /* LPG_WSC_H */
