/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_ws_handshake.c: libFuzzer harness of the WebSocket upgrade check
 * (ws/lpg_ws_handshake.c).  The input is split at '\n' into the request's
 * fields in this order: a flags byte line (GET, HTTP minor and major),
 * Host, Origin, Upgrade, Connection, Sec-WebSocket-Key,
 * Sec-WebSocket-Version; a missing line is a missing header.  Checked: the
 * answer is one of the known statuses, an error has a body, a 101 has a
 * 28-character accept and a head that fits.
 */

#include "lpg_ws_handshake.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char      *p, *end, *nl;
    const char      *field[7];
    size_t           len[7], i;
    char             head[512];
    lpg_ws_upgrade_t r;
    lpg_ws_answer_t  a;

    memset(field, 0, sizeof(field));
    memset(len, 0, sizeof(len));

    p = (const char *) data;
    end = p + size;

    for (i = 0; i < 7 && p < end; i++) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL) {
            nl = end;
        }

        field[i] = p;
        len[i] = nl - p;
        p = nl + 1;
    }

    memset(&r, 0, sizeof(r));

    if (field[0] != NULL && len[0] > 0) {
        r.get = (field[0][0] & 1) == 0;
        r.http_major = 1 + ((field[0][0] >> 1) & 1);
        r.http_minor = (field[0][0] >> 2) & 1;

    } else {
        r.get = true;
        r.http_major = 1;
        r.http_minor = 1;
    }

    r.host = field[1];
    r.host_len = len[1];
    r.origin = field[2];
    r.origin_len = len[2];
    r.upgrade = field[3];
    r.upgrade_len = len[3];
    r.connection = field[4];
    r.connection_len = len[4];
    r.key = field[5];
    r.key_len = len[5];
    r.version = field[6];
    r.version_len = len[6];

    if (lpg_ws_handshake(&r, &a) == LPG_OK) {
        if (a.status != 101 || strlen(a.accept) != LPG_WS_ACCEPT_LEN
            || lpg_ws_handshake_head(&a, NULL, head, sizeof(head)) == 0)
        {
            abort();
        }

        return 0;
    }

    if ((a.status != 400 && a.status != 405 && a.status != 426
         && a.status != 505)
        || a.body == NULL || a.body_len != strlen(a.body))
    {
        abort();
    }

    return 0;
}
