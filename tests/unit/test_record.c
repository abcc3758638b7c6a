/*
 * SPDX-License-Identifier: MIT
 *
 * test_record.c: the msgpack ring record: round trips (unicode, empty and
 * long strings, every integer width), buffers too small, every truncation,
 * trailing bytes, wrong shapes and types, random garbage and single-byte
 * mutations (each input in a buffer of its exact size, so ASan sees any
 * read past the end), and interoperability with msgpack-c's own unpacker.
 */

#include "lpg_record.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>


static const int64_t lpg_test_ints[] = {
    0,          1,
    127,        128,
    255,        256,
    65535,      65536,
    4294967295, 4294967296LL,
    INT64_MAX,  -1,
    -32,        -33,
    -128,       -129,
    -32768,     -32769,
    INT32_MIN,  (int64_t) INT32_MIN - 1,
    INT64_MIN,  1764000000123456LL,
};


static void
lpg_test_sample(lpg_record_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->id = 42;
    rec->create_us = 1764000000123456;
    rec->notify_us = 987654321;
    rec->database = "mydb";
    rec->database_len = 4;
    rec->channel = "[\"mydb\",\"res.partner\",3]";
    rec->channel_len = strlen(rec->channel);
    rec->message = "{\"type\":\"mail.message/new\",\"payload\":{\"body\":"
                   "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}";
    rec->message_len = strlen(rec->message);
}


/* decodes buf[0..len) from a heap copy of exactly len bytes */
static int
lpg_test_decode(const char *buf, size_t len, lpg_record_t *out)
{
    int   rc;
    char *copy = malloc(len > 0 ? len : 1);

    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, buf, len);
    }

    rc = lpg_record_decode(copy, len, out);

    if (rc == LPG_OK) {
        /* every string lies inside the input */
        assert_true(out->database >= copy
                    && out->database + out->database_len <= copy + len);
        assert_true(out->channel >= copy
                    && out->channel + out->channel_len <= copy + len);
        assert_true(out->message >= copy
                    && out->message + out->message_len <= copy + len);
    }

    free(copy);

    return rc;
}


static void
lpg_test_same(const lpg_record_t *a, const lpg_record_t *b)
{
    assert_true(a->id == b->id);
    assert_true(a->create_us == b->create_us);
    assert_true(a->notify_us == b->notify_us);
    assert_int_equal(a->database_len, b->database_len);
    assert_int_equal(a->channel_len, b->channel_len);
    assert_int_equal(a->message_len, b->message_len);

    if (a->database_len > 0) {
        assert_memory_equal(a->database, b->database, a->database_len);
    }

    if (a->channel_len > 0) {
        assert_memory_equal(a->channel, b->channel, a->channel_len);
    }

    if (a->message_len > 0) {
        assert_memory_equal(a->message, b->message, a->message_len);
    }
}


static void
lpg_test_round_trip(const lpg_record_t *in, char *buf, size_t cap)
{
    size_t       len;
    lpg_record_t out;

    assert_int_equal(lpg_record_encode(in, buf, cap, &len), LPG_OK);
    assert_true(len <= cap);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    lpg_test_same(in, &out);

    /* the strings are borrowed from buf, not copied */
    assert_true(out.channel >= buf && out.channel < buf + len);
    assert_true(out.message >= buf && out.message <= buf + len);
}


static void
test_round_trip(void **state)
{
    char         buf[512];
    size_t       i;
    lpg_record_t in;

    LPG_UNUSED(state);

    lpg_test_sample(&in);
    lpg_test_round_trip(&in, buf, sizeof(buf));

    in.channel = "\"broadcast\"";
    in.channel_len = strlen(in.channel);
    lpg_test_round_trip(&in, buf, sizeof(buf));

    /* unicode in every field, and a NUL inside a string */
    in.database = "b\xc3\xa4se";
    in.database_len = strlen(in.database);
    in.channel = "[\"b\xc3\xa4se\",\"\xe6\xbc\xa2\xe5\xad\x97\",7]";
    in.channel_len = strlen(in.channel);
    in.message = "{\"a\":\"\\u0000\"}\0tail";
    in.message_len = 20;
    lpg_test_round_trip(&in, buf, sizeof(buf));

    /* every integer width, in every integer field */
    for (i = 0; i < LPG_NELEMS(lpg_test_ints); i++) {
        in.id = lpg_test_ints[i];
        in.create_us = lpg_test_ints[LPG_NELEMS(lpg_test_ints) - 1 - i];
        in.notify_us = lpg_test_ints[(i + 5) % LPG_NELEMS(lpg_test_ints)];
        lpg_test_round_trip(&in, buf, sizeof(buf));
    }
}


