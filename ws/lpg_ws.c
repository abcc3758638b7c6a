/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws.c: a server-side WebSocket connection on libwslay's event API,
 * with the close codes Odoo 16/17 sends.
 *
 * wslay parses the frames, reassembles fragmented messages with control
 * frames in between, checks masking, reserved bits, opcodes, continuation
 * order, the message size (1009), UTF-8 of TEXT messages and of close
 * reasons (1007), close codes (1002), answers PING and echoes CLOSE.  Its
 * recv callback reads the span lpg_ws_feed() was given and its send
 * callback appends to one output buffer of ours, so the object does no I/O.
 * What this file adds or corrects (wslay 1.1.1, lib/wslay_event.c):
 *
 * - data messages are reassembled here as their bytes arrive (wslay's
 *   no-buffering mode): buffering, wslay mallocs the whole length a frame
 *   header announces before any payload comes, 1 MiB per socket for 14
 *   bytes sent; we check the reassembled size (1009) ourselves, wslay
 *   checks each frame's;
 * - the rate limit (1013), counted at the start of every frame;
 * - a control frame over 125 bytes, a fragmented control frame or a
 *   length not in its shortest form: wslay queues a CLOSE without a code
 *   and fails; we send 1002 instead of that frame;
 * - a CLOSE with a 1-byte payload: wslay echoes an empty CLOSE, Odoo
 *   answers 1002; an empty CLOSE: wslay echoes it empty, Odoo answers 1000;
 * - ordering: once wslay has a CLOSE queued it drops the PONGs still
 *   queued, so every frame wslay queues is sent at once (from the message
 *   callback), which keeps the output buffer in wire order and lets
 *   pre-framed notifications be appended to it directly.
 *
 * The wslay context exists only while the connection has something to
 * parse or send: lpg_ws_park.c.
 */

#include "lpg_ws_int.h"

#include <stdlib.h>
#include <string.h>


static ssize_t lpg_ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf,
                              size_t len, int flags, void *user_data);
static ssize_t lpg_ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                              size_t len, int flags, void *user_data);
static void
lpg_ws_frame_start_cb(wslay_event_context_ptr                           ctx,
                      const struct wslay_event_on_frame_recv_start_arg *arg,
                      void *user_data);
static void
            lpg_ws_chunk_cb(wslay_event_context_ptr                           ctx,
                            const struct wslay_event_on_frame_recv_chunk_arg *arg,
                            void                                             *user_data);
static void lpg_ws_msg_cb(wslay_event_context_ptr                   ctx,
                          const struct wslay_event_on_msg_recv_arg *arg,
                          void                                     *user_data);
static void lpg_ws_frame_end_cb(wslay_event_context_ptr ctx, void *user_data);
static void lpg_ws_fail_with(lpg_ws_t *ws, unsigned code);
static void lpg_ws_flush(lpg_ws_t *ws);
static void lpg_ws_update(lpg_ws_t *ws);
static bool lpg_ws_clean(unsigned code);
static int  lpg_ws_append(lpg_ws_t *ws, const uint8_t *p, size_t len);
static int  lpg_ws_result(lpg_ws_t *ws);


const struct wslay_event_callbacks lpg_ws_callbacks = {
    .recv_callback = lpg_ws_recv_cb,
    .send_callback = lpg_ws_send_cb,
    .on_frame_recv_start_callback = lpg_ws_frame_start_cb,
    .on_frame_recv_chunk_callback = lpg_ws_chunk_cb,
    .on_frame_recv_end_callback = lpg_ws_frame_end_cb,
    .on_msg_recv_callback = lpg_ws_msg_cb,
};


void
lpg_ws_conf_default(lpg_ws_conf_t *conf)
{
    conf->max_message = LPG_WS_MAX_MESSAGE;
    conf->rate_burst = 10;
    conf->rate_delay = 200;
}


lpg_ws_t *
lpg_ws_create(const lpg_ws_conf_t *conf, const lpg_ws_handler_t *h, void *data)
{
    lpg_ws_t     *ws;
    lpg_ws_conf_t dflt;

    if (conf == NULL) {
        lpg_ws_conf_default(&dflt);
        conf = &dflt;
    }

    ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return NULL;
    }

    ws->h = *h;
    ws->data = data;
    ws->max_message = conf->max_message;
    if (lpg_ws_rate_init(ws, conf) != LPG_OK) {
        free(ws);
        return NULL;
    }

    /* the wslay context comes with the first bytes (lpg_ws_park.c) */
    return ws;
}


