/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws.h: one server-side WebSocket connection (RFC 6455) after the
 * handshake, as Odoo 16/17 enforces it (shared/reference/odoo-websocket.md
 * section 2), on libwslay's event API.
 *
 * The object does no I/O and reads no clock: the caller feeds it the bytes
 * it read with the current time, gets complete messages through a
 * callback, and writes out what lpg_ws_pending() shows.  Server frames are
 * never masked nor fragmented; a notification batch for many sockets is
 * framed once with lpg_ws_frame_text() and the same bytes are queued on
 * each socket with lpg_ws_send_framed().
 */

#ifndef LPG_WS_H
#define LPG_WS_H


#include "lpg_core.h"


typedef struct lpg_ws_s lpg_ws_t;


/* Odoo's MESSAGE_MAX_SIZE, for a frame and for a reassembled message */
#define LPG_WS_MAX_MESSAGE (1u << 20)

/* the longest server frame header: 2 bytes, then a 64-bit length */
#define LPG_WS_FRAME_HEAD_MAX 10

#define LPG_WS_OP_TEXT  0x1
#define LPG_WS_OP_CLOSE 0x8
#define LPG_WS_OP_PING  0x9

/* close codes lpgate sends (Odoo's CloseCode) */
#define LPG_WS_CLEAN             1000
#define LPG_WS_GOING_AWAY        1001
#define LPG_WS_PROTOCOL_ERROR    1002
#define LPG_WS_INCONSISTENT_DATA 1007
#define LPG_WS_MESSAGE_TOO_BIG   1009
#define LPG_WS_SERVER_ERROR      1011
#define LPG_WS_RESTART           1012
#define LPG_WS_TRY_LATER         1013
#define LPG_WS_SESSION_EXPIRED   4001
#define LPG_WS_KEEP_ALIVE        4002


typedef struct {
    size_t   max_message; /* bytes; LPG_WS_MAX_MESSAGE */
    unsigned rate_burst;  /* frames; 10, 0 turns the limit off */
    int64_t  rate_delay;  /* msec; 200: burst * delay = a 2 s window */
} lpg_ws_conf_t;


typedef struct {
    /*
     * A complete data message: TEXT (valid UTF-8, checked) or, with binary
     * set, BINARY (Odoo hands those to json.loads as well).  msg is
     * borrowed for the call.  The callback may call lpg_ws_send_framed(),
     * lpg_ws_send_text(), lpg_ws_ping() and lpg_ws_close(), never
     * lpg_ws_destroy().
     */
    void (*message)(void *data, const uint8_t *msg, size_t len, bool binary);
    /* a PONG came (may be NULL) */
    void (*pong)(void *data);
} lpg_ws_handler_t;


/* Odoo's limits: 1 MiB messages, 10 frames per 2 s */
void lpg_ws_conf_default(lpg_ws_conf_t *conf);

/* conf NULL means the defaults; h is copied; NULL when out of memory */
lpg_ws_t *lpg_ws_create(const lpg_ws_conf_t *conf, const lpg_ws_handler_t *h,
                        void *data);

void lpg_ws_destroy(lpg_ws_t *ws);

/*
 * Consumes len bytes read from the client at now (monotonic msec): parses
 * frames, answers PING and CLOSE, enforces the limits with their close
 * codes, and calls the message handler.  Returns LPG_OK to go on reading,
 * LPG_DONE when the caller must write what is pending and then close the
 * TCP connection (a close was exchanged, or one with a code other than
 * 1000/1001/1012 was sent), LPG_ERROR when out of memory (close at once).
 * Bytes fed after LPG_DONE are ignored.
 */
int lpg_ws_feed(lpg_ws_t *ws, const uint8_t *in, size_t len,
                int64_t now) LPG_MUSTCHECK;

/* the bytes to write, borrowed until the next call on ws; their length */
size_t lpg_ws_pending(const lpg_ws_t *ws, const uint8_t **out);

/* n of the pending bytes were written */
void lpg_ws_consume(lpg_ws_t *ws, size_t n);

/*
 * Queues a frame built by lpg_ws_frame_text() (or any bytes that follow
 * the frames already queued), copied, after every frame queued before it.
 * Returns LPG_OK, LPG_DONE when the connection is closing (dropped), or
 * LPG_ERROR when out of memory.
 */
int lpg_ws_send_framed(lpg_ws_t *ws, const uint8_t *frame,
                       size_t len) LPG_MUSTCHECK;

/* what lpg_ws_send_framed() would return before queueing: LPG_OK while
 * the connection is open, LPG_DONE once closing, LPG_ERROR after a failure
 * (a caller may then write a frame itself when nothing is pending) */
int lpg_ws_writable(const lpg_ws_t *ws);

/* frames payload as one TEXT frame and queues it: the same returns */
int lpg_ws_send_text(lpg_ws_t *ws, const void *payload,
                     size_t len) LPG_MUSTCHECK;

/* queues a PING with an empty payload: the same returns */
int lpg_ws_ping(lpg_ws_t *ws) LPG_MUSTCHECK;

/*
 * Server-initiated close with code and reason (at most 123 bytes, UTF-8).
 * After 1000, 1001 or 1012 it waits for the client's CLOSE and returns
 * LPG_OK (the caller times that wait out); after any other code it returns
 * LPG_DONE: write what is pending, then close.  LPG_DONE too when a close
 * was already sent; LPG_ERROR when out of memory.
 */
int lpg_ws_close(lpg_ws_t *ws, unsigned code, const char *reason,
                 size_t len) LPG_MUSTCHECK;

/* true while the connection holds no wslay context: open and idle between
 * frames (lpg_ws_park.c) */
bool lpg_ws_parked(const lpg_ws_t *ws);

/* wslay contexts made so far in this process (a parked connection that
 * needs one again counts each time) */
uint64_t lpg_ws_wake_count(void);

/* true once lpg_ws_feed() or lpg_ws_close() returned LPG_DONE */
bool lpg_ws_done(const lpg_ws_t *ws);

/* the close codes sent and received so far, 0 for none (1005: a CLOSE
 * without a code) */
unsigned lpg_ws_code_sent(const lpg_ws_t *ws);
unsigned lpg_ws_code_received(const lpg_ws_t *ws);

/*
 * Writes the header of an unmasked, final server frame of opcode with a
 * payload of len bytes into buf (LPG_WS_FRAME_HEAD_MAX bytes), in the
 * shortest of the 7, 16 and 64-bit length forms; returns its length.
 */
size_t lpg_ws_frame_head(uint8_t *buf, unsigned opcode, size_t len);

/* header and payload of one TEXT frame into buf, which holds
 * LPG_WS_FRAME_HEAD_MAX + len bytes; returns the frame's length */
size_t lpg_ws_frame_text(uint8_t *buf, const void *payload, size_t len);


#endif /* LPG_WS_H */
