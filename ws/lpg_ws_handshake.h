/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ws_handshake.h: the RFC 6455 opening handshake of GET /websocket, as
 * Odoo 16/17 checks it (shared/reference/odoo-websocket.md section 1).
 *
 * It validates the request line and the upgrade headers that the HTTP
 * layer parsed, and gives either the exact error answer (status, extra
 * header lines, body) or the 101 answer head with Sec-WebSocket-Accept.
 * It does no I/O, reads no session and never looks at the query string
 * (Odoo's `?version=` is the router's to ignore).
 */

#ifndef LPG_WS_HANDSHAKE_H
#define LPG_WS_HANDSHAKE_H


#include "lpg_core.h"


/* base64(SHA-1(key + GUID)): 28 characters */
#define LPG_WS_ACCEPT_LEN 28


/*
 * What the HTTP layer saw.  Each header is a span borrowed from the
 * request (value without the name, leading and trailing blanks already
 * stripped by the parser); NULL means the header was absent, and an empty
 * value counts as absent, as Odoo's "Empty or missing header(s)" says.
 */
typedef struct {
    bool        get; /* method is GET */
    unsigned    http_major;
    unsigned    http_minor;
    const char *host;
    size_t      host_len;
    const char *origin;
    size_t      origin_len;
    const char *upgrade;
    size_t      upgrade_len;
    const char *connection;
    size_t      connection_len;
    const char *key; /* Sec-WebSocket-Key */
    size_t      key_len;
    const char *version; /* Sec-WebSocket-Version */
    size_t      version_len;
    bool        origin_optional; /* Odoo requires Origin; RFC 6455 not */
} lpg_ws_upgrade_t;


/* the answer; it owns every byte it points to (no allocation): body may
 * point into text, so use it where lpg_ws_handshake() filled it */
typedef struct {
    int         status;  /* 101, or 400 405 426 505 */
    const char *headers; /* extra header lines ending in "\r\n", or NULL */
    const char *body; /* text/plain error body, NUL-terminated; NULL on 101 */
    size_t      body_len;
    char        accept[LPG_WS_ACCEPT_LEN + 1]; /* on 101 */
    char        text[128]; /* holds the "missing header(s)" body */
} lpg_ws_answer_t;


/*
 * Checks an upgrade request in Odoo's order: the request line (GET,
 * HTTP/1.x: HTTP/1.0 is accepted as nginx sends it), then every required
 * header present (400 "Empty or missing header(s): a, b"), Upgrade
 * (400 "Invalid upgrade header"), Connection (400 "Invalid connection
 * header"), Sec-WebSocket-Version 13 (426 with "Sec-WebSocket-Version: 13",
 * where Odoo's stack answers 500 by a bug), then the key (400 "...should be
 * b64 encoded" / "...should be of length 16 once decoded").
 * Returns LPG_OK with ans->status 101 and ans->accept set, or LPG_ERROR
 * with the error answer in ans.
 */
int lpg_ws_handshake(const lpg_ws_upgrade_t *req, lpg_ws_answer_t *ans);

/* base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) into out,
 * which holds LPG_WS_ACCEPT_LEN + 1 bytes (NUL-terminated) */
void lpg_ws_accept_key(const char *key, size_t key_len, char *out);

/*
 * Writes the complete 101 answer head of a successful handshake into buf:
 * status line, Upgrade, Connection, Sec-WebSocket-Accept, then extra
 * (header lines each ending in "\r\n", e.g. Set-Cookie; may be NULL), then
 * the empty line.  No extension and no subprotocol are ever accepted.
 * Returns its length, or 0 when it does not fit in size bytes.
 */
size_t lpg_ws_handshake_head(const lpg_ws_answer_t *ans, const char *extra,
                             char *buf, size_t size) LPG_MUSTCHECK;


#endif /* LPG_WS_HANDSHAKE_H */
