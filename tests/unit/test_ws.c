/*
 * SPDX-License-Identifier: MIT
 *
 * test_ws.c: the WebSocket layer (ws/) against hand-built, masked client
 * frames: every close code Odoo 16/17 sends for a framing fault, the PING,
 * PONG and CLOSE answers, fragmentation with control frames in between,
 * UTF-8, the size and rate limits, server frames and their order.
 */

#include "lpg_ws.h"

#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


#define T_MAX_FRAME (LPG_WS_MAX_MESSAGE + 64)


/* what the handler saw */
typedef struct {
    int      messages;
    int      binary;
    int      pongs;
    size_t   len;
    uint8_t *last;
} t_seen_t;


/* one server frame read back from the output */
typedef struct {
    unsigned fin;
    unsigned opcode;
    size_t   len;
    uint8_t  payload[256];
} t_frame_t;


static t_seen_t seen;
static uint8_t *buf; /* a client frame under construction */


static void
t_message(void *data, const uint8_t *msg, size_t len, bool binary)
{
    seen.messages++;
    seen.binary += binary;
    seen.len = len;
    free(seen.last);
    seen.last = malloc(len + 1);
    memcpy(seen.last, msg, len);
    seen.last[len] = '\0';
}


static void
t_pong(void *data)
{
    seen.pongs++;
}


static lpg_ws_t *
t_ws(void)
{
    lpg_ws_handler_t h = { t_message, t_pong };
    lpg_ws_t        *ws;

    free(seen.last);
    memset(&seen, 0, sizeof(seen));

    ws = lpg_ws_create(NULL, &h, NULL);
    assert_non_null(ws);

    return ws;
}


/* a client frame: masked unless told, with first byte b0 (FIN, RSV, op) */
static size_t
t_frame_b0(uint8_t *out, unsigned b0, bool mask, const void *payload,
           size_t len)
{
    size_t        n, i;
    const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };

    out[0] = (uint8_t) b0;
    n = lpg_ws_frame_head(out, b0 & 0x0f, len);
    out[0] = (uint8_t) b0;

    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, key, 4);
        n += 4;
    }

    for (i = 0; i < len; i++) {
        out[n + i] = ((const uint8_t *) payload)[i] ^ (mask ? key[i % 4] : 0);
    }

    return n + len;
}


static size_t
t_frame(uint8_t *out, bool fin, unsigned op, const void *payload, size_t len)
{
    return t_frame_b0(out, (fin ? 0x80 : 0) | op, true, payload, len);
}


static size_t
t_close_frame(uint8_t *out, unsigned code, const char *reason)
{
    uint8_t p[128];
    size_t  n;

    n = strlen(reason);
    p[0] = (uint8_t) (code >> 8);
    p[1] = (uint8_t) code;
    memcpy(p + 2, reason, n);

    return t_frame(out, true, 0x8, p, n + 2);
}


/* reads the next server frame off the output, or returns false */
static bool
t_next(lpg_ws_t *ws, t_frame_t *f)
{
    const uint8_t *out;
    size_t         avail, n, i;

    avail = lpg_ws_pending(ws, &out);
    if (avail == 0) {
        return false;
    }

    assert_true(avail >= 2);
    /* server frames are never masked */
    assert_int_equal(out[1] & 0x80, 0);

    f->fin = out[0] >> 7;
    f->opcode = out[0] & 0x0f;
    f->len = out[1] & 0x7f;
    n = 2;

    if (f->len == 126) {
        f->len = ((size_t) out[2] << 8) | out[3];
        n = 4;

    } else if (f->len == 127) {
        f->len = 0;
        for (i = 0; i < 8; i++) {
            f->len = (f->len << 8) | out[2 + i];
        }
        n = 10;
    }

    assert_true(avail >= n + f->len);

    if (f->len <= sizeof(f->payload)) {
        memcpy(f->payload, out + n, f->len);
    }

    lpg_ws_consume(ws, n + f->len);

    return true;
}


/* the next frame must be a CLOSE with code */
static void
t_expect_close(lpg_ws_t *ws, unsigned code)
{
    t_frame_t f;

    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0x8);
    assert_true(f.len >= 2);
    assert_int_equal((f.payload[0] << 8) | f.payload[1], code);
    assert_int_equal(lpg_ws_code_sent(ws), code);
    assert_true(lpg_ws_done(ws));
    assert_false(t_next(ws, &f));
}


