/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_client.h: the inside of one lpgate-bench client process,
 * shared by the long-poll code (lpg_bench_client.c) and the WebSocket
 * code (lpg_bench_ws.c).  A connection is one poll at a time, or one
 * WebSocket subscription; the client process owns them all on one epoll
 * loop.  Nothing outside bench/ sees these types.
 */

#ifndef LPG_BENCH_CLIENT_H
#define LPG_BENCH_CLIENT_H


#include "lpg_bench.h"

#include <sys/types.h>


#define LPG_BENCH_CONNECTING 512 /* connects in flight at most */
#define LPG_BENCH_PER_SOURCE                                                   \
    10000 /* connect()'s port search slows down as a source address fills up */

/* odoo-ws reads into one buffer per process, not per connection */
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
    bool    sent;    /* the first poll (odoo-ws: subscribe) was written */
    bool    ws_open; /* odoo-ws: the 101 was checked */
    int64_t last;    /* odoo: largest bus id seen */
    int64_t seq;     /* largest sequence number seen */
    int64_t got;     /* distinct deliveries */
    int64_t retry_at;
    char    etag[64];
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
    char                   *rbuf; /* owned (odoo-ws): LPG_BENCH_WS_RBUF */
    uint64_t                rng;  /* odoo-ws: frame masks */
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

/* lpg_bench_ws.c */
/* the upgrade request into c->out, with a fresh random key */
void lpg_bench_ws_upgrade(lpg_bench_client_t *cl, lpg_bench_conn_t *c);
/* reads and handles everything readable on an odoo-ws connection */
void lpg_bench_ws_read(lpg_bench_client_t *cl, lpg_bench_conn_t *c);


#endif /* LPG_BENCH_CLIENT_H */
