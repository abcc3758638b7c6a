/*
 * SPDX-License-Identifier: MIT
 *
 * test_sio.c: the engine.io and Socket.IO packet codec: packet types,
 * polling payloads (0x1e), namespaces, ack ids, payload shapes as
 * socket.io-parser checks them, binary packets refused, and encoding
 * (the default namespace omitted, acks, JSON in Odoo's dump form).
 */

#include "lpg_sio.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


static void
test_eio_packet(void **state)
{
    const char      *why;
    lpg_eio_packet_t p;

    assert_int_equal(lpg_eio_decode("2probe", 6, &p, &why), LPG_OK);
    assert_int_equal(p.type, LPG_EIO_PING);
    assert_int_equal(p.len, 5);
    assert_memory_equal(p.data, "probe", 5);

    assert_int_equal(lpg_eio_decode("6", 1, &p, &why), LPG_OK);
    assert_int_equal(p.type, LPG_EIO_NOOP);
    assert_int_equal(p.len, 0);

    assert_int_equal(lpg_eio_decode("", 0, &p, &why), LPG_ERROR);
    assert_string_equal(why, "empty packet");
    assert_int_equal(lpg_eio_decode("7", 1, &p, &why), LPG_ERROR);
    assert_string_equal(why, "unknown packet type");
    assert_int_equal(lpg_eio_decode("bAAA", 4, &p, &why), LPG_ERROR);
    assert_string_equal(why, "binary packets are not supported");
}


static void
test_eio_payload(void **state)
{
    size_t           off = 0;
    const char      *why;
    const char       pl[] = "40\x1e"
                            "42[\"a\"]\x1e"
                            "3";
    lpg_eio_packet_t p;

    assert_int_equal(lpg_eio_payload_next(pl, sizeof(pl) - 1, &off, &p, &why),
                     LPG_OK);
    assert_int_equal(p.type, LPG_EIO_MESSAGE);
    assert_int_equal(p.len, 1);
    assert_int_equal(lpg_eio_payload_next(pl, sizeof(pl) - 1, &off, &p, &why),
                     LPG_OK);
    assert_int_equal(p.type, LPG_EIO_MESSAGE);
    assert_int_equal(p.len, 6);
    assert_memory_equal(p.data, "2[\"a\"]", 6);
    assert_int_equal(lpg_eio_payload_next(pl, sizeof(pl) - 1, &off, &p, &why),
                     LPG_OK);
    assert_int_equal(p.type, LPG_EIO_PONG);
    assert_int_equal(lpg_eio_payload_next(pl, sizeof(pl) - 1, &off, &p, &why),
                     LPG_DONE);

    /* an empty payload, an empty packet in the middle or at the end */
    off = 0;
    assert_int_equal(lpg_eio_payload_next("", 0, &off, &p, &why), LPG_ERROR);
    off = 0;
    assert_int_equal(lpg_eio_payload_next("3\x1e\x1e"
                                          "3",
                                          4, &off, &p, &why),
                     LPG_OK);
    assert_int_equal(lpg_eio_payload_next("3\x1e\x1e"
                                          "3",
                                          4, &off, &p, &why),
                     LPG_ERROR);
    off = 0;
    assert_int_equal(lpg_eio_payload_next("3\x1e", 2, &off, &p, &why), LPG_OK);
    assert_int_equal(lpg_eio_payload_next("3\x1e", 2, &off, &p, &why),
                     LPG_ERROR);
}


static void
t_decode(const char *text, int rc, lpg_sio_packet_t *p, const char **why)
{
    assert_int_equal(lpg_sio_decode(text, strlen(text), p, why), rc);
}