void
lpg_ws_destroy(lpg_ws_t *ws)
{
    if (ws == NULL) {
        return;
    }

    if (ws->ctx != NULL) {
        wslay_event_context_free(ws->ctx);
    }

    lpg_ws_rate_free(ws);

    if (ws->a != NULL) {
        free(ws->a->msg);
        free(ws->a);
    }

    free(ws->out);
    free(ws);
}


int
lpg_ws_feed(lpg_ws_t *ws, const uint8_t *in, size_t len, int64_t now)
{
    int rc;

    if (ws->state == LPG_WS_DONE || ws->failed) {
        return lpg_ws_result(ws);
    }

    ws->now = now;

    if (lpg_ws_parked_pong(ws, in, len)) {
        return lpg_ws_result(ws);
    }

    if (lpg_ws_wake(ws) != LPG_OK) {
        return LPG_ERROR;
    }

    ws->a->in = in;
    ws->a->in_len = len;
    ws->a->fed += len;

    rc = wslay_event_recv(ws->ctx);

    ws->a->in = NULL;
    ws->a->in_len = 0;

    if (rc == WSLAY_ERR_NOMEM) {
        ws->failed = true;

    } else if (rc == WSLAY_ERR_CALLBACK_FAILURE && !ws->failed) {
        /*
         * Our recv callback never fails, so this is a frame header wslay's
         * frame layer refused (control frame over 125 bytes or without
         * FIN, a length not in its shortest form).  wslay queued a CLOSE
         * without a code: Odoo sends 1002.
         */
        wslay_event_shutdown_write(ws->ctx);

        if (ws->code_sent == 0) {
            lpg_ws_fail_with(ws, LPG_WS_PROTOCOL_ERROR);
        }

        ws->state = LPG_WS_DONE;
    }

    lpg_ws_flush(ws);
    lpg_ws_park(ws);

    return lpg_ws_result(ws);
}


size_t
lpg_ws_pending(const lpg_ws_t *ws, const uint8_t **out)
{
    if (ws->out == NULL) {
        *out = NULL;
        return 0;
    }

    *out = ws->out + ws->out_pos;

    return ws->out_len - ws->out_pos;
}


void
lpg_ws_consume(lpg_ws_t *ws, size_t n)
{
    LPG_ASSERT(n <= ws->out_len - ws->out_pos);

    ws->out_pos += n;

    if (ws->out_pos == ws->out_len) {
        ws->out_pos = 0;
        ws->out_len = 0;

        if (ws->ctx == NULL) {
            /* parked (lpg_ws_park.c): an idle socket keeps no buffer */
            free(ws->out);
            ws->out = NULL;
            ws->out_cap = 0;
        }
    }
}


int
lpg_ws_writable(const lpg_ws_t *ws)
{
    if (ws->failed) {
        return LPG_ERROR;
    }

    return ws->state == LPG_WS_OPEN ? LPG_OK : LPG_DONE;
}


int
lpg_ws_send_framed(lpg_ws_t *ws, const uint8_t *frame, size_t len)
{
    int rc;

    rc = lpg_ws_writable(ws);
    if (rc != LPG_OK) {
        return rc;
    }

    /* wslay holds nothing back (see the top of this file), so these bytes
     * go after every frame it produced */
    LPG_ASSERT(ws->ctx == NULL || !wslay_event_want_write(ws->ctx));

    if (lpg_ws_append(ws, frame, len) != LPG_OK) {
        ws->failed = true;
        return LPG_ERROR;
    }

    return LPG_OK;
}


int
lpg_ws_send_text(lpg_ws_t *ws, const void *payload, size_t len)
{
    int     rc;
    size_t  n;
    uint8_t head[LPG_WS_FRAME_HEAD_MAX];

    n = lpg_ws_frame_head(head, LPG_WS_OP_TEXT, len);

    rc = lpg_ws_send_framed(ws, head, n);
    if (rc != LPG_OK) {
        return rc;
    }

    return lpg_ws_send_framed(ws, payload, len);
}


