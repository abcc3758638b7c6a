/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_pub.c: how lpgate-bench triggers messages.
 *
 * Odoo: as Odoo's bus does, INSERT into bus_bus and NOTIFY imbus, in one
 * transaction through libpq (with --notify-dsn, the NOTIFY goes after the
 * commit to another database, as Odoo 16+ notify on "postgres") (one statement string, so one round trip and
 * one commit); n channels at once are one INSERT ... SELECT.  nchan: an
 * HTTP POST to the publisher location per channel, pipelined on one
 * keep-alive connection.  Every message carries {"s": seq, "t": time},
 * the wall clock in us taken just before the trigger is sent.  The
 * channel of the bus_bus row is "bench-N" for the long poll (8.0-15.0
 * store a client's string channel as is) and for lpgate's own transports
 * (ws, sse, socketio: the plain poll API's keys, as lpgate_send() writes
 * them), and ["db","bench-N"] for odoo-ws (16+ store it as (db, string),
 * Odoo's channel_with_db).  nchan (--proto=nchan, --peer=nchan) is
 * published to over HTTP, for every protocol.
 */

#include "lpg_bench.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct lpg_bench_pub_s {
    const lpg_bench_opts_t *o;
    PGconn                 *pg;     /* owned (odoo) */
    PGconn                 *notify; /* owned: --notify-dsn, or NULL */
    int                     fd;     /* owned (nchan), -1 */
    char                   *pad;
    char                   *buf; /* owned: requests or statement */
    size_t                  size;
    char                    key_pre[160]; /* channel text before N */
    const char             *key_post;     /* and after it */
};


/* the database of the channel keys: --db, or the dsn's database */
static int
lpg_bench_pub_keys(lpg_bench_pub_t *p)
{
    PGresult   *r = NULL;
    const char *db = p->o->db_name;
    int         rc = LPG_OK;

    if (p->o->proto != LPG_BENCH_ODOO_WS) {
        snprintf(p->key_pre, sizeof(p->key_pre), "\"bench-");
        p->key_post = "\"";
        return LPG_OK;
    }

    if (db == NULL) {
        r = PQexec(p->pg, "SELECT current_database()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "lpgate-bench: current_database(): %s",
                    PQerrorMessage(p->pg));
            PQclear(r);
            return LPG_ERROR;
        }
        db = PQgetvalue(r, 0, 0);
    }

    /* the name goes into SQL and JSON text as is */
    if (strpbrk(db, "\"'\\") != NULL || strlen(db) > 120) {
        fprintf(stderr, "lpgate-bench: database name \"%s\" not supported\n",
                db);
        rc = LPG_ERROR;
    } else {
        snprintf(p->key_pre, sizeof(p->key_pre), "[\"%s\",\"bench-", db);
        p->key_post = "\"]";
    }

    PQclear(r);

    return rc;
}


lpg_bench_pub_t *
lpg_bench_pub_open(const lpg_bench_opts_t *o)
{
    lpg_bench_pub_t *p = calloc(1, sizeof(*p));
    PGresult        *r;

    if (p == NULL) {
        return NULL;
    }

    p->o = o;
    p->fd = -1;
    p->pad = malloc((size_t) o->size + 1);
    if (p->pad == NULL) {
        free(p);
        return NULL;
    }
    memset(p->pad, 'x', (size_t) o->size);
    p->pad[o->size] = '\0';

    if (o->nchan) {
        return p;
    }

    p->pg = PQconnectdb(o->conninfo);
    if (PQstatus(p->pg) != CONNECTION_OK) {
        fprintf(stderr, "lpgate-bench: database: %s", PQerrorMessage(p->pg));
        lpg_bench_pub_close(p);
        return NULL;
    }

    /* the bench's own commits need not wait for the disk */
    r = PQexec(p->pg, "SET synchronous_commit = off");
    PQclear(r);

    if (lpg_bench_pub_keys(p) != LPG_OK) {
        lpg_bench_pub_close(p);
        return NULL;
    }

    if (o->notify_dsn != NULL) {
        p->notify = PQconnectdb(o->notify_dsn);
        if (PQstatus(p->notify) != CONNECTION_OK) {
            fprintf(stderr, "lpgate-bench: --notify-dsn: %s",
                    PQerrorMessage(p->notify));
            lpg_bench_pub_close(p);
            return NULL;
        }
    }

    return p;
}


