/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws_int.h: the WebSocket connection's state, shared by lpg_ws.c (the
 * protocol on wslay's event API) and lpg_ws_park.c (the wslay context's
 * life: made when there is something to parse or send, freed when the
 * connection is idle between frames).  Nothing outside ws/ includes it.
 */

#ifndef LPG_WS_INT_H
#define LPG_WS_INT_H


#include "lpg_ws.h"

#include <wslay/wslay.h>


typedef enum {
    LPG_WS_OPEN = 0,
    LPG_WS_CLOSING, /* our clean CLOSE went out: waiting for the client's */
    LPG_WS_DONE     /* write the rest, then close the TCP connection */
} lpg_ws_state_e;


/* rate_burst values up to this keep their ring in the struct */
#define LPG_WS_RATE_INLINE 10


/*
 * What a connection holds only while it has a wslay context: made with it
 * (lpg_ws_wake) and freed when it parks (lpg_ws_park), so that an idle
 * socket carries none of it.
 */
typedef struct {
    /* the data message being reassembled */
    bool     frame_data; /* the current frame is data */
    bool     in_msg;     /* a fragmented data message awaits its end */
    uint8_t *msg;
    size_t   msg_len;
    size_t   msg_cap;

    /* bytes fed to this ctx, and those of the frames it has finished:
     * equal when it holds no part of a frame (it may then be parked) */
    uint64_t fed;
    uint64_t framed;
    uint64_t frame_size; /* header and payload of the current frame */

    /* the span lpg_ws_feed() reads from */
    const uint8_t *in;
    size_t         in_len;
} lpg_ws_awake_t;


struct lpg_ws_s {
    /* NULL while parked (lpg_ws_park.c), as a; owned, about 8.8 KiB */
    wslay_event_context_ptr ctx;
    lpg_ws_awake_t         *a;
    lpg_ws_handler_t        h;
    void                   *data;
    lpg_ws_state_e          state;
    bool                    failed; /* out of memory */
    unsigned                code_sent;
    unsigned                code_received;
    size_t                  max_message;
    int64_t                 now; /* of the feed under way */

    /* the bytes to write: [out_pos, out_len) of out, owned */
    uint8_t *out;
    size_t   out_pos;
    size_t   out_len;
    size_t   out_cap;

    /* arrival times of the last rate_burst frames, a ring of monotonic
     * msec truncated to 32 bits (differences are exact for windows below
     * 24 days): rate_inline for the default burst, else owned */
    unsigned  rate_burst;
    uint32_t  rate_window;
    unsigned  rate_n;
    unsigned  rate_head;
    uint32_t *rate;
    uint32_t  rate_inline[LPG_WS_RATE_INLINE];
};


/* lpg_ws.c: wslay's callbacks, for the contexts lpg_ws_park.c makes */
extern const struct wslay_event_callbacks lpg_ws_callbacks;

/* lpg_ws_rate.c: Odoo's rate limit; ok counts a frame arriving at ws->now,
 * or refuses it (false) and counts nothing */
int  lpg_ws_rate_init(lpg_ws_t *ws, const lpg_ws_conf_t *conf) LPG_MUSTCHECK;
void lpg_ws_rate_free(lpg_ws_t *ws);
bool lpg_ws_rate_ok(lpg_ws_t *ws);

/* lpg_ws_park.c */

/* a server PING without payload, as wslay frames it */
extern const uint8_t lpg_ws_ping_frame[2];

/* a parked connection's read that is exactly one whole PONG (the answer to
 * our PING, every ping interval on every idle socket) is taken here
 * without a context: true; anything else: false, nothing done */
bool lpg_ws_parked_pong(lpg_ws_t *ws, const uint8_t *in, size_t len);

/* ws->ctx exists after it (LPG_OK), or ws->failed is set (LPG_ERROR) */
int lpg_ws_wake(lpg_ws_t *ws);

/* frees ws->ctx, the message buffer and an empty output buffer when the
 * connection is open and idle between frames with nothing to send */
void lpg_ws_park(lpg_ws_t *ws);

/* the frame accounting, from wslay's frame start and end callbacks */
void lpg_ws_frame_began(lpg_ws_t *ws, unsigned opcode, bool fin,
                        uint64_t payload_length);
void lpg_ws_frame_ended(lpg_ws_t *ws);


#endif /* LPG_WS_INT_H */
