/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws_park.c: the wslay context of a connection lives only while it is
 * needed.  A wslay event context takes about 8.8 KiB (its frame parser's
 * 4 KiB input buffer, its output buffer, two message slots and queues),
 * nearly all of an idle websocket's memory, and a parked socket of a
 * gateway has nothing in it for minutes: a client sends a subscribe, then
 * a PONG every ping interval.  So the context, and the reassembly state
 * that goes with it (lpg_ws_awake_t), is made when bytes arrive or
 * a PING or CLOSE must be queued, and freed again when the connection is
 * open, wslay holds no part of a frame (every byte fed belongs to a frame
 * it finished), no fragmented message is under way and nothing is queued.
 *
 * The ping interval's round trip needs no context either: the PING is two
 * bytes framed here, and a read that brings exactly one whole PONG frame
 * (the usual answer) is checked and counted here; a PONG cut across reads,
 * or with other frames behind it, goes through wslay as everything else.
 *
 * What wslay holds between feeds is read off its callbacks: each frame's
 * start gives its payload length, and since wslay accepts only masked
 * client frames with lengths in their shortest form, the header's length
 * follows from it; each frame's end adds the two to the bytes accounted.
 */

#include "lpg_ws_int.h"

#include <stdlib.h>


const uint8_t lpg_ws_ping_frame[2] = { 0x89, 0x00 };

/* contexts made in this process */
static uint64_t lpg_ws_wakes;


uint64_t
lpg_ws_wake_count(void)
{
    return lpg_ws_wakes;
}


bool
lpg_ws_parked_pong(lpg_ws_t *ws, const uint8_t *in, size_t len)
{
    size_t plen;

    /* FIN and PONG, no reserved bit; masked (a client's frame), a 7-bit
     * length (a control frame's payload is at most 125 bytes) */
    if (ws->ctx != NULL || ws->state != LPG_WS_OPEN || ws->failed || len < 6
        || in[0] != 0x8a || (in[1] & 0x80) == 0)
    {
        return false;
    }

    plen = in[1] & 0x7f;
    if (plen > 125 || len != 6 + plen || !lpg_ws_rate_ok(ws)) {
        /* a refused rate (nothing counted) goes through wslay, which
         * refuses it again and closes with 1013 */
        return false;
    }

    if (ws->h.pong != NULL) {
        ws->h.pong(ws->data);
    }

    return true;
}


int
lpg_ws_wake(lpg_ws_t *ws)
{
    if (ws->ctx != NULL) {
        return LPG_OK;
    }

    lpg_ws_wakes++;

    ws->a = calloc(1, sizeof(*ws->a));
    if (ws->a == NULL
        || wslay_event_context_server_init(&ws->ctx, &lpg_ws_callbacks, ws)
            != 0)
    {
        free(ws->a);
        ws->a = NULL;
        ws->ctx = NULL;
        ws->failed = true;
        return LPG_ERROR;
    }

    /* no extension is negotiated, so no reserved bit is allowed */
    wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV_NONE);
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
    wslay_event_config_set_no_buffering(ws->ctx, 1);

    return LPG_OK;
}


void
lpg_ws_park(lpg_ws_t *ws)
{
    if (ws->ctx == NULL || ws->failed || ws->state != LPG_WS_OPEN
        || ws->a->in != NULL || ws->a->fed != ws->a->framed || ws->a->in_msg
        || ws->a->msg_len > 0 || ws->code_sent != 0 || ws->code_received != 0
        || wslay_event_want_write(ws->ctx))
    {
        return;
    }

    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;

    free(ws->a->msg);
    free(ws->a);
    ws->a = NULL;

    if (ws->out_len == 0) {
        free(ws->out);
        ws->out = NULL;
        ws->out_cap = 0;
        ws->out_pos = 0;
    }
}


void
lpg_ws_frame_began(lpg_ws_t *ws, unsigned opcode, bool fin,
                   uint64_t payload_length)
{
    uint64_t head;

    head = 2 + 4; /* the first two bytes and the mask */

    if (payload_length > 0xffff) {
        head += 8;

    } else if (payload_length >= 126) {
        head += 2;
    }

    ws->a->frame_size = head + payload_length;

    if (opcode == WSLAY_TEXT_FRAME || opcode == WSLAY_BINARY_FRAME
        || opcode == WSLAY_CONTINUATION_FRAME)
    {
        ws->a->in_msg = !fin;
    }
}


void
lpg_ws_frame_ended(lpg_ws_t *ws)
{
    ws->a->framed += ws->a->frame_size;
    ws->a->frame_size = 0;
}


bool
lpg_ws_parked(const lpg_ws_t *ws)
{
    return ws->ctx == NULL;
}
