/*
 * SPDX-License-Identifier: MIT
 *
 * test_ws_park.c: a WebSocket connection holds its wslay context only
 * while it has something to parse or send (ws/lpg_ws_park.c): parked after
 * every whole frame, never inside a frame's header or payload nor inside a
 * fragmented message, whatever the lengths' forms (7, 16 and 64-bit), and
 * nothing is lost across a park.
 */

#include "lpg_ws.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


static int     messages;
static int     pongs;
static size_t  last_len;
static uint8_t last[80000];


static void
t_message(void *data, const uint8_t *msg, size_t len, bool binary)
{
    messages++;
    last_len = len;
    memcpy(last, msg, len);
}


static void
t_pong(void *data)
{
    pongs++;
}


static lpg_ws_t *
t_ws(void)
{
    lpg_ws_handler_t h = { t_message, t_pong };
    lpg_ws_t        *ws;

    messages = 0;
    pongs = 0;
    last_len = 0;

    ws = lpg_ws_create(NULL, &h, NULL);
    assert_non_null(ws);

    return ws;
}


/* a masked client frame of op into out; its length */
static size_t
t_frame(uint8_t *out, bool fin, unsigned op, const uint8_t *p, size_t len)
{
    size_t        n, i;
    const uint8_t key[4] = { 0x11, 0x5a, 0xc3, 0x7e };

    n = lpg_ws_frame_head(out, op, len);
    out[0] = (uint8_t) ((fin ? 0x80 : 0) | op);
    out[1] |= 0x80;
    memcpy(out + n, key, 4);
    n += 4;

    for (i = 0; i < len; i++) {
        out[n + i] = p[i] ^ key[i % 4];
    }

    return n + len;
}


static void
test_parked_between_frames_of_every_length_form(void **state)
{
    static uint8_t in[3 * 80000], payload[70000];
    size_t         n, sizes[] = { 0, 5, 125, 126, 300, 65535, 65536, 70000 };
    size_t         i, k, ends[8];
    lpg_ws_t      *ws;

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t) ('a' + i % 26);
    }

    ws = t_ws();

    /* nothing to parse yet: no context */
    assert_true(lpg_ws_parked(ws));

    n = 0;
    for (k = 0; k < 8; k++) {
        n += t_frame(in + n, true, 0x1, payload, sizes[k]);
        ends[k] = n;
    }

    /* fed in slices of 7 bytes: parked exactly at the frames' ends */
    for (i = 0, k = 0; i < n; i += 7) {
        size_t len = n - i < 7 ? n - i : 7;

        assert_int_equal(lpg_ws_feed(ws, in + i, len, 0), LPG_OK);

        while (k < 8 && ends[k] <= i + len) {
            k++;
        }

        assert_int_equal(lpg_ws_parked(ws),
                         i + len == (k > 0 ? ends[k - 1] : (size_t) -1));
    }

    assert_int_equal(messages, 8);
    assert_int_equal(last_len, 70000);
    assert_memory_equal(last, payload, 70000);
    assert_true(lpg_ws_parked(ws));

    lpg_ws_destroy(ws);
}


static void
test_not_parked_inside_a_fragmented_message(void **state)
{
    uint8_t        in[256];
    size_t         n, a, b, c;
    const uint8_t *out;
    lpg_ws_t      *ws;

    ws = t_ws();

    a = t_frame(in, false, 0x1, (const uint8_t *) "Hel", 3);
    b = a + t_frame(in + a, true, 0x9, (const uint8_t *) "p", 1);
    c = b + t_frame(in + b, false, 0x0, (const uint8_t *) "lo ", 3);
    n = c + t_frame(in + c, true, 0x0, (const uint8_t *) "world", 5);

    assert_int_equal(lpg_ws_feed(ws, in, a, 0), LPG_OK);
    assert_false(lpg_ws_parked(ws));

    /* the PING's PONG goes out; the message is still under way */
    assert_int_equal(lpg_ws_feed(ws, in + a, b - a, 0), LPG_OK);
    assert_false(lpg_ws_parked(ws));
    assert_true(lpg_ws_pending(ws, &out) > 0);
    lpg_ws_consume(ws, lpg_ws_pending(ws, &out));

    assert_int_equal(lpg_ws_feed(ws, in + b, c - b, 0), LPG_OK);
    assert_false(lpg_ws_parked(ws));

    assert_int_equal(lpg_ws_feed(ws, in + c, n - c, 0), LPG_OK);
    assert_true(lpg_ws_parked(ws));
    assert_int_equal(messages, 1);
    assert_int_equal(last_len, 11);
    assert_memory_equal(last, "Hello world", 11);

    lpg_ws_destroy(ws);
}