static int
t_feed(lpg_ws_t *ws, size_t len, int64_t now)
{
    return lpg_ws_feed(ws, buf, len, now);
}


static void
test_frame_text(void **state)
{
    static const size_t lens[] = { 0, 125, 126, 65535, 65536 };
    static const size_t heads[] = { 2, 2, 4, 4, 10 };
    uint8_t            *payload, *out;
    size_t              i, n;

    payload = malloc(65536);
    out = malloc(65536 + LPG_WS_FRAME_HEAD_MAX);
    memset(payload, 'x', 65536);

    for (i = 0; i < LPG_NELEMS(lens); i++) {
        n = lpg_ws_frame_text(out, payload, lens[i]);
        assert_int_equal(n, heads[i] + lens[i]);
        /* FIN, TEXT, no mask */
        assert_int_equal(out[0], 0x81);
        assert_int_equal(out[1] & 0x80, 0);
        assert_memory_equal(out + heads[i], payload, lens[i]);
    }

    lpg_ws_frame_text(out, payload, 125);
    assert_int_equal(out[1], 125);

    lpg_ws_frame_text(out, payload, 126);
    assert_int_equal(out[1], 126);
    assert_int_equal(out[2], 0);
    assert_int_equal(out[3], 126);

    lpg_ws_frame_text(out, payload, 65535);
    assert_int_equal(out[1], 126);
    assert_int_equal(out[2], 0xff);
    assert_int_equal(out[3], 0xff);

    lpg_ws_frame_text(out, payload, 65536);
    assert_int_equal(out[1], 127);
    assert_memory_equal(out + 2, "\0\0\0\0\0\1\0\0", 8);

    free(payload);
    free(out);
}


static void
test_text_and_binary(void **state)
{
    lpg_ws_t *ws;
    size_t    n;
    t_frame_t f;

    ws = t_ws();

    n = t_frame(buf, true, 0x1, "{\"event_name\":\"subscribe\"}", 26);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 1);
    assert_int_equal(seen.binary, 0);
    assert_string_equal((char *) seen.last, "{\"event_name\":\"subscribe\"}");

    /* Odoo passes BINARY messages to json.loads too */
    n = t_frame(buf, true, 0x2, "[1]", 3);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 2);
    assert_int_equal(seen.binary, 1);

    /* an empty TEXT message */
    n = t_frame(buf, true, 0x1, "", 0);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 3);
    assert_int_equal(seen.len, 0);

    assert_false(t_next(ws, &f));
    assert_false(lpg_ws_done(ws));
    lpg_ws_destroy(ws);
}


static void
test_ping_pong(void **state)
{
    lpg_ws_t *ws;
    size_t    n;
    t_frame_t f;

    ws = t_ws();

    /* client PING: PONG with the same payload */
    n = t_frame(buf, true, 0x9, "abc", 3);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, 0xa);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.payload, "abc", 3);

    /* server PING: empty payload; the client's PONG reaches the handler */
    assert_int_equal(lpg_ws_ping(ws), LPG_OK);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0x9);
    assert_int_equal(f.len, 0);

    n = t_frame(buf, true, 0xa, "", 0);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.pongs, 1);
    assert_false(t_next(ws, &f));

    lpg_ws_destroy(ws);
}


/* one bad frame after a good PING: the PONG, then CLOSE code */
static void
t_bad(const uint8_t *frame, size_t len, unsigned code)
{
    lpg_ws_t *ws;
    size_t    n;
    t_frame_t f;

    ws = t_ws();

    n = t_frame(buf, true, 0x9, "p", 1);
    memcpy(buf + n, frame, len);
    assert_int_equal(t_feed(ws, n + len, 0), LPG_DONE);

    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0xa);
    t_expect_close(ws, code);

    /* nothing more is read */
    n = t_frame(buf, true, 0x1, "late", 4);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);

    lpg_ws_destroy(ws);
}