static void
test_empty_strings(void **state)
{
    char         buf[64];
    size_t       len;
    lpg_record_t in, out;

    LPG_UNUSED(state);

    memset(&in, 0, sizeof(in));
    in.database = "";
    in.channel = "";
    in.message = "";
    lpg_test_round_trip(&in, buf, sizeof(buf));

    /* NULL with a zero length is an empty string too */
    memset(&in, 0, sizeof(in));
    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "\x96\x00\xa0\xa0\xa0\x00\x00", 7);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    assert_int_equal(out.database_len + out.channel_len + out.message_len, 0);
}


/* the master's reset marker: an empty channel, the new cursor as id */
static void
test_reset_marker(void **state)
{
    char         buf[64];
    size_t       len;
    lpg_record_t in, out;

    LPG_UNUSED(state);

    memset(&in, 0, sizeof(in));
    in.id = 0;
    in.database = "db1";
    in.database_len = 3;
    in.channel = "";
    in.message = "";
    in.notify_us = 123456789;

    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    assert_true(lpg_record_is_reset(&out));
    assert_int_equal(out.id, 0);
    assert_int_equal(out.database_len, 3);
    assert_memory_equal(out.database, "db1", 3);

    /* a notification's channel is JSON text, never empty */
    in.channel = "\"c\"";
    in.channel_len = 3;
    in.message = "1";
    in.message_len = 1;
    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    assert_false(lpg_record_is_reset(&out));
}


static void
test_long_strings(void **state)
{
    char        *big, *buf;
    size_t       i, cap;
    lpg_record_t in;

    /* every string header: fixstr, str8, str16, str32 and their edges */
    static const size_t sizes[] = { 31, 32, 255, 256, 65535, 65536, 100000 };

    LPG_UNUSED(state);

    big = malloc(100000);
    cap = 3 * 100000 + 64;
    buf = malloc(cap);
    assert_non_null(big);
    assert_non_null(buf);

    for (i = 0; i < 100000; i++) {
        big[i] = (char) ('a' + i % 26);
    }

    lpg_test_sample(&in);

    for (i = 0; i < LPG_NELEMS(sizes); i++) {
        in.message = big;
        in.message_len = sizes[i];
        lpg_test_round_trip(&in, buf, cap);

        in.channel = big;
        in.channel_len = sizes[LPG_NELEMS(sizes) - 1 - i];
        in.database = big + 1;
        in.database_len = sizes[i] - 1;
        lpg_test_round_trip(&in, buf, cap);
    }

    free(big);
    free(buf);
}


static void
test_buffer_too_small(void **state)
{
    char         buf[512], *exact;
    size_t       len, n, got;
    lpg_record_t in;

    LPG_UNUSED(state);

    lpg_test_sample(&in);
    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);

    /* every capacity below the size fails, without writing past it */
    for (n = 0; n < len; n++) {
        exact = malloc(n > 0 ? n : 1);
        assert_non_null(exact);
        assert_int_equal(lpg_record_encode(&in, exact, n, &got), LPG_ERROR);
        free(exact);
    }

    assert_int_equal(lpg_record_encode(&in, NULL, 0, &got), LPG_ERROR);

    /* the exact size is enough */
    exact = malloc(len);
    assert_non_null(exact);
    assert_int_equal(lpg_record_encode(&in, exact, len, &got), LPG_OK);
    assert_int_equal(got, len);
    assert_memory_equal(exact, buf, len);
    free(exact);
}


static void
test_truncated_and_trailing(void **state)
{
    char         buf[512];
    size_t       len, n, i;
    lpg_record_t in, out;

    LPG_UNUSED(state);

    lpg_test_sample(&in);

    for (i = 0; i < LPG_NELEMS(lpg_test_ints); i++) {
        in.id = lpg_test_ints[i];
        in.notify_us = lpg_test_ints[i];
        assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len),
                         LPG_OK);

        /* every truncation fails cleanly, the empty input included */
        for (n = 0; n < len; n++) {
            assert_int_equal(lpg_test_decode(buf, n, &out), LPG_ERROR);
        }

        assert_int_equal(lpg_record_decode(NULL, 0, &out), LPG_ERROR);
        assert_int_equal(lpg_test_decode(buf, len, &out), LPG_OK);

        /* so does any trailing byte */
        buf[len] = 0;
        assert_int_equal(lpg_test_decode(buf, len + 1, &out), LPG_ERROR);
        buf[len] = (char) 0xc0;
        assert_int_equal(lpg_test_decode(buf, len + 1, &out), LPG_ERROR);
    }
}