static void
test_ping_and_close_from_a_parked_connection(void **state)
{
    uint8_t        in[64];
    size_t         n;
    uint64_t       wakes;
    const uint8_t *out;
    lpg_ws_t      *ws;

    ws = t_ws();
    n = t_frame(in, true, 0x1, (const uint8_t *) "{}", 2);
    assert_int_equal(lpg_ws_feed(ws, in, n, 0), LPG_OK);
    assert_true(lpg_ws_parked(ws));

    /* a PING is written and its PONG read without a context */
    wakes = lpg_ws_wake_count();
    assert_int_equal(lpg_ws_ping(ws), LPG_OK);
    assert_int_equal(lpg_ws_pending(ws, &out), 2);
    assert_int_equal(out[0], 0x89);
    assert_int_equal(out[1], 0x00);
    lpg_ws_consume(ws, 1);
    assert_int_equal(lpg_ws_pending(ws, &out), 1);
    lpg_ws_consume(ws, 1);
    assert_true(lpg_ws_parked(ws));

    /* written out: the parked socket keeps no output buffer */
    assert_int_equal(lpg_ws_pending(ws, &out), 0);
    assert_null(out);

    n = t_frame(in, true, 0xa, NULL, 0);
    assert_int_equal(lpg_ws_feed(ws, in, n, 0), LPG_OK);
    assert_int_equal(pongs, 1);
    n = t_frame(in, true, 0xa, (const uint8_t *) "12345", 5);
    assert_int_equal(lpg_ws_feed(ws, in, n, 0), LPG_OK);
    assert_int_equal(pongs, 2);
    assert_true(lpg_ws_parked(ws));
    assert_int_equal(lpg_ws_wake_count(), wakes);
    assert_int_equal(lpg_ws_pending(ws, &out), 0);

    /* a PONG cut across reads, or with a frame behind it: wslay's */
    n = t_frame(in, true, 0xa, (const uint8_t *) "ab", 2);
    assert_int_equal(lpg_ws_feed(ws, in, 3, 0), LPG_OK);
    assert_false(lpg_ws_parked(ws));
    assert_int_equal(lpg_ws_feed(ws, in + 3, n - 3, 0), LPG_OK);
    assert_int_equal(pongs, 3);
    assert_true(lpg_ws_parked(ws));

    n = t_frame(in, true, 0xa, NULL, 0);
    n += t_frame(in + n, true, 0x1, (const uint8_t *) "{\"a\":1}", 7);
    assert_int_equal(lpg_ws_feed(ws, in, n, 0), LPG_OK);
    assert_int_equal(pongs, 4);
    assert_int_equal(messages, 2);
    assert_int_equal(last_len, 7);
    assert_true(lpg_ws_parked(ws));
    assert_int_equal(lpg_ws_wake_count(), wakes + 2);

    /* a server close: the context stays for the client's CLOSE */
    assert_int_equal(lpg_ws_close(ws, 1000, "", 0), LPG_OK);
    assert_false(lpg_ws_parked(ws));
    assert_int_equal(lpg_ws_pending(ws, &out), 4);
    assert_int_equal(out[0], 0x88);
    lpg_ws_consume(ws, 4);

    n = t_frame(in, true, 0x8, (const uint8_t *) "\x03\xe8", 2);
    assert_int_equal(lpg_ws_feed(ws, in, n, 0), LPG_DONE);
    assert_int_equal(lpg_ws_code_received(ws), 1000);

    lpg_ws_destroy(ws);
}


static void
test_parked_pongs_count_against_the_rate(void **state)
{
    uint8_t        in[64];
    size_t         n;
    int            i;
    const uint8_t *out;
    lpg_ws_t      *ws;

    ws = t_ws();
    n = t_frame(in, true, 0xa, NULL, 0);

    /* Odoo counts every frame: the 11th PONG within 2 s is refused */
    for (i = 0; i < 10; i++) {
        assert_int_equal(lpg_ws_feed(ws, in, n, 100), LPG_OK);
        assert_true(lpg_ws_parked(ws));
    }

    assert_int_equal(pongs, 10);
    assert_int_equal(lpg_ws_feed(ws, in, n, 2099), LPG_DONE);
    assert_int_equal(pongs, 10);
    assert_int_equal(lpg_ws_code_sent(ws), 1013);
    assert_true(lpg_ws_pending(ws, &out) > 0);
    assert_int_equal(out[0], 0x88);

    lpg_ws_destroy(ws);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parked_between_frames_of_every_length_form),
        cmocka_unit_test(test_not_parked_inside_a_fragmented_message),
        cmocka_unit_test(test_ping_and_close_from_a_parked_connection),
        cmocka_unit_test(test_parked_pongs_count_against_the_rate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