static void
test_protocol_errors(void **state)
{
    uint8_t f[256], big[200];
    size_t  n;

    memset(big, 'b', sizeof(big));

    /* unmasked */
    n = t_frame_b0(f, 0x81, false, "hi", 2);
    t_bad(f, n, 1002);

    /* each reserved bit */
    n = t_frame_b0(f, 0x81 | 0x40, true, "hi", 2);
    t_bad(f, n, 1002);
    n = t_frame_b0(f, 0x81 | 0x20, true, "hi", 2);
    t_bad(f, n, 1002);
    n = t_frame_b0(f, 0x81 | 0x10, true, "hi", 2);
    t_bad(f, n, 1002);

    /* a 126-byte PING, a PING without FIN, a CLOSE of 126 */
    n = t_frame(f, true, 0x9, big, 126);
    t_bad(f, n, 1002);
    n = t_frame(f, false, 0x9, "x", 1);
    t_bad(f, n, 1002);
    n = t_frame(f, true, 0x8, big, 126);
    t_bad(f, n, 1002);

    /* unknown opcodes, data and control */
    n = t_frame(f, true, 0x3, "x", 1);
    t_bad(f, n, 1002);
    n = t_frame(f, true, 0xb, "x", 1);
    t_bad(f, n, 1002);

    /* a stray CONTINUE */
    n = t_frame(f, true, 0x0, "x", 1);
    t_bad(f, n, 1002);

    /* a TEXT where a CONTINUE was due */
    n = t_frame(f, false, 0x1, "a", 1);
    n += t_frame(f + n, true, 0x1, "b", 1);
    t_bad(f, n, 1002);

    /* a 16-bit length for 5 bytes (not the shortest form) */
    f[0] = 0x81;
    f[1] = 0x80 | 126;
    f[2] = 0;
    f[3] = 5;
    memset(f + 4, 0, 4 + 5);
    t_bad(f, 4 + 4 + 5, 1002);
}


static void
test_fragmentation(void **state)
{
    lpg_ws_t      *ws;
    size_t         n, ping_end, i;
    t_frame_t      f;
    const uint8_t *out;

    ws = t_ws();

    n = t_frame(buf, false, 0x1, "Hel", 3);
    n += t_frame(buf + n, true, 0x9, "mid", 3);
    ping_end = n;
    n += t_frame(buf + n, false, 0x0, "lo ", 3);
    n += t_frame(buf + n, true, 0xa, "", 0);
    n += t_frame(buf + n, true, 0x0, "world", 5);

    /* one byte at a time; the PONG goes out before the message is whole */
    for (i = 0; i < n; i++) {
        assert_int_equal(lpg_ws_feed(ws, buf + i, 1, 0), LPG_OK);

        if (i + 1 == ping_end) {
            assert_int_equal(seen.messages, 0);
            assert_true(lpg_ws_pending(ws, &out) > 0);
        }
    }

    assert_int_equal(seen.messages, 1);
    assert_string_equal((char *) seen.last, "Hello world");
    assert_int_equal(seen.pongs, 1);

    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0xa);
    assert_memory_equal(f.payload, "mid", 3);
    assert_false(t_next(ws, &f));

    lpg_ws_destroy(ws);
}


/* TEXT payload p must be refused with 1007 */
static void
t_bad_utf8(const char *p, size_t len)
{
    lpg_ws_t *ws;
    size_t    n;

    ws = t_ws();
    n = t_frame(buf, true, 0x1, p, len);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);
    t_expect_close(ws, 1007);
    lpg_ws_destroy(ws);
}


static void
test_utf8(void **state)
{
    lpg_ws_t *ws;
    size_t    n;

    t_bad_utf8("a\xff", 2);
    t_bad_utf8("\xc0\xaf", 2);         /* overlong '/' */
    t_bad_utf8("\xed\xa0\x80", 3);     /* a surrogate */
    t_bad_utf8("\xf4\x90\x80\x80", 4); /* above U+10FFFF */
    t_bad_utf8("ok\xe2\x82", 4);       /* cut at the end of the message */

    /* U+1F600 split across two fragments is fine */
    ws = t_ws();
    n = t_frame(buf, false, 0x1, "\xf0\x9f", 2);
    n += t_frame(buf + n, true, 0x0, "\x98\x80", 2);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 1);
    assert_string_equal((char *) seen.last, "\xf0\x9f\x98\x80");
    lpg_ws_destroy(ws);

    /* BINARY is not UTF-8 checked */
    ws = t_ws();
    n = t_frame(buf, true, 0x2, "\xff\xfe", 2);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.binary, 1);
    lpg_ws_destroy(ws);

    /* nor is a close reason that is not UTF-8 accepted */
    ws = t_ws();
    n = t_close_frame(buf, 1000, "\xc3");
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    t_expect_close(ws, 1007);
    lpg_ws_destroy(ws);
}


