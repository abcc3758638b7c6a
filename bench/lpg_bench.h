/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench.h: lpgate-bench, the load generator of lpgate's benchmarks.
 *
 * One coordinator process forks client processes (each holds a slice of
 * the polls on its own epoll loop) and, in throughput mode, publisher
 * processes.  They talk over socketpairs in fixed-size lpg_bench_msg_t
 * messages.  Every published message carries its sequence number on its
 * channel and the CLOCK_REALTIME time taken just before the trigger (the
 * clock of the kernel's socket receive timestamps), so a
 * client computes each delivery's latency and notices a missing or repeated
 * message on its own.  The bench depends only on core/ (no server code).
 */

#ifndef LPG_BENCH_H
#define LPG_BENCH_H


#include "lpg_core.h"

#include <sys/types.h>


#define LPG_BENCH_NORETURN __attribute__((noreturn))

#define LPG_BENCH_PER_PROC  15000 /* connections per client process */
#define LPG_BENCH_MAX_PROCS 64


typedef enum {
    LPG_BENCH_ODOO,
    LPG_BENCH_NCHAN,
    LPG_BENCH_ODOO_WS, /* Odoo 16+ /websocket */
    LPG_BENCH_WS,      /* lpgate's plain WebSocket API, <path>/ws */
    LPG_BENCH_SSE,     /* Server-Sent Events, <path>/sse */
    LPG_BENCH_SOCKETIO /* Socket.IO v4 over engine.io's websocket */
} lpg_bench_proto_e;

/* the protocols whose connections are WebSockets (lpg_bench_ws.c) */
#define LPG_BENCH_IS_WS(p)                                                     \
    ((p) == LPG_BENCH_ODOO_WS || (p) == LPG_BENCH_WS                           \
     || (p) == LPG_BENCH_SOCKETIO)

typedef enum {
    LPG_BENCH_FANOUT,
    LPG_BENCH_PRIVATE,
    LPG_BENCH_THROUGHPUT
} lpg_bench_mode_e;


typedef struct {
    lpg_bench_proto_e proto;
    lpg_bench_mode_e  mode;
    bool              nchan;      /* the server is nginx+nchan (--peer) */
    const char       *host;       /* server address (IPv4), 127.0.0.1 */
    int               port;       /* 8072 (odoo), 8080 (nchan) */
    const char       *path;       /* /longpolling (odoo), /sub (nchan) */
    const char       *pub_path;   /* nchan publisher location, /pub */
    const char       *db_name;    /* odoo: ?db= on polls, or NULL */
    const char       *conninfo;   /* odoo: libpq conninfo of the database */
    const char       *notify_dsn; /* odoo: NOTIFY there, or NULL */
    int               polls;
    int               channels;
    int               rounds;
    double            seconds;    /* throughput: publishing time */
    int               procs;      /* client processes, at least */
    int               publishers; /* throughput publishers */
    double            rate;    /* throughput: messages/s in all, 0: no limit */
    int               sources; /* source addresses, 0: automatic */
    int               size;    /* padding bytes per message */
    double            idle_seconds; /* idle CPU sample while parked */
    double            timeout;      /* seconds to wait for a round */
    pid_t             pids[16];     /* server processes (+ children) */
    int               npids;
    const char       *label;
} lpg_bench_opts_t;


/* coordinator <-> client/publisher messages */
typedef enum {
    LPG_BENCH_MSG_READY = 1, /* c->p: a = polls sent, b = errors */
    LPG_BENCH_MSG_EXPECT,    /* p->c: channel a (-1: all) must reach b */
    LPG_BENCH_MSG_GO,        /* p->c: report DONE when expectations met */
    LPG_BENCH_MSG_DONE,      /* c->p: a = deliveries */
    LPG_BENCH_MSG_WINDOW,    /* p->c: count deliveries in [a, b] us */
    LPG_BENCH_MSG_REPORT,    /* p->c: send lpg_bench_result_t + histogram */
    LPG_BENCH_MSG_PUBLISHED, /* pub->p: channel a reached seq b */
    LPG_BENCH_MSG_STOP
} lpg_bench_msg_type_e;

typedef struct {
    int32_t type;
    int32_t pad;
    int64_t a;
    int64_t b;
} lpg_bench_msg_t;


/* log-linear latency histogram in microseconds, < 1 % bucket width */
#define LPG_BENCH_HIST_SUB 64
#define LPG_BENCH_HIST_BUCKETS                                                 \
    (2 * LPG_BENCH_HIST_SUB + 40 * LPG_BENCH_HIST_SUB)

typedef struct {
    uint64_t count[LPG_BENCH_HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} lpg_bench_hist_t;

void lpg_bench_hist_add(lpg_bench_hist_t *h, uint64_t us);
void lpg_bench_hist_merge(lpg_bench_hist_t *into, const lpg_bench_hist_t *h);
uint64_t lpg_bench_hist_pct(const lpg_bench_hist_t *h, double pct);


typedef struct {
    int64_t expected;   /* deliveries the expectations asked for */
    int64_t received;   /* distinct deliveries within them */
    int64_t in_window;  /* deliveries completed in the window */
    int64_t replies;    /* HTTP answers read */
    int64_t duplicates; /* a sequence number seen again */
    int64_t errors;     /* failed connects, bad answers, closes */
    int64_t reconnects;
} lpg_bench_result_t;


/* the command line (lpg_bench_args.c) */
int         lpg_bench_args(int argc, char **argv, lpg_bench_opts_t *o);
const char *lpg_bench_proto_name(const lpg_bench_opts_t *o);

/* the client process: never returns */
void lpg_bench_client_run(const lpg_bench_opts_t *o, int ctl, int first,
                          int count, int64_t start_last) LPG_BENCH_NORETURN;

/* publishing (lpg_bench_pub.c) */
typedef struct lpg_bench_pub_s lpg_bench_pub_t;

lpg_bench_pub_t *lpg_bench_pub_open(const lpg_bench_opts_t *o);
void             lpg_bench_pub_close(lpg_bench_pub_t *p);
int64_t          lpg_bench_pub_last_id(lpg_bench_pub_t *p);
/* one message with sequence seq on each of channels [first, first+n) */
int lpg_bench_pub_send(lpg_bench_pub_t *p, int first, int n, int64_t seq);
/* throughput publisher process: channels c with c % of == index */
void lpg_bench_pub_run(const lpg_bench_opts_t *o, int ctl, int index, int of,
                       int64_t start_us, int64_t end_us) LPG_BENCH_NORETURN;

/* HTTP helpers shared by clients and nchan publishing */
typedef struct {
    int     status;
    int64_t content_length; /* -1: none */
    bool    close;          /* Connection: close */
    char    last_modified[64];
    char    etag[64];
    char    ws_accept[32]; /* Sec-WebSocket-Accept */
    bool    chunked;       /* Transfer-Encoding: chunked */
    bool    event_stream;  /* Content-Type: text/event-stream */
    size_t  header_len;    /* bytes up to and including the empty line */
} lpg_bench_http_t;

/* LPG_OK: headers complete; LPG_AGAIN: need more; LPG_ERROR: bad */
int lpg_bench_http_head(const char *buf, size_t len, lpg_bench_http_t *h);

/* reads (out false) or writes all len bytes on a blocking fd */
int lpg_bench_full(int fd, void *buf, size_t len, bool out);

int lpg_bench_connect(const char *host, int port, int source, bool block);

/* server processes' RSS (KiB) and CPU (us), children included */
void lpg_bench_proc_sample(const pid_t *pids, int npids, int64_t *rss_kib,
                           int64_t *cpu_us);

int64_t lpg_bench_now_us(void);  /* CLOCK_MONOTONIC: control, windows */
int64_t lpg_bench_wall_us(void); /* CLOCK_REALTIME: message stamps */


#endif /* LPG_BENCH_H */
