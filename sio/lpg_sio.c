/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sio.c: engine.io and Socket.IO text packets (lpg_sio.h).
 *
 * Decoding follows socket.io-parser 4's rules: a type digit, a namespace
 * when the next byte is '/' (up to ','), an ack id when digits follow,
 * then a JSON payload whose shape depends on the type (CONNECT: an object
 * or nothing; DISCONNECT: nothing; EVENT: a non-empty array whose first
 * element names an event that is not a reserved one; ACK: an array;
 * CONNECT_ERROR: an object or a string).  Anything else is refused with a
 * reason, never guessed at.
 */

#include "lpg_sio.h"

#include <stdio.h>
#include <string.h>


static int lpg_sio_payload(lpg_sio_packet_t *pkt, const char **why);


static const char *const lpg_sio_reserved[] = {
    "connect",       "connect_error", "disconnect",
    "disconnecting", "newListener",   "removeListener",
};


int
lpg_eio_decode(const char *p, size_t len, lpg_eio_packet_t *pkt,
               const char **why)
{
    if (len == 0) {
        *why = "empty packet";
        return LPG_ERROR;
    }

    if (p[0] == 'b') {
        *why = "binary packets are not supported";
        return LPG_ERROR;
    }

    if (p[0] < '0' || p[0] > '6') {
        *why = "unknown packet type";
        return LPG_ERROR;
    }

    pkt->type = p[0] - '0';
    pkt->data = p + 1;
    pkt->len = len - 1;

    return LPG_OK;
}


int
lpg_eio_payload_next(const char *p, size_t len, size_t *off,
                     lpg_eio_packet_t *pkt, const char **why)
{
    const char *start, *end;

    if (len == 0) {
        *why = "empty payload";
        return LPG_ERROR;
    }

    if (*off > len) {
        return LPG_DONE;
    }

    /* a payload that ends with a separator announces an empty packet:
     * refused by the decode */
    start = p + *off;
    end = memchr(start, LPG_EIO_SEP, len - *off);
    if (end == NULL) {
        end = p + len;
    }

    *off = (size_t) (end - p) + 1;

    return lpg_eio_decode(start, end - start, pkt, why);
}


bool
lpg_sio_nsp_valid(const char *nsp, size_t len)
{
    size_t i;

    if (len == 0 || len > LPG_SIO_NSP_MAX || nsp[0] != '/') {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (nsp[i] < 0x21 || nsp[i] > 0x7e || nsp[i] == ',') {
            return false;
        }
    }

    return true;
}


int
lpg_sio_decode(const char *p, size_t len, lpg_sio_packet_t *pkt,
               const char **why)
{
    size_t       i, start;
    json_error_t e;

    pkt->nsp = "/";
    pkt->nsp_len = 1;
    pkt->ack = -1;
    pkt->data = NULL;

    if (len == 0 || p[0] < '0' || p[0] > '6') {
        *why = "unknown packet type";
        return LPG_ERROR;
    }

    pkt->type = p[0] - '0';
    i = 1;

    if (pkt->type == LPG_SIO_BINARY_EVENT || pkt->type == LPG_SIO_BINARY_ACK) {
        *why = "binary packets are not supported";
        return LPG_ERROR;
    }

    if (i < len && p[i] == '/') {
        start = i;
        while (i < len && p[i] != ',') {
            i++;
        }

        if (!lpg_sio_nsp_valid(p + start, i - start)) {
            *why = "invalid namespace";
            return LPG_ERROR;
        }

        pkt->nsp = p + start;
        pkt->nsp_len = i - start;

        if (i < len) {
            i++; /* the ',' */
        }
    }

    if (i < len && p[i] >= '0' && p[i] <= '9') {
        pkt->ack = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (pkt->ack > LPG_SIO_ACK_MAX / 10) {
                *why = "ack id too large";
                return LPG_ERROR;
            }

            pkt->ack = pkt->ack * 10 + (p[i] - '0');
            i++;
        }
    }

    if (i < len) {
        pkt->data = json_loadb(p + i, len - i, JSON_DECODE_ANY, &e);
        if (pkt->data == NULL) {
            *why = "invalid payload: not JSON";
            return LPG_ERROR;
        }
    }

    if (lpg_sio_payload(pkt, why) != LPG_OK) {
        json_decref(pkt->data);
        pkt->data = NULL;
        return LPG_ERROR;
    }

    return LPG_OK;
}


