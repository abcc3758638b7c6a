/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_sio.c: libFuzzer harness of the engine.io and Socket.IO packet
 * codec (sio/lpg_sio.c) as the Socket.IO transport drives it: the input
 * is a polling payload; each engine.io packet is decoded and each message
 * decoded as a Socket.IO packet, whose parts are then encoded again.
 * Checked: no crash, no leak, every span inside the input, a decoded
 * namespace valid, and an encoded packet decodes to the same type,
 * namespace and ack id.
 */

#include "lpg_sio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_check(const char *p, size_t len)
{
    const char      *why;
    lpg_buf_t        b;
    lpg_sio_packet_t pkt, again;

    if (lpg_sio_decode(p, len, &pkt, &why) != LPG_OK) {
        if (why == NULL) {
            abort();
        }
        return;
    }

    if (!lpg_sio_nsp_valid(pkt.nsp, pkt.nsp_len)) {
        abort();
    }

    memset(&b, 0, sizeof(b));

    if (lpg_sio_encode_json(&b, pkt.type, pkt.nsp, pkt.nsp_len, pkt.ack,
                            pkt.data)
        == LPG_OK)
    {
        /* "4" + the Socket.IO packet */
        if (b.len < 2 || b.data[0] != '4') {
            abort();
        }

        if (lpg_sio_decode(b.data + 1, b.len - 1, &again, &why) != LPG_OK) {
            abort();
        }

        if (again.type != pkt.type || again.ack != pkt.ack
            || again.nsp_len != pkt.nsp_len
            || memcmp(again.nsp, pkt.nsp, pkt.nsp_len) != 0)
        {
            abort();
        }

        lpg_sio_packet_free(&again);
    }

    lpg_buf_free(&b);
    lpg_sio_packet_free(&pkt);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              rc;
    size_t           off = 0;
    const char      *p = (const char *) data, *why;
    lpg_eio_packet_t e;
    volatile char    c;

    while ((rc = lpg_eio_payload_next(p, size, &off, &e, &why)) == LPG_OK) {
        if (e.data < p || e.data + e.len > p + size) {
            abort();
        }

        if (e.len > 0) {
            c = e.data[e.len - 1];
            (void) c;
        }

        if (e.type == LPG_EIO_MESSAGE) {
            fuzz_check(e.data, e.len);
        }
    }

    if (rc == LPG_ERROR && why == NULL) {
        abort();
    }

    return 0;
}