/* the strings "d", "c" and "m" */
#define LPG_TEST_DCM "\xa1\x64\xa1\x63\xa1\x6d"

/* decoding a literal msgpack input fails */
#define LPG_TEST_BAD(s)                                                        \
    assert_int_equal(lpg_test_decode(s, sizeof(s) - 1, &out), LPG_ERROR)


static void
test_wrong_shapes(void **state)
{
    lpg_record_t out;

    LPG_UNUSED(state);

    /* a good one, for reference */
    assert_int_equal(
        lpg_record_decode("\x96\x01" LPG_TEST_DCM "\x02\x03", 10, &out),
        LPG_OK);
    assert_int_equal(out.id, 1);
    assert_int_equal(out.create_us, 2);
    assert_int_equal(out.notify_us, 3);
    assert_memory_equal(out.message, "m", 1);

    /* arrays of other lengths, other containers, scalars */
    LPG_TEST_BAD("\x90");
    LPG_TEST_BAD("\x95\x01" LPG_TEST_DCM "\x02");
    LPG_TEST_BAD("\x97\x01" LPG_TEST_DCM "\x02\x03\x04");
    LPG_TEST_BAD("\x93\x01\x02\x03");
    LPG_TEST_BAD("\x86\x01" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\xc0");
    LPG_TEST_BAD("\xc1");
    LPG_TEST_BAD("\x01");
    LPG_TEST_BAD("\xa3\x61\x62\x63");

    /* array 16 and 32 headers are valid msgpack but not canonical */
    LPG_TEST_BAD("\xdc\x00\x06\x01" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\xdd\x00\x00\x00\x06\x01" LPG_TEST_DCM "\x02\x03");

    /* huge container headers allocate nothing */
    LPG_TEST_BAD("\xdd\xff\xff\xff\xff");
    LPG_TEST_BAD("\x96\xdd\xff\xff\xff\xff");
    LPG_TEST_BAD("\x96\x01\xdf\xff\xff\xff\xff");

    /* id: string, nil, bool, float, double, uint64 over INT64_MAX */
    LPG_TEST_BAD("\x96\xa1\x31" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\x96\xc0" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\x96\xc3" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\x96\xca\x3f\x80\x00\x00" LPG_TEST_DCM "\x02\x03");
    LPG_TEST_BAD("\x96\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00" LPG_TEST_DCM
                 "\x02\x03");
    LPG_TEST_BAD("\x96\xcf\x80\x00\x00\x00\x00\x00\x00\x00" LPG_TEST_DCM
                 "\x02\x03");

    /* strings: an int, bin 8, nil, an array, ext */
    LPG_TEST_BAD("\x96\x01\x05\xa1\x63\xa1\x6d\x02\x03");
    LPG_TEST_BAD("\x96\x01\xa1\x64\xc4\x01\x63\xa1\x6d\x02\x03");
    LPG_TEST_BAD("\x96\x01\xa1\x64\xa1\x63\xc0\x02\x03");
    LPG_TEST_BAD("\x96\x01\xa1\x64\xa1\x63\x91\xa1\x6d\x02\x03");
    LPG_TEST_BAD("\x96\x01\xa1\x64\xa1\x63\xd4\x01\x01\x02\x03");

    /* create_us and notify_us: a double (the other possible time type),
     * a string */
    LPG_TEST_BAD("\x96\x01" LPG_TEST_DCM
                 "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\x03");
    LPG_TEST_BAD("\x96\x01" LPG_TEST_DCM "\x02\xa1\x33");

    /* string lengths past the end, by one and by a lot */
    LPG_TEST_BAD("\x96\x01\xa2\x64");
    LPG_TEST_BAD("\x96\x01\xd9\x05\x64\x64");
    LPG_TEST_BAD("\x96\x01\xda\xff\xff\x64");
    LPG_TEST_BAD("\x96\x01\xdb\xff\xff\xff\xff\x64");
    LPG_TEST_BAD("\x96\x01\xdb\xff\xff\xff");
    LPG_TEST_BAD("\x96\xd3\x00\x00\x00");
}


/* xorshift, so that the garbage is the same on every run */
static uint64_t
lpg_test_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;

    return *x;
}


static void
test_garbage(void **state)
{
    int          rc;
    char         buf[512], *in;
    size_t       len, n, i, j;
    uint64_t     x = 0x2545f4914f6cdd1dull;
    lpg_record_t rec, out;

    LPG_UNUSED(state);

    /* random bytes of random lengths, half of them starting like a record
     * (nothing to assert but that nothing crashes or reads too far) */
    in = malloc(300);
    assert_non_null(in);

    for (i = 0; i < 200000; i++) {
        n = lpg_test_rand(&x) % 300;
        for (j = 0; j < n; j++) {
            in[j] = (char) lpg_test_rand(&x);
        }

        if (n > 0 && i % 2 == 0) {
            in[0] = (char) 0x96;
        }

        rc = lpg_test_decode(in, n, &out);
        assert_true(rc == LPG_OK || rc == LPG_ERROR);
    }

    free(in);

    /* every single-byte change of a valid record: if it still decodes, it
     * re-encodes to a record that decodes the same (not always to the same
     * bytes: an integer may have been packed wider than needed) */
    lpg_test_sample(&rec);
    assert_int_equal(lpg_record_encode(&rec, buf, sizeof(buf), &len), LPG_OK);

    for (i = 0; i < len; i++) {
        char saved = buf[i];

        for (j = 0; j < 256; j++) {
            char         again[512];
            size_t       alen;
            lpg_record_t back;

            buf[i] = (char) j;

            if (lpg_test_decode(buf, len, &out) != LPG_OK) {
                continue;
            }

            assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
            assert_int_equal(
                lpg_record_encode(&out, again, sizeof(again), &alen), LPG_OK);
            assert_true(alen <= len);
            assert_int_equal(lpg_record_decode(again, alen, &back), LPG_OK);
            lpg_test_same(&out, &back);
        }

        buf[i] = saved;
    }
}


/* msgpack-c packs, we decode; we encode, msgpack-c unpacks */
static void
test_msgpack_interop(void **state)
{
    char             buf[512];
    size_t           len, off;
    lpg_record_t     in, out;
    msgpack_packer   pk;
    msgpack_object  *o;
    msgpack_sbuffer  sb;
    msgpack_unpacked u;

    LPG_UNUSED(state);

    lpg_test_sample(&in);
    in.id = -5;
    in.create_us = INT64_MAX;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_array(&pk, 6), 0);
    assert_int_equal(msgpack_pack_int64(&pk, in.id), 0);
    assert_int_equal(
        msgpack_pack_str_with_body(&pk, in.database, in.database_len), 0);
    assert_int_equal(
        msgpack_pack_str_with_body(&pk, in.channel, in.channel_len), 0);
    assert_int_equal(
        msgpack_pack_str_with_body(&pk, in.message, in.message_len), 0);
    assert_int_equal(msgpack_pack_int64(&pk, in.create_us), 0);
    assert_int_equal(msgpack_pack_int64(&pk, in.notify_us), 0);

    assert_int_equal(lpg_test_decode(sb.data, sb.size, &out), LPG_OK);
    assert_int_equal(lpg_record_decode(sb.data, sb.size, &out), LPG_OK);
    lpg_test_same(&in, &out);
    msgpack_sbuffer_destroy(&sb);

    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);

    msgpack_unpacked_init(&u);
    off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);

    o = &u.data;
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 6);
    o = o->via.array.ptr;
    assert_int_equal(o[0].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_true(o[0].via.i64 == -5);
    assert_int_equal(o[2].type, MSGPACK_OBJECT_STR);
    assert_int_equal(o[2].via.str.size, in.channel_len);
    assert_memory_equal(o[2].via.str.ptr, in.channel, in.channel_len);
    assert_int_equal(o[4].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(o[4].via.u64 == INT64_MAX);

    msgpack_unpacked_destroy(&u);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_strings),
        cmocka_unit_test(test_reset_marker),
        cmocka_unit_test(test_long_strings),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_msgpack_interop),
    };

    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