static void
test_too_big(void **state)
{
    lpg_ws_t *ws;
    size_t    n, before;
    uint8_t  *p;

    p = malloc(LPG_WS_MAX_MESSAGE + 1);
    memset(p, 'a', LPG_WS_MAX_MESSAGE + 1);

    /* exactly 1 MiB passes */
    ws = t_ws();
    n = t_frame(buf, true, 0x1, p, LPG_WS_MAX_MESSAGE);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 1);
    assert_int_equal(seen.len, LPG_WS_MAX_MESSAGE);
    lpg_ws_destroy(ws);

    /* one byte over: 1009, told by the header and the first bytes */
    ws = t_ws();
    n = t_frame(buf, true, 0x1, p, LPG_WS_MAX_MESSAGE + 1);
    assert_int_equal(t_feed(ws, 20, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);
    t_expect_close(ws, 1009);
    lpg_ws_destroy(ws);

    /* a header announcing 1 MiB costs what arrived, not 1 MiB */
    ws = t_ws();
    before = mallinfo2().uordblks;
    n = t_frame(buf, true, 0x2, p, LPG_WS_MAX_MESSAGE);
    assert_int_equal(t_feed(ws, 14 + 100, 0), LPG_OK);
    assert_true(mallinfo2().uordblks - before < 64 * 1024);
    assert_int_equal(lpg_ws_feed(ws, buf + 114, n - 114, 0), LPG_OK);
    assert_int_equal(seen.messages, 1);
    assert_int_equal(seen.len, LPG_WS_MAX_MESSAGE);
    lpg_ws_destroy(ws);

    /* the same reassembled from two fragments */
    ws = t_ws();
    n = t_frame(buf, false, 0x1, p, LPG_WS_MAX_MESSAGE / 2);
    n += t_frame(buf + n, true, 0x0, p, LPG_WS_MAX_MESSAGE / 2 + 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);
    t_expect_close(ws, 1009);
    lpg_ws_destroy(ws);

    free(p);
}


static void
test_rate_limit(void **state)
{
    lpg_ws_t        *ws;
    lpg_ws_conf_t    conf;
    size_t           n, i;
    int              pongs;
    t_frame_t        f;
    lpg_ws_handler_t h = { t_message, t_pong };

    /* 12 PINGs at once: 10 PONGs, then CLOSE 1013 (seen on Odoo 17) */
    ws = t_ws();
    n = 0;
    for (i = 0; i < 12; i++) {
        n += t_frame(buf + n, true, 0x9, "p", 1);
    }
    assert_int_equal(t_feed(ws, n, 5000), LPG_DONE);

    pongs = 0;
    while (t_next(ws, &f) && f.opcode == 0xa) {
        pongs++;
    }
    assert_int_equal(pongs, 10);
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal((f.payload[0] << 8) | f.payload[1], 1013);
    assert_int_equal(lpg_ws_code_sent(ws), 1013);
    lpg_ws_destroy(ws);

    /* one frame each 200 ms is never refused; data frames count too */
    ws = t_ws();
    for (i = 0; i < 50; i++) {
        n = t_frame(buf, true, 0x1, "m", 1);
        assert_int_equal(t_feed(ws, n, (int64_t) i * 200), LPG_OK);
    }
    assert_int_equal(seen.messages, 50);
    lpg_ws_destroy(ws);

    /* 10 frames, then the 11th at 1999 ms is refused, at 2000 is not */
    ws = t_ws();
    n = t_frame(buf, true, 0x1, "m", 1);
    for (i = 0; i < 10; i++) {
        assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    }
    assert_int_equal(t_feed(ws, n, 2000), LPG_OK);
    assert_int_equal(t_feed(ws, n, 2001), LPG_OK);
    /* the 10th-before is the 3rd at 0 ms */
    assert_int_equal(t_feed(ws, n, 1999), LPG_DONE);
    assert_int_equal(seen.messages, 12);
    t_expect_close(ws, 1013);
    lpg_ws_destroy(ws);

    /* a configured burst of 3 per 300 ms; 0 turns it off */
    lpg_ws_conf_default(&conf);
    conf.rate_burst = 3;
    conf.rate_delay = 100;
    ws = lpg_ws_create(&conf, &h, NULL);
    for (i = 0; i < 3; i++) {
        assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    }
    assert_int_equal(t_feed(ws, n, 299), LPG_DONE);
    lpg_ws_destroy(ws);

    /* a burst above the ring kept in the struct (allocated), with clock
     * values across 2^32 ms (the ring keeps 32-bit stamps) */
    conf.rate_burst = 25;
    conf.rate_delay = 10;
    ws = lpg_ws_create(&conf, &h, NULL);
    for (i = 0; i < 25; i++) {
        assert_int_equal(t_feed(ws, n, 0xfffffff0LL + i), LPG_OK);
    }
    /* the 25th-before came at 0xfffffff0: 250 ms from then is the edge */
    assert_int_equal(t_feed(ws, n, 0xfffffff0LL + 250), LPG_OK);
    assert_int_equal(t_feed(ws, n, 0xfffffff0LL + 251), LPG_OK);
    assert_int_equal(t_feed(ws, n, 0xfffffff0LL + 251), LPG_DONE);
    lpg_ws_destroy(ws);

    conf.rate_burst = 0;
    ws = lpg_ws_create(&conf, &h, NULL);
    for (i = 0; i < 100; i++) {
        assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    }
    lpg_ws_destroy(ws);
}


