/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_ws_frames.c: libFuzzer harness of the WebSocket frame layer
 * (ws/lpg_ws.c on libwslay) as a worker drives it.  The first bytes steer:
 * where the input is split into reads, how far the clock moves between
 * reads, and which server actions (a pre-framed notification, a PING, a
 * close) come between reads; the rest are client bytes.  Checked: no
 * crash, no leak, the output is a sequence of well-formed unmasked server
 * frames, and nothing is read after LPG_DONE.
 */

#include "lpg_ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


static lpg_ws_t *fuzz_ws;


static void
fuzz_message(void *data, const uint8_t *msg, size_t len, bool binary)
{
    volatile uint8_t sum = 0;
    size_t           i;

    /* touch every byte, so ASan sees a bad span */
    for (i = 0; i < len; i++) {
        sum ^= msg[i];
    }

    /* answer from inside the callback, as the router will */
    if (len > 0 && msg[0] == '!') {
        (void) lpg_ws_send_text(fuzz_ws, msg, len);
    }

    if (len > 0 && msg[0] == '#') {
        (void) lpg_ws_close(fuzz_ws, 4001, NULL, 0);
    }
}


/* the output must be complete, unmasked, final server frames */
static void
fuzz_check_output(lpg_ws_t *ws)
{
    const uint8_t *out;
    size_t         avail, off, len, head, i;

    avail = lpg_ws_pending(ws, &out);

    for (off = 0; off < avail; off += head + len) {
        if (avail - off < 2 || (out[off] & 0x80) == 0
            || (out[off + 1] & 0x80) != 0) {
            abort();
        }

        len = out[off + 1] & 0x7f;
        head = 2;

        if (len == 126) {
            head = 4;
            len = ((size_t) out[off + 2] << 8) | out[off + 3];

        } else if (len == 127) {
            head = 10;
            len = 0;
            for (i = 0; i < 8; i++) {
                len = (len << 8) | out[off + 2 + i];
            }
        }

        if (avail - off < head + len) {
            abort();
        }
    }

    lpg_ws_consume(ws, avail);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              rc;
    size_t           off, n;
    int64_t          now;
    uint8_t          steer, frame[64];
    lpg_ws_conf_t    conf;
    lpg_ws_handler_t h = { fuzz_message, NULL };

    if (size < 2) {
        return 0;
    }

    /* a small message limit reaches 1009 with small inputs */
    lpg_ws_conf_default(&conf);
    conf.max_message = data[0] & 1 ? 1024 : LPG_WS_MAX_MESSAGE;
    conf.rate_burst = data[0] >> 4;

    fuzz_ws = lpg_ws_create(&conf, &h, NULL);
    if (fuzz_ws == NULL) {
        return 0;
    }

    steer = data[1];
    now = 0;
    rc = LPG_OK;

    for (off = 2; off < size;) {
        /* read sizes of 1 to 32 bytes, or the rest, from the steer byte */
        n = steer & 0x1f ? (size_t) (steer & 0x1f) : size - off;
        if (n > size - off) {
            n = size - off;
        }

        rc = lpg_ws_feed(fuzz_ws, data + off, n, now);
        off += n;

        if (rc == LPG_ERROR) {
            break;
        }

        if (rc == LPG_DONE && !lpg_ws_done(fuzz_ws)) {
            abort();
        }

        switch (steer >> 5) {
        case 1:
            n = lpg_ws_frame_text(frame, "[{\"id\": 1}]", 11);
            (void) lpg_ws_send_framed(fuzz_ws, frame, n);
            break;
        case 2:
            (void) lpg_ws_ping(fuzz_ws);
            break;
        case 3:
            if (off + 1 >= size) {
                (void) lpg_ws_close(fuzz_ws, 1001, "bye", 3);
            }
            break;
        default:
            break;
        }

        fuzz_check_output(fuzz_ws);

        now += steer & 0x60;
        steer = (uint8_t) (steer * 31 + 7);
    }

    if (lpg_ws_done(fuzz_ws) && lpg_ws_feed(fuzz_ws, data, size, now) == LPG_OK)
    {
        abort();
    }

    lpg_ws_destroy(fuzz_ws);
    fuzz_ws = NULL;

    return 0;
}
