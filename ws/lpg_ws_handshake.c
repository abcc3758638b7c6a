/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws_handshake.c: validation of a WebSocket upgrade request and its
 * answers, in the order and with the texts of Odoo 16/17's
 * WebsocketConnectionHandler (bus/websocket.py).  SHA-1 and base64 come
 * from nettle.
 *
 * Differences from Odoo, on purpose: a wrong Sec-WebSocket-Version gets a
 * real 426 (Odoo's stack answers 500 by a bug), the method must be GET
 * (RFC 6455 4.1; Odoo upgrades any method), Connection is read as a comma
 * list of tokens (Odoo looks for the substring "upgrade"), and the error
 * bodies are plain text where Werkzeug wraps them in a small HTML page.
 */

#include "lpg_ws_handshake.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>


#define LPG_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


static bool lpg_ws_handshake_token(const char *list, size_t len,
                                   const char *token);
static bool lpg_ws_handshake_key_ok(const char *key, size_t len,
                                    size_t *decoded);
static int  lpg_ws_handshake_fail(lpg_ws_answer_t *ans, int status,
                                  const char *body);


int
lpg_ws_handshake(const lpg_ws_upgrade_t *req, lpg_ws_answer_t *ans)
{
    size_t n, decoded;
    size_t i;
    bool   missing[6];
    char  *p;

    static const char *names[6] = {
        "connection", "host",  "sec-websocket-key", "sec-websocket-version",
        "upgrade",    "origin"
    };

    memset(ans, 0, sizeof(*ans));

    if (req->http_major != 1) {
        return lpg_ws_handshake_fail(ans, 505, "HTTP version not supported");
    }

    if (!req->get) {
        lpg_ws_handshake_fail(ans, 405, "Method not allowed");
        ans->headers = "Allow: GET\r\n";
        return LPG_ERROR;
    }

    /* Odoo's _REQUIRED_HANDSHAKE_HEADERS, in the reference's order */
    missing[0] = req->connection == NULL || req->connection_len == 0;
    missing[1] = req->host == NULL || req->host_len == 0;
    missing[2] = req->key == NULL || req->key_len == 0;
    missing[3] = req->version == NULL || req->version_len == 0;
    missing[4] = req->upgrade == NULL || req->upgrade_len == 0;
    missing[5] =
        !req->origin_optional && (req->origin == NULL || req->origin_len == 0);

    p = ans->text;
    n = 0;

    for (i = 0; i < LPG_NELEMS(names); i++) {
        if (!missing[i]) {
            continue;
        }

        if (n == 0) {
            p += sprintf(p, "Empty or missing header(s): %s", names[i]);

        } else {
            p += sprintf(p, ", %s", names[i]);
        }

        n++;
    }

    if (n > 0) {
        lpg_ws_handshake_fail(ans, 400, ans->text);
        return LPG_ERROR;
    }

    if (req->upgrade_len != 9 || strncasecmp(req->upgrade, "websocket", 9) != 0)
    {
        return lpg_ws_handshake_fail(ans, 400, "Invalid upgrade header");
    }

    if (!lpg_ws_handshake_token(req->connection, req->connection_len,
                                "upgrade")) {
        return lpg_ws_handshake_fail(ans, 400, "Invalid connection header");
    }

    if (req->version_len != 2 || memcmp(req->version, "13", 2) != 0) {
        lpg_ws_handshake_fail(ans, 426, "Upgrade required");
        ans->headers = "Sec-WebSocket-Version: 13\r\n";
        return LPG_ERROR;
    }

    if (!lpg_ws_handshake_key_ok(req->key, req->key_len, &decoded)) {
        return lpg_ws_handshake_fail(ans, 400,
                                     "Sec-WebSocket-Key should be b64 encoded");
    }

    if (decoded != 16) {
        return lpg_ws_handshake_fail(
            ans, 400, "Sec-WebSocket-Key should be of length 16 once decoded");
    }

    ans->status = 101;
    lpg_ws_accept_key(req->key, req->key_len, ans->accept);

    return LPG_OK;
}


void
lpg_ws_accept_key(const char *key, size_t key_len, char *out)
{
    uint8_t         digest[SHA1_DIGEST_SIZE];
    struct sha1_ctx sha;

    sha1_init(&sha);
    sha1_update(&sha, key_len, (const uint8_t *) key);
    sha1_update(&sha, sizeof(LPG_WS_GUID) - 1, (const uint8_t *) LPG_WS_GUID);
    sha1_digest(&sha, SHA1_DIGEST_SIZE, digest);

    base64_encode_raw(out, SHA1_DIGEST_SIZE, digest);
    out[LPG_WS_ACCEPT_LEN] = '\0';
}


size_t
lpg_ws_handshake_head(const lpg_ws_answer_t *ans, const char *extra, char *buf,
                      size_t size)
{
    int n;

    n = snprintf(buf, size,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "%s\r\n",
                 ans->accept, extra != NULL ? extra : "");

    if (n < 0 || (size_t) n >= size) {
        return 0;
    }

    return (size_t) n;
}


/* a case-insensitive token of a comma-separated list (RFC 9110 5.6.1) */
static bool
lpg_ws_handshake_token(const char *list, size_t len, const char *token)
{
    size_t      tlen, b, e;
    const char *end, *p, *q;

    tlen = strlen(token);
    end = list + len;

    for (p = list; p < end; p = q + 1) {
        q = memchr(p, ',', end - p);
        if (q == NULL) {
            q = end;
        }

        b = 0;
        e = q - p;

        while (b < e && (p[b] == ' ' || p[b] == '\t')) {
            b++;
        }

        while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t')) {
            e--;
        }

        if (e - b == tlen && strncasecmp(p + b, token, tlen) == 0) {
            return true;
        }
    }

    return false;
}


/*
 * Python's base64.b64decode(key, validate=True): only the base64 alphabet,
 * then at most two '=' at the end, and padding that completes the last
 * quantum.  Gives the decoded length.
 */
static bool
lpg_ws_handshake_key_ok(const char *key, size_t len, size_t *decoded)
{
    size_t        n, pad;
    unsigned char c;

    for (n = 0; n < len; n++) {
        c = (unsigned char) key[n];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '+' || c == '/'))
        {
            break;
        }
    }

    for (pad = 0; n + pad < len && key[n + pad] == '='; pad++) {
        /* count */
    }

    if (n + pad != len || pad > 2) {
        return false;
    }

    switch (n % 4) {
    case 0:
        if (pad != 0) {
            return false;
        }
        break;
    case 2:
        if (pad != 2) {
            return false;
        }
        break;
    case 3:
        if (pad != 1) {
            return false;
        }
        break;
    default:
        return false;
    }

    *decoded = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);

    return true;
}


static int
lpg_ws_handshake_fail(lpg_ws_answer_t *ans, int status, const char *body)
{
    ans->status = status;
    ans->headers = NULL;
    ans->body = body;
    ans->body_len = strlen(body);

    return LPG_ERROR;
}