static void
test_client_close(void **state)
{
    lpg_ws_t *ws;
    size_t    n;
    t_frame_t f;
    unsigned  i;

    static const unsigned bad[] = {
        0, 999, 1004, 1005, 1006, 1016, 2999, 5000
    };

    /* the code and reason come back, then the TCP connection closes */
    ws = t_ws();
    n = t_close_frame(buf, 1000, "bye");
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.payload,
                        "\x03\xe8"
                        "bye",
                        5);
    assert_int_equal(lpg_ws_code_received(ws), 1000);
    assert_int_equal(lpg_ws_code_sent(ws), 1000);
    assert_false(t_next(ws, &f));
    lpg_ws_destroy(ws);

    ws = t_ws();
    n = t_close_frame(buf, 4001, "");
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    t_expect_close(ws, 4001);
    lpg_ws_destroy(ws);

    /* no code: Odoo reads 1000 and sends it back */
    ws = t_ws();
    n = t_frame(buf, true, 0x8, "", 0);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    t_expect_close(ws, 1000);
    assert_int_equal(lpg_ws_code_received(ws), 1005);
    lpg_ws_destroy(ws);

    /* a 1-byte payload, and invalid codes: 1002 */
    ws = t_ws();
    n = t_frame(buf, true, 0x8, "\x03", 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    t_expect_close(ws, 1002);
    lpg_ws_destroy(ws);

    for (i = 0; i < LPG_NELEMS(bad); i++) {
        ws = t_ws();
        n = t_close_frame(buf, bad[i], "x");
        assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
        t_expect_close(ws, 1002);
        lpg_ws_destroy(ws);
    }

    /* after the CLOSE nothing is read: a message behind it is dropped */
    ws = t_ws();
    n = t_close_frame(buf, 1001, "");
    n += t_frame(buf + n, true, 0x1, "after", 5);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);
    t_expect_close(ws, 1001);
    lpg_ws_destroy(ws);
}


