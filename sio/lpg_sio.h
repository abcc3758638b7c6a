/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sio.h: the engine.io (protocol 4) and Socket.IO (protocol 5) text
 * packets, decoded and encoded; no I/O.
 *
 * An engine.io packet is a type digit ('0' open ... '6' noop) and its
 * data; an HTTP long-polling payload holds several, separated by 0x1e.  A
 * Socket.IO packet is the data of an engine.io message ('4'): a type
 * digit, an optional namespace ("/chat,"), an optional ack id (digits)
 * and a JSON payload, checked here as Socket.IO's parser checks it.
 * Binary packets (engine.io's 'b' base64, Socket.IO's 5 and 6) are
 * refused: lpgate's records are JSON text.
 */

#ifndef LPG_SIO_H
#define LPG_SIO_H


#include "lpg_core.h"
#include "lpg_json.h"

#include <jansson.h>


#define LPG_EIO_SEP     '\x1e' /* between the packets of a payload */
#define LPG_SIO_NSP_MAX 128    /* bytes of a namespace name */
#define LPG_SIO_ACK_MAX 999999999999999LL


/* engine.io packet types */
enum {
    LPG_EIO_OPEN = 0,
    LPG_EIO_CLOSE,
    LPG_EIO_PING,
    LPG_EIO_PONG,
    LPG_EIO_MESSAGE,
    LPG_EIO_UPGRADE,
    LPG_EIO_NOOP
};

/* Socket.IO packet types */
enum {
    LPG_SIO_CONNECT = 0,
    LPG_SIO_DISCONNECT,
    LPG_SIO_EVENT,
    LPG_SIO_ACK,
    LPG_SIO_CONNECT_ERROR,
    LPG_SIO_BINARY_EVENT,
    LPG_SIO_BINARY_ACK
};


/* one engine.io packet; data is borrowed from the decoded text */
typedef struct {
    int         type;
    const char *data;
    size_t      len;
} lpg_eio_packet_t;


/* one Socket.IO packet; nsp is borrowed from the decoded text, data is
 * owned (lpg_sio_packet_free) */
typedef struct {
    int         type;
    const char *nsp; /* "/" when the packet names none */
    size_t      nsp_len;
    int64_t     ack; /* -1: none */
    json_t     *data;
} lpg_sio_packet_t;


/* one engine.io text packet of len bytes: LPG_OK, else LPG_ERROR and
 * *why */
int lpg_eio_decode(const char *p, size_t len, lpg_eio_packet_t *pkt,
                   const char **why) LPG_MUSTCHECK;

/*
 * The next packet of a polling payload (p, len) from *off, which moves
 * past it: LPG_OK, LPG_DONE at the end, LPG_ERROR and *why on a bad
 * packet (an empty payload is one).
 */
int lpg_eio_payload_next(const char *p, size_t len, size_t *off,
                         lpg_eio_packet_t *pkt, const char **why) LPG_MUSTCHECK;

/* the data of an engine.io message: LPG_OK (pkt->data owned), else
 * LPG_ERROR and *why; pkt->nsp points into p even then when it was read */
int lpg_sio_decode(const char *p, size_t len, lpg_sio_packet_t *pkt,
                   const char **why) LPG_MUSTCHECK;

void lpg_sio_packet_free(lpg_sio_packet_t *pkt);

/* true when a namespace name is one lpgate serves: "/" then printable
 * ASCII without ',' , at most LPG_SIO_NSP_MAX bytes */
bool lpg_sio_nsp_valid(const char *nsp, size_t len);

/*
 * Appends the engine.io message of a Socket.IO packet to b: "4", the
 * type, "nsp," unless nsp is "/", the ack id when >= 0, then json (its
 * len bytes of JSON text, none when len is 0).
 */
int lpg_sio_encode(lpg_buf_t *b, int type, const char *nsp, size_t nsp_len,
                   int64_t ack, const char *json, size_t len) LPG_MUSTCHECK;

/* the same with data dumped compactly (NULL: no payload) */
int lpg_sio_encode_json(lpg_buf_t *b, int type, const char *nsp, size_t nsp_len,
                        int64_t ack, const json_t *data) LPG_MUSTCHECK;


#endif /* LPG_SIO_H */