/* socket.io-parser's isPayloadValid */
static int
lpg_sio_payload(lpg_sio_packet_t *pkt, const char **why)
{
    size_t      i;
    json_t     *d = pkt->data, *name;
    const char *s;

    switch (pkt->type) {
    case LPG_SIO_CONNECT:
        if (d != NULL && !json_is_object(d)) {
            *why = "invalid payload: CONNECT takes an object";
            return LPG_ERROR;
        }
        break;

    case LPG_SIO_DISCONNECT:
        if (d != NULL) {
            *why = "invalid payload: DISCONNECT takes none";
            return LPG_ERROR;
        }
        break;

    case LPG_SIO_CONNECT_ERROR:
        if (!json_is_object(d) && !json_is_string(d)) {
            *why = "invalid payload: CONNECT_ERROR takes an object";
            return LPG_ERROR;
        }
        break;

    case LPG_SIO_ACK:
        if (!json_is_array(d)) {
            *why = "invalid payload: ACK takes an array";
            return LPG_ERROR;
        }
        break;

    default: /* LPG_SIO_EVENT */
        if (!json_is_array(d) || json_array_size(d) == 0) {
            *why = "invalid payload: EVENT takes a non-empty array";
            return LPG_ERROR;
        }

        name = json_array_get(d, 0);
        if (json_is_integer(name)) {
            break;
        }

        if (!json_is_string(name)) {
            *why = "invalid payload: an event name is a string";
            return LPG_ERROR;
        }

        s = json_string_value(name);
        for (i = 0; i < LPG_NELEMS(lpg_sio_reserved); i++) {
            if (strcmp(s, lpg_sio_reserved[i]) == 0) {
                *why = "invalid payload: a reserved event name";
                return LPG_ERROR;
            }
        }
        break;
    }

    return LPG_OK;
}


void
lpg_sio_packet_free(lpg_sio_packet_t *pkt)
{
    json_decref(pkt->data);
    pkt->data = NULL;
}


int
lpg_sio_encode(lpg_buf_t *b, int type, const char *nsp, size_t nsp_len,
               int64_t ack, const char *json, size_t len)
{
    char head[2];
    char num[24];
    int  n;

    head[0] = '4';
    head[1] = (char) ('0' + type);

    if (lpg_buf_append(b, head, 2) != LPG_OK) {
        return LPG_ERROR;
    }

    if (!(nsp_len == 1 && nsp[0] == '/')
        && (lpg_buf_append(b, nsp, nsp_len) != LPG_OK
            || lpg_buf_append(b, ",", 1) != LPG_OK))
    {
        return LPG_ERROR;
    }

    if (ack >= 0) {
        n = snprintf(num, sizeof(num), "%lld", (long long) ack);
        if (lpg_buf_append(b, num, n) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    if (len > 0 && lpg_buf_append(b, json, len) != LPG_OK) {
        return LPG_ERROR;
    }

    return LPG_OK;
}


int
lpg_sio_encode_json(lpg_buf_t *b, int type, const char *nsp, size_t nsp_len,
                    int64_t ack, const json_t *data)
{
    int       rc;
    lpg_buf_t j;

    memset(&j, 0, sizeof(j));

    if (data != NULL && lpg_json_dump(&j, data) != LPG_OK) {
        lpg_buf_free(&j);
        return LPG_ERROR;
    }

    rc = lpg_sio_encode(b, type, nsp, nsp_len, ack, j.data, j.len);
    lpg_buf_free(&j);

    return rc;
}