static void
test_server_close(void **state)
{
    lpg_ws_t *ws;
    size_t    n;
    t_frame_t f;

    /* 4001: send and be done at once */
    ws = t_ws();
    assert_int_equal(lpg_ws_close(ws, 4001, NULL, 0), LPG_DONE);
    t_expect_close(ws, 4001);
    n = t_frame(buf, true, 0x1, "x", 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(seen.messages, 0);
    lpg_ws_destroy(ws);

    /* 1001: wait for the client's CLOSE, dropping its data meanwhile */
    ws = t_ws();
    assert_int_equal(lpg_ws_close(ws, 1001, "bye", 3), LPG_OK);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0x8);
    assert_memory_equal(f.payload,
                        "\x03\xe9"
                        "bye",
                        5);
    assert_false(lpg_ws_done(ws));

    n = t_frame(buf, true, 0x1, "x", 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(seen.messages, 0);
    assert_int_equal(lpg_ws_send_text(ws, "[]", 2), LPG_DONE);
    assert_int_equal(lpg_ws_ping(ws), LPG_DONE);

    n = t_close_frame(buf, 1001, "");
    assert_int_equal(t_feed(ws, n, 0), LPG_DONE);
    assert_int_equal(lpg_ws_code_received(ws), 1001);
    /* no second CLOSE */
    assert_false(t_next(ws, &f));
    lpg_ws_destroy(ws);

    /* a second close is a no-op */
    ws = t_ws();
    assert_int_equal(lpg_ws_close(ws, 4002, NULL, 0), LPG_DONE);
    assert_int_equal(lpg_ws_close(ws, 1000, NULL, 0), LPG_DONE);
    t_expect_close(ws, 4002);
    lpg_ws_destroy(ws);
}


/* a message handler that answers at once, inside lpg_ws_feed() */
static void
t_echo(void *data, const uint8_t *msg, size_t len, bool binary)
{
    lpg_ws_t *ws = *(lpg_ws_t **) data;

    t_message(data, msg, len, binary);
    assert_int_equal(lpg_ws_send_text(ws, msg, len), LPG_OK);
}


static void
test_server_frames(void **state)
{
    lpg_ws_t        *ws, *wss[3];
    lpg_ws_handler_t h = { t_echo, NULL };
    uint8_t          frame[64];
    size_t           n, fn, i;
    t_frame_t        f;
    const uint8_t   *out;

    /* one batch framed once, the same bytes queued on three sockets */
    fn = lpg_ws_frame_text(frame, "[{\"id\": 12}]", 12);
    for (i = 0; i < 3; i++) {
        wss[i] = t_ws();
        assert_int_equal(lpg_ws_send_framed(wss[i], frame, fn), LPG_OK);
        assert_int_equal(lpg_ws_pending(wss[i], &out), fn);
        assert_memory_equal(out, frame, fn);
        lpg_ws_destroy(wss[i]);
    }

    /* in wire order with wslay's own frames: PING answered, then a
     * notification, then a reply sent from inside the handler */
    ws = t_ws();
    memset(&seen, 0, sizeof(seen));
    lpg_ws_destroy(ws);
    ws = lpg_ws_create(NULL, &h, &ws);
    assert_non_null(ws);

    n = t_frame(buf, true, 0x9, "1", 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);
    assert_int_equal(lpg_ws_send_framed(ws, frame, fn), LPG_OK);

    /* the PONG and 5 bytes of the notification were written */
    n = lpg_ws_pending(ws, &out);
    assert_int_equal(n, 3 + fn);
    assert_memory_equal(out,
                        "\x8a\x01"
                        "1",
                        3);
    assert_memory_equal(out + 3, frame, fn);
    lpg_ws_consume(ws, 3 + 5);

    n = t_frame(buf, true, 0x1, "hi", 2);
    n += t_frame(buf + n, true, 0x9, "2", 1);
    assert_int_equal(t_feed(ws, n, 0), LPG_OK);

    /* the rest of the notification, then the echo, then the PONG */
    n = lpg_ws_pending(ws, &out);
    assert_int_equal(n, (fn - 5) + 4 + 3);
    assert_memory_equal(out, frame + 5, fn - 5);
    lpg_ws_consume(ws, fn - 5);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0x1);
    assert_memory_equal(f.payload, "hi", 2);
    assert_true(t_next(ws, &f));
    assert_int_equal(f.opcode, 0xa);
    assert_memory_equal(f.payload, "2", 1);
    assert_false(t_next(ws, &f));

    lpg_ws_destroy(ws);
}


int
main(void)
{
    int rc;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_text),
        cmocka_unit_test(test_text_and_binary),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_server_close),
        cmocka_unit_test(test_server_frames),
    };

    buf = malloc(2 * T_MAX_FRAME);
    rc = cmocka_run_group_tests_name("ws", tests, NULL, NULL);
    free(buf);
    free(seen.last);

    return rc;
}