int
lpg_ws_ping(lpg_ws_t *ws)
{
    struct wslay_event_msg msg;

    if (ws->failed) {
        return LPG_ERROR;
    }

    if (ws->state != LPG_WS_OPEN) {
        return LPG_DONE;
    }

    if (ws->ctx == NULL) {
        /* parked: the same two bytes wslay would write */
        return lpg_ws_send_framed(ws, lpg_ws_ping_frame,
                                  sizeof(lpg_ws_ping_frame));
    }

    msg.opcode = WSLAY_PING;
    msg.msg = NULL;
    msg.msg_length = 0;

    if (wslay_event_queue_msg(ws->ctx, &msg) == WSLAY_ERR_NOMEM) {
        ws->failed = true;
        return LPG_ERROR;
    }

    lpg_ws_flush(ws);
    lpg_ws_park(ws);

    return ws->failed ? LPG_ERROR : LPG_OK;
}


int
lpg_ws_close(lpg_ws_t *ws, unsigned code, const char *reason, size_t len)
{
    int rc;

    if (ws->failed) {
        return LPG_ERROR;
    }

    if (ws->state != LPG_WS_OPEN) {
        ws->state = LPG_WS_DONE;
        return LPG_DONE;
    }

    if (len > 123) {
        len = 123;
    }

    if (lpg_ws_wake(ws) != LPG_OK) {
        return LPG_ERROR;
    }

    rc = wslay_event_queue_close(ws->ctx, (uint16_t) code,
                                 (const uint8_t *) reason, len);
    if (rc == WSLAY_ERR_NOMEM) {
        ws->failed = true;
        return LPG_ERROR;
    }

    if (rc != 0) {
        ws->state = LPG_WS_DONE;
        return LPG_DONE;
    }

    if (!lpg_ws_clean(code)) {
        /* Odoo terminates right after such a close: read no more */
        wslay_event_shutdown_read(ws->ctx);
    }

    lpg_ws_flush(ws);

    return lpg_ws_result(ws);
}


bool
lpg_ws_done(const lpg_ws_t *ws)
{
    return ws->state == LPG_WS_DONE || ws->failed;
}


unsigned
lpg_ws_code_sent(const lpg_ws_t *ws)
{
    return ws->code_sent;
}


unsigned
lpg_ws_code_received(const lpg_ws_t *ws)
{
    return ws->code_received;
}


size_t
lpg_ws_frame_head(uint8_t *buf, unsigned opcode, size_t len)
{
    int i;

    buf[0] = (uint8_t) (0x80 | (opcode & 0x0f));

    if (len < 126) {
        buf[1] = (uint8_t) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        buf[2] = (uint8_t) (len >> 8);
        buf[3] = (uint8_t) len;
        return 4;
    }

    buf[1] = 127;

    for (i = 0; i < 8; i++) {
        buf[2 + i] = (uint8_t) ((uint64_t) len >> (56 - 8 * i));
    }

    return 10;
}


size_t
lpg_ws_frame_text(uint8_t *buf, const void *payload, size_t len)
{
    size_t n;

    n = lpg_ws_frame_head(buf, LPG_WS_OP_TEXT, len);

    if (len > 0) {
        memcpy(buf + n, payload, len);
    }

    return n + len;
}


/* wslay reads from the span lpg_ws_feed() was given */
static ssize_t
lpg_ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
               void *user_data)
{
    lpg_ws_t *ws = user_data;

    if (ws->a->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    if (len > ws->a->in_len) {
        len = ws->a->in_len;
    }

    memcpy(buf, ws->a->in, len);
    ws->a->in += len;
    ws->a->in_len -= len;

    return (ssize_t) len;
}


/* wslay writes into our output buffer, which takes everything */
static ssize_t
lpg_ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
               int flags, void *user_data)
{
    lpg_ws_t *ws = user_data;

    if (lpg_ws_append(ws, data, len) != LPG_OK) {
        ws->failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }

    return (ssize_t) len;
}