static void
test_sio_decode(void **state)
{
    const char      *why;
    lpg_sio_packet_t p;

    t_decode("0", LPG_OK, &p, &why);
    assert_int_equal(p.type, LPG_SIO_CONNECT);
    assert_int_equal(p.nsp_len, 1);
    assert_int_equal(p.ack, -1);
    assert_null(p.data);

    t_decode("0/chat,{\"last\":12}", LPG_OK, &p, &why);
    assert_int_equal(p.nsp_len, 5);
    assert_memory_equal(p.nsp, "/chat", 5);
    assert_int_equal(json_integer_value(json_object_get(p.data, "last")), 12);
    lpg_sio_packet_free(&p);

    t_decode("2/chat,17[\"subscribe\",[\"a\"]]", LPG_OK, &p, &why);
    assert_int_equal(p.type, LPG_SIO_EVENT);
    assert_int_equal(p.ack, 17);
    assert_string_equal(json_string_value(json_array_get(p.data, 0)),
                        "subscribe");
    lpg_sio_packet_free(&p);

    t_decode("25[\"x\"]", LPG_OK, &p, &why);
    assert_int_equal(p.ack, 5);
    assert_int_equal(p.nsp_len, 1);
    lpg_sio_packet_free(&p);

    /* a namespace without a payload: no ',' needed */
    t_decode("1/chat", LPG_OK, &p, &why);
    assert_int_equal(p.type, LPG_SIO_DISCONNECT);
    assert_int_equal(p.nsp_len, 5);

    t_decode("3/a,1[]", LPG_OK, &p, &why);
    assert_int_equal(p.type, LPG_SIO_ACK);
    lpg_sio_packet_free(&p);
}


static void
test_sio_refused(void **state)
{
    const char      *why;
    lpg_sio_packet_t p;

    t_decode("", LPG_ERROR, &p, &why);
    assert_string_equal(why, "unknown packet type");
    t_decode("9", LPG_ERROR, &p, &why);
    t_decode("51-[\"x\",{\"_placeholder\":true,\"num\":0}]", LPG_ERROR, &p,
             &why);
    assert_string_equal(why, "binary packets are not supported");
    t_decode("2[\"x\"", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid payload: not JSON");
    t_decode("2{}", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid payload: EVENT takes a non-empty array");
    t_decode("2[]", LPG_ERROR, &p, &why);
    t_decode("2[{}]", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid payload: an event name is a string");
    t_decode("2[\"connect\"]", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid payload: a reserved event name");
    t_decode("0[1]", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid payload: CONNECT takes an object");
    t_decode("1{}", LPG_ERROR, &p, &why);
    t_decode("3{}", LPG_ERROR, &p, &why);
    t_decode("2/a b,[\"x\"]", LPG_ERROR, &p, &why);
    assert_string_equal(why, "invalid namespace");
    t_decode("21234567890123456[\"x\"]", LPG_ERROR, &p, &why);
    assert_string_equal(why, "ack id too large");
}


static void
test_sio_encode(void **state)
{
    json_t   *j;
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    assert_int_equal(
        lpg_sio_encode(&b, LPG_SIO_CONNECT, "/", 1, -1, "{\"sid\":\"x\"}", 11),
        LPG_OK);
    assert_int_equal(b.len, 13);
    assert_memory_equal(b.data, "40{\"sid\":\"x\"}", 13);

    b.len = 0;
    j = json_pack("[{s:s}]", "n", "\xc3\xa9");
    assert_int_equal(lpg_sio_encode_json(&b, LPG_SIO_ACK, "/chat", 5, 12, j),
                     LPG_OK);
    json_decref(j);
    assert_int_equal(b.len, strlen("43/chat,12[{\"n\":\"\\u00e9\"}]"));
    assert_memory_equal(b.data, "43/chat,12[{\"n\":\"\\u00e9\"}]", b.len);

    b.len = 0;
    assert_int_equal(
        lpg_sio_encode(&b, LPG_SIO_DISCONNECT, "/x", 2, -1, NULL, 0), LPG_OK);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "41/x,", 5);

    lpg_buf_free(&b);

    assert_true(lpg_sio_nsp_valid("/", 1));
    assert_true(lpg_sio_nsp_valid("/a/b-c", 6));
    assert_false(lpg_sio_nsp_valid("a", 1));
    assert_false(lpg_sio_nsp_valid("/a,b", 4));
    assert_false(lpg_sio_nsp_valid("/\x01", 2));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eio_packet), cmocka_unit_test(test_eio_payload),
        cmocka_unit_test(test_sio_decode), cmocka_unit_test(test_sio_refused),
        cmocka_unit_test(test_sio_encode),
    };

    return cmocka_run_group_tests_name("sio", tests, NULL, NULL);
}
