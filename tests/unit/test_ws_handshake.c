/*
 * SPDX-License-Identifier: MIT
 *
 * test_ws_handshake.c: the answers to a WebSocket upgrade request: the
 * RFC 6455 sample key, HTTP/1.0, 426, Odoo's 400 texts for missing
 * headers, Upgrade, Connection and the key, and the request line.
 */

#include "lpg_ws_handshake.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


static void
t_upgrade(lpg_ws_upgrade_t *r)
{
    memset(r, 0, sizeof(*r));
    r->get = true;
    r->http_major = 1;
    r->http_minor = 1;
#define T_SET(f, v)                                                            \
    r->f = v;                                                                  \
    r->f##_len = strlen(v)
    T_SET(host, "127.0.0.1:8072");
    T_SET(origin, "http://127.0.0.1:8069");
    T_SET(upgrade, "websocket");
    T_SET(connection, "Upgrade");
    T_SET(key, "dGhlIHNhbXBsZSBub25jZQ==");
    T_SET(version, "13");
}


static void
t_refused(const lpg_ws_upgrade_t *r, int status, const char *body)
{
    lpg_ws_answer_t a;

    assert_int_equal(lpg_ws_handshake(r, &a), LPG_ERROR);
    assert_int_equal(a.status, status);
    assert_string_equal(a.body, body);
    assert_int_equal(a.body_len, strlen(body));
}


static void
test_handshake(void **state)
{
    lpg_ws_upgrade_t rr, *r = &rr;
    lpg_ws_answer_t  a;
    char             head[512];
    size_t           n;

    /* the RFC 6455 sample */
    t_upgrade(r);
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_OK);
    assert_int_equal(a.status, 101);
    assert_string_equal(a.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    n = lpg_ws_handshake_head(&a, "Set-Cookie: session_id=x\r\n", head,
                              sizeof(head));
    assert_int_equal(n, strlen(head));
    assert_string_equal(head,
                        "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: "
                        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                        "Set-Cookie: session_id=x\r\n"
                        "\r\n");
    assert_int_equal(lpg_ws_handshake_head(&a, NULL, head, 40), 0);

    /* HTTP/1.0 as nginx sends it with Odoo's documented block */
    t_upgrade(r);
    r->http_minor = 0;
    T_SET(connection, "upgrade");
    T_SET(upgrade, "WebSocket");
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_OK);

    t_upgrade(r);
    T_SET(connection, "keep-alive, Upgrade");
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_OK);

    /* 426 with the version we speak */
    t_upgrade(r);
    T_SET(version, "8");
    t_refused(r, 426, "Upgrade required");
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_ERROR);
    assert_string_equal(a.headers, "Sec-WebSocket-Version: 13\r\n");

    /* missing or empty headers, in Odoo's order */
    t_upgrade(r);
    r->origin = NULL;
    t_refused(r, 400, "Empty or missing header(s): origin");
    r->origin_len = 0;
    r->origin = "";
    t_refused(r, 400, "Empty or missing header(s): origin");
    r->key = NULL;
    r->host = NULL;
    t_refused(r, 400,
              "Empty or missing header(s): host, sec-websocket-key, origin");
    memset(r, 0, sizeof(*r));
    r->get = true;
    r->http_major = 1;
    t_refused(r, 400,
              "Empty or missing header(s): connection, host, "
              "sec-websocket-key, sec-websocket-version, upgrade, origin");

    t_upgrade(r);
    T_SET(upgrade, "foo");
    t_refused(r, 400, "Invalid upgrade header");

    t_upgrade(r);
    T_SET(connection, "keep-alive");
    t_refused(r, 400, "Invalid connection header");
    T_SET(connection, "upgraded");
    t_refused(r, 400, "Invalid connection header");

    /* keys: 12 bytes, not base64, no padding, 17 bytes */
    t_upgrade(r);
    T_SET(key, "AAAAAAAAAAAAAAAA");
    t_refused(r, 400, "Sec-WebSocket-Key should be of length 16 once decoded");
    T_SET(key, "AAAAAAAAAAAAAAAAAAAAA*==");
    t_refused(r, 400, "Sec-WebSocket-Key should be b64 encoded");
    T_SET(key, "AAAAAAAAAAAAAAAAAAAAAA");
    t_refused(r, 400, "Sec-WebSocket-Key should be b64 encoded");
    T_SET(key, "AAAAAAAAAAAAAAAAAAAAAAA=");
    t_refused(r, 400, "Sec-WebSocket-Key should be of length 16 once decoded");
    T_SET(key, "AAAAAAAAAAAAAAAAAAAAAA==");
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_OK);

    /* the request line */
    t_upgrade(r);
    r->get = false;
    t_refused(r, 405, "Method not allowed");
    assert_int_equal(lpg_ws_handshake(r, &a), LPG_ERROR);
    assert_string_equal(a.headers, "Allow: GET\r\n");
    t_upgrade(r);
    r->http_major = 2;
    t_refused(r, 505, "HTTP version not supported");
#undef T_SET
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
    };

    return cmocka_run_group_tests_name("ws_handshake", tests, NULL, NULL);
}