/* every frame header wslay accepted, before its payload is read */
static void
lpg_ws_frame_start_cb(wslay_event_context_ptr                           ctx,
                      const struct wslay_event_on_frame_recv_start_arg *arg,
                      void *user_data)
{
    lpg_ws_t *ws = user_data;

    lpg_ws_frame_began(ws, arg->opcode, arg->fin, arg->payload_length);

    if (ws->state == LPG_WS_DONE) {
        return;
    }

    ws->a->frame_data = false;

    /* Odoo's _limit_rate(): every frame, control frames included */
    if (!lpg_ws_rate_ok(ws)) {
        lpg_ws_fail_with(ws, LPG_WS_TRY_LATER);
        return;
    }

    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME
        || arg->opcode == WSLAY_CONTINUATION_FRAME)
    {
        /* wslay checked this frame's length; the message's is ours */
        if (arg->payload_length > ws->max_message - ws->a->msg_len) {
            lpg_ws_fail_with(ws, LPG_WS_MESSAGE_TOO_BIG);
            return;
        }

        ws->a->frame_data = ws->state == LPG_WS_OPEN;
        return;
    }

    if (arg->opcode != WSLAY_CONNECTION_CLOSE || ws->state != LPG_WS_OPEN) {
        return;
    }

    if (arg->payload_length == 1) {
        /* "Malformed closing frame": wslay would echo an empty CLOSE */
        lpg_ws_fail_with(ws, LPG_WS_PROTOCOL_ERROR);

    } else if (arg->payload_length == 0) {
        /* Odoo reads no code as 1000 and echoes that; wslay's own empty
         * echo then finds a CLOSE queued and gives up */
        ws->code_received = 1005;

        if (wslay_event_queue_close(ctx, LPG_WS_CLEAN, NULL, 0)
            == WSLAY_ERR_NOMEM) {
            ws->failed = true;
        }
    }
}


/* every frame wslay finished (its payload all read and checked) */
static void
lpg_ws_frame_end_cb(wslay_event_context_ptr ctx, void *user_data)
{
    lpg_ws_frame_ended(user_data);
}


/* payload bytes as they arrive (unmasked, UTF-8 checked so far) */
static void
lpg_ws_chunk_cb(wslay_event_context_ptr                           ctx,
                const struct wslay_event_on_frame_recv_chunk_arg *arg,
                void                                             *user_data)
{
    size_t    cap;
    uint8_t  *msg;
    lpg_ws_t *ws = user_data;

    if (!ws->a->frame_data || ws->state != LPG_WS_OPEN || arg->data_length == 0)
    {
        return;
    }

    /* within max_message: the frame's start checked the total */
    if (ws->a->msg_len + arg->data_length > ws->a->msg_cap) {
        cap = ws->a->msg_cap > 0 ? ws->a->msg_cap : 256;

        while (cap < ws->a->msg_len + arg->data_length) {
            cap *= 2;
        }

        msg = realloc(ws->a->msg, cap);
        if (msg == NULL) {
            ws->failed = true;
            wslay_event_shutdown_read(ctx);
            return;
        }

        ws->a->msg = msg;
        ws->a->msg_cap = cap;
    }

    memcpy(ws->a->msg + ws->a->msg_len, arg->data, arg->data_length);
    ws->a->msg_len += arg->data_length;
}


/* a complete message, control frames included; wslay already queued the
 * PONG of a PING and the echo of a CLOSE */
static void
lpg_ws_msg_cb(wslay_event_context_ptr                   ctx,
              const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    lpg_ws_t *ws = user_data;

    switch (arg->opcode) {

    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        /* arg->msg is NULL without buffering: the bytes are ours */
        if (ws->state == LPG_WS_OPEN && ws->h.message != NULL) {
            ws->h.message(ws->data,
                          ws->a->msg != NULL ? ws->a->msg
                                             : (const uint8_t *) "",
                          ws->a->msg_len, arg->opcode == WSLAY_BINARY_FRAME);
        }

        ws->a->msg_len = 0;

        /* a large message's buffer is not kept for the next one */
        if (ws->a->msg_cap > 65536) {
            free(ws->a->msg);
            ws->a->msg = NULL;
            ws->a->msg_cap = 0;
        }

        break;

    case WSLAY_PONG:
        if (ws->state != LPG_WS_DONE && ws->h.pong != NULL) {
            ws->h.pong(ws->data);
        }
        break;

    case WSLAY_CONNECTION_CLOSE:
        /* not after a failure: a 1-byte CLOSE carries no code */
        if (ws->code_received == 0 && ws->state != LPG_WS_DONE) {
            ws->code_received = arg->status_code != 0 ? arg->status_code : 1005;
        }
        break;

    default:
        break;
    }

    lpg_ws_flush(ws);
}