void
lpg_bench_pub_close(lpg_bench_pub_t *p)
{
    if (p == NULL) {
        return;
    }

    if (p->pg != NULL) {
        PQfinish(p->pg);
    }
    if (p->notify != NULL) {
        PQfinish(p->notify);
    }
    if (p->fd != -1) {
        close(p->fd);
    }

    free(p->pad);
    free(p->buf);
    free(p);
}


int64_t
lpg_bench_pub_last_id(lpg_bench_pub_t *p)
{
    PGresult *r;
    int64_t   id = 0;

    if (p->pg == NULL) {
        return 0;
    }

    r = PQexec(p->pg, "SELECT coalesce(max(id), 0) FROM bus_bus");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    } else {
        fprintf(stderr, "lpgate-bench: bus_bus: %s", PQerrorMessage(p->pg));
        id = -1;
    }

    PQclear(r);

    return id;
}


static int
lpg_bench_reserve(lpg_bench_pub_t *p, size_t need)
{
    char *b;

    if (need <= p->size) {
        return LPG_OK;
    }

    b = realloc(p->buf, need);
    if (b == NULL) {
        return LPG_ERROR;
    }

    p->buf = b;
    p->size = need;

    return LPG_OK;
}


static int
lpg_bench_pub_odoo(lpg_bench_pub_t *p, int first, int n, int64_t seq)
{
    char      note[256];
    PGresult *r;
    int64_t   t;
    int       rc = LPG_OK;
    bool      pad = p->o->size > 0;

    if (lpg_bench_reserve(p, 768 + (size_t) p->o->size) != LPG_OK) {
        return LPG_ERROR;
    }

    t = lpg_bench_wall_us();

    /* the payload lists the channel as Odoo does (16+'s dispatcher wakes
     * the sockets of the listed channels only); many channels: "bench" */
    if (n == 1) {
        snprintf(note, sizeof(note), "NOTIFY imbus, '[%s%d%s]'", p->key_pre,
                 first, p->key_post);
    } else {
        snprintf(note, sizeof(note), "NOTIFY imbus, '[\"bench\"]'");
    }

    if (n == 1) {
        snprintf(p->buf, p->size,
                 "INSERT INTO bus_bus (channel, message, create_date, "
                 "write_date) VALUES ('%s%d%s', "
                 "'{\"s\": %lld, \"t\": %lld%s%s%s}', "
                 "now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'); %s",
                 p->key_pre, first, p->key_post, (long long) seq, (long long) t,
                 pad ? ", \"p\": \"" : "", pad ? p->pad : "", pad ? "\"" : "",
                 p->notify ? "" : note);
    } else {
        snprintf(p->buf, p->size,
                 "INSERT INTO bus_bus (channel, message, create_date, "
                 "write_date) SELECT '%s' || g || '%s', "
                 "'{\"s\": %lld, \"t\": %lld%s%s%s}', "
                 "now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' "
                 "FROM generate_series(%d, %d) g; %s",
                 p->key_pre, p->key_post, (long long) seq, (long long) t,
                 pad ? ", \"p\": \"" : "", pad ? p->pad : "", pad ? "\"" : "",
                 first, first + n - 1, p->notify ? "" : note);
    }

    r = PQexec(p->pg, p->buf);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "lpgate-bench: publish: %s", PQerrorMessage(p->pg));
        rc = LPG_ERROR;
    }
    PQclear(r);

    /* --notify-dsn: after the commit, on the listener's database, as
     * Odoo's postcommit hook does on "postgres" */
    if (rc == LPG_OK && p->notify != NULL) {
        r = PQexec(p->notify, note);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "lpgate-bench: notify: %s",
                    PQerrorMessage(p->notify));
            rc = LPG_ERROR;
        }
        PQclear(r);
    }

    return rc;
}


