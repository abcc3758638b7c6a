/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_client.h: the inside of one lpgate-bench client process,
 * shared by the long-poll code (lpg_bench_client.c), the WebSocket code
 * (lpg_bench_ws.c, with Socket.IO's packets in lpg_bench_sio.c) and the
 * event-stream code (lpg_bench_sse.c).  A connection is one poll at a
 * time, one WebSocket subscription or one event stream; the client
 * process owns them all on one epoll loop.  Nothing outside bench/ sees
 * these types.
 */

#ifndef LPG_BENCH_CLIENT_H
#define LPG_BENCH_CLIENT_H


#include "lpg_bench.h"

#include <sys/types.h>


#define LPG_BENCH_CONNECTING 512 /* connects in flight at most */
#define LPG_BENCH_PER_SOURCE                                                   \
    10000 /* connect()'s port search slows down as a source address fills up */

/* websockets and streams read into one buffer per process, not per
 * connection */
#define LPG_BENCH_WS_RBUF (64 * 1024)


/*
 * One connection, ~600 bytes.  A poll connection keeps its answer buffer
 * (in) for its life; a WebSocket keeps one only while a frame is partly
 * read, so 10,000 idle sockets hold no heap besides this array.
 */
typedef struct {
    int     fd;
    int     channel;
    bool    connected;
    bool    sent;       /* the first poll (websockets: subscribe) written */
    bool    open;       /* websockets: the 101, sse: the 200 was checked */
    bool    subscribed; /* websockets: the subscribe frame is queued */
    uint8_t sio;        /* socketio: LPG_BENCH_SIO_* */
    bool    chunked;    /* sse: the stream is chunked (nchan) */
    uint8_t chunk_crlf; /* sse: bytes of a chunk's CRLF still to skip */
    uint8_t chunk_hex;  /* sse: bytes of the chunk size line in chunk_line */
    char    chunk_line[18];
    int64_t chunk_left; /* sse: data bytes left in the chunk */
    int64_t last;       /* lpgate and odoo: largest bus id seen */
    int64_t seq;        /* largest sequence number seen */
    int64_t got;        /* distinct deliveries */
    int64_t retry_at;
    char    etag[64]; /* nchan long poll; nchan sse: the last event's id */
    char    lm[64];
    char    ws_accept[32]; /* odoo-ws: the Sec-WebSocket-Accept expected */
    char   *in;            /* owned: bytes of the answer (frame) being read */
    size_t  in_len;
    size_t  in_size;
    char    out[384];
    size_t  out_len;
    size_t  out_off;
} lpg_bench_conn_t;


typedef struct {
    const lpg_bench_opts_t *o;
    int                     ep;
    int                     ctl;
    int                     first;
    int                     count;
    lpg_bench_conn_t       *conns; /* owned */
    int                     next_open;
    int                     connecting;
    int                     retries;
    int                     sent;
    bool                    ready_sent;
    int64_t                *target; /* owned: per channel */
    int                     pending;
    bool                    go;
    int64_t                 win_start;
    int64_t                 win_end;
    char                   *rbuf; /* owned (ws, sse): LPG_BENCH_WS_RBUF */
    uint64_t                rng;  /* websockets: frame masks */
    lpg_bench_result_t      res;
    lpg_bench_hist_t        hist;      /* arrival latency */
    lpg_bench_hist_t        hist_read; /* read latency */
} lpg_bench_client_t;


/* lpg_bench_client.c */
void lpg_bench_flush(lpg_bench_client_t *cl, lpg_bench_conn_t *c);
/* closes c and schedules its reconnect (100 ms later after an error) */
void lpg_bench_close(lpg_bench_client_t *cl, lpg_bench_conn_t *c, bool error);
/* checks and counts the messages of one answer (poll) or frame (ws);
 * now: monotonic, arrival and read times in us */
void lpg_bench_parse(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                     const char *end, const int64_t *now);
/* one recvmsg() into buf; *arrival_us gets the kernel's receive time */
ssize_t lpg_bench_recv(lpg_bench_conn_t *c, char *buf, size_t size,
                       int64_t *arrival_us);

/* the data of a connection's answer that arrived now: counts a reply and
 * fills now[0] and now[2] (now[1]: the receive time, if the kernel gave
 * none) */
void lpg_bench_arrived(lpg_bench_client_t *cl, int64_t *now);
/* c->in holds at least need bytes; exits when out of memory */
void lpg_bench_reserve(lpg_bench_conn_t *c, size_t need);
/* keeps the bytes [p + used, p + len) in c->in for the next read (p is
 * cl->rbuf or c->in); c->in is freed when nothing is left */
void lpg_bench_keep(lpg_bench_conn_t *c, const char *p, size_t used,
                    size_t len);

/* lpg_bench_ws.c: odoo-ws, ws and socketio connections */
#define LPG_BENCH_WS_TEXT  0x1
#define LPG_BENCH_WS_CLOSE 0x8
#define LPG_BENCH_WS_PING  0x9
#define LPG_BENCH_WS_PONG  0xa

/* the upgrade request into c->out, with a fresh random key */
void lpg_bench_ws_upgrade(lpg_bench_client_t *cl, lpg_bench_conn_t *c);
/* reads and handles everything readable on a websocket */
void lpg_bench_ws_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c);
/* one masked client frame (payload under 126 bytes), written at once */
void lpg_bench_ws_send(lpg_bench_client_t *cl, lpg_bench_conn_t *c,
                       unsigned opcode, const void *payload, size_t len);
/* marks c subscribed and sends its subscribe text frame */
void lpg_bench_ws_subscribed(lpg_bench_client_t *cl, lpg_bench_conn_t *c,
                             const char *text, int len);

/* lpg_bench_sio.c: Socket.IO's packets over a websocket */
#define LPG_BENCH_SIO_OPENING    0 /* waits for engine.io's open packet */
#define LPG_BENCH_SIO_CONNECTING 1 /* sent 40, waits for 40{"sid"} */
#define LPG_BENCH_SIO_CONNECTED  2 /* subscribe emitted */

/* one text frame (one engine.io packet); false when c was closed */
bool lpg_bench_sio_text(lpg_bench_client_t *cl, lpg_bench_conn_t *c,
                        const char *p, size_t len, int64_t *now);

/* lpg_bench_sse.c: event streams */
void lpg_bench_sse_request(lpg_bench_client_t *cl, lpg_bench_conn_t *c);
void lpg_bench_sse_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c);


#endif /* LPG_BENCH_CLIENT_H */