/*
 * Fails the connection with code: queues the CLOSE (wslay's frame, or ours
 * when wslay can no longer send) and reads no more.  Called inside
 * wslay_event_recv(), whose own CLOSE for the same frame then finds one
 * queued and gives up.
 */
static void
lpg_ws_fail_with(lpg_ws_t *ws, unsigned code)
{
    int     rc;
    size_t  n;
    uint8_t frame[4];

    wslay_event_shutdown_read(ws->ctx);

    if (ws->state == LPG_WS_OPEN) {
        if (wslay_event_get_write_enabled(ws->ctx)) {
            rc = wslay_event_queue_close(ws->ctx, (uint16_t) code, NULL, 0);
            if (rc == WSLAY_ERR_NOMEM) {
                ws->failed = true;
            }

        } else {
            n = lpg_ws_frame_head(frame, LPG_WS_OP_CLOSE, 2);
            frame[n] = (uint8_t) (code >> 8);
            frame[n + 1] = (uint8_t) code;

            if (lpg_ws_append(ws, frame, n + 2) != LPG_OK) {
                ws->failed = true;
            }

            ws->code_sent = code;
        }
    }

    ws->state = LPG_WS_DONE;
}


/* sends what wslay queued into the output buffer, then updates the state */
static void
lpg_ws_flush(lpg_ws_t *ws)
{
    if (ws->ctx == NULL) {
        return;
    }

    if (wslay_event_want_write(ws->ctx)) {
        if (wslay_event_send(ws->ctx) != 0) {
            ws->failed = true;
        }
    }

    lpg_ws_update(ws);
}


static void
lpg_ws_update(lpg_ws_t *ws)
{
    if (ws->code_sent == 0 && wslay_event_get_close_sent(ws->ctx)) {
        ws->code_sent = wslay_event_get_status_code_sent(ws->ctx);
    }

    if (ws->state == LPG_WS_DONE || ws->code_sent == 0) {
        return;
    }

    if (wslay_event_get_close_received(ws->ctx) || ws->code_received != 0
        || !lpg_ws_clean(ws->code_sent))
    {
        ws->state = LPG_WS_DONE;

    } else {
        ws->state = LPG_WS_CLOSING;
    }
}


/* Odoo's CLEAN_CLOSE_CODES: after these it waits for the client's CLOSE */
static bool
lpg_ws_clean(unsigned code)
{
    return code == LPG_WS_CLEAN || code == LPG_WS_GOING_AWAY
        || code == LPG_WS_RESTART;
}


static int
lpg_ws_append(lpg_ws_t *ws, const uint8_t *p, size_t len)
{
    size_t   need, cap;
    uint8_t *out;

    if (len == 0) {
        return LPG_OK;
    }

    if (ws->out_pos > 0 && ws->out_len + len > ws->out_cap) {
        memmove(ws->out, ws->out + ws->out_pos, ws->out_len - ws->out_pos);
        ws->out_len -= ws->out_pos;
        ws->out_pos = 0;
    }

    need = ws->out_len + len;

    if (need > ws->out_cap) {
        cap = ws->out_cap > 0 ? ws->out_cap : 256;

        while (cap < need) {
            cap *= 2;
        }

        out = realloc(ws->out, cap);
        if (out == NULL) {
            return LPG_ERROR;
        }

        ws->out = out;
        ws->out_cap = cap;
    }

    memcpy(ws->out + ws->out_len, p, len);
    ws->out_len += len;

    return LPG_OK;
}


static int
lpg_ws_result(lpg_ws_t *ws)
{
    if (ws->failed) {
        return LPG_ERROR;
    }

    return ws->state == LPG_WS_DONE ? LPG_DONE : LPG_OK;
}