/* writes len bytes of requests and reads n answers, both at once */
static int
lpg_bench_pipeline(lpg_bench_pub_t *p, size_t len, int n)
{
    struct pollfd    pfd;
    lpg_bench_http_t h;
    char             in[16384];
    size_t           off = 0, have = 0, total;
    ssize_t          k;
    int              rc;

    if (p->fd == -1) {
        p->fd = lpg_bench_connect(p->o->host, p->o->port, 0, false);
        if (p->fd == -1) {
            fprintf(stderr, "lpgate-bench: cannot connect to the publisher\n");
            return LPG_ERROR;
        }
    }

    pfd.fd = p->fd;

    while (n > 0) {
        pfd.events = POLLIN | (off < len ? POLLOUT : 0);
        if (poll(&pfd, 1, 10000) <= 0) {
            fprintf(stderr, "lpgate-bench: publisher timed out\n");
            goto failed;
        }

        if (off < len && (pfd.revents & POLLOUT)) {
            k = write(p->fd, p->buf + off, len - off);
            if (k > 0) {
                off += (size_t) k;
            } else if (k == -1 && errno != EAGAIN) {
                goto failed;
            }
        }

        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }

        k = read(p->fd, in + have, sizeof(in) - have);
        if (k <= 0) {
            if (k == -1 && errno == EAGAIN) {
                continue;
            }
            goto failed;
        }
        have += (size_t) k;

        while (n > 0) {
            rc = lpg_bench_http_head(in, have, &h);
            if (rc == LPG_AGAIN) {
                break;
            }
            if (rc == LPG_ERROR || h.content_length < 0
                || h.header_len + (size_t) h.content_length > sizeof(in))
            {
                goto failed;
            }
            total = h.header_len + (size_t) h.content_length;
            if (have < total) {
                break;
            }
            if (h.status < 200 || h.status > 299) {
                fprintf(stderr, "lpgate-bench: publish answered %d\n",
                        h.status);
                goto failed;
            }
            memmove(in, in + total, have - total);
            have -= total;
            n--;
        }
    }

    return LPG_OK;

failed:

    fprintf(stderr, "lpgate-bench: publishing connection failed\n");
    close(p->fd);
    p->fd = -1;

    return LPG_ERROR;
}


static int
lpg_bench_pub_nchan(lpg_bench_pub_t *p, int first, int n, int64_t seq)
{
    size_t  len = 0, one = 256 + (size_t) p->o->size;
    int64_t t;
    int     i, blen;
    char    body[64];

    if (lpg_bench_reserve(p, one * (size_t) n) != LPG_OK) {
        return LPG_ERROR;
    }

    t = lpg_bench_wall_us();
    blen = snprintf(body, sizeof(body), "s=%lld t=%lld ", (long long) seq,
                    (long long) t);

    for (i = 0; i < n; i++) {
        len += (size_t) snprintf(p->buf + len, one,
                                 "POST %s/bench-%d HTTP/1.1\r\nHost: bench\r\n"
                                 "Content-Length: %d\r\n\r\n%s%s",
                                 p->o->pub_path, first + i, blen + p->o->size,
                                 body, p->pad);
    }

    return lpg_bench_pipeline(p, len, n);
}


int
lpg_bench_pub_send(lpg_bench_pub_t *p, int first, int n, int64_t seq)
{
    if (!p->o->nchan) {
        return lpg_bench_pub_odoo(p, first, n, seq);
    }

    return lpg_bench_pub_nchan(p, first, n, seq);
}


void
lpg_bench_pub_run(const lpg_bench_opts_t *o, int ctl, int index, int of,
                  int64_t start_us, int64_t end_us)
{
    lpg_bench_pub_t *p;
    lpg_bench_msg_t  m;
    int64_t         *seq, sent = 0, due, now;
    int              c, rc = 0;

    p = lpg_bench_pub_open(o);
    seq = calloc((size_t) o->channels, sizeof(int64_t));
    if (p == NULL || seq == NULL) {
        _exit(1);
    }

    while (lpg_bench_now_us() < start_us) {
        usleep(1000);
    }

    c = index;
    while ((now = lpg_bench_now_us()) < end_us) {
        if (o->rate > 0) {
            /* this publisher's share of --rate, on a fixed schedule: a
             * late message is sent at once, not skipped */
            due = start_us + (int64_t) ((double) sent * of * 1e6 / o->rate);
            if (due > now) {
                usleep((useconds_t) (due - now));
                continue;
            }
        }
        if (lpg_bench_pub_send(p, c, 1, seq[c] + 1) != LPG_OK) {
            rc = 1;
            break;
        }
        seq[c]++;
        sent++;
        c += of;
        if (c >= o->channels) {
            c = index;
        }
    }

    for (c = index; c < o->channels; c += of) {
        m = (lpg_bench_msg_t){ .type = LPG_BENCH_MSG_PUBLISHED,
                               .a = c,
                               .b = seq[c] };
        if (write(ctl, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
            _exit(1);
        }
    }

    m = (lpg_bench_msg_t){ .type = LPG_BENCH_MSG_PUBLISHED,
                           .a = -1,
                           .b = sent };
    if (write(ctl, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
        _exit(1);
    }

    lpg_bench_pub_close(p);
    free(seq);
    _exit(rc);
}
