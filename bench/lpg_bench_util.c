/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_util.c: what every lpgate-bench process shares: the latency
 * histogram, the HTTP response head parser, connecting from one of several
 * loopback source addresses, and the server's RSS and CPU time from /proc.
 */

#include "lpg_bench.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


int64_t
lpg_bench_now_us(void)
{
    return lpg_time_mono_us();
}


int64_t
lpg_bench_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


int
lpg_bench_full(int fd, void *buf, size_t len, bool out)
{
    char   *p = buf;
    ssize_t n;

    while (len > 0) {
        n = out ? write(fd, p, len) : read(fd, p, len);
        if (n <= 0) {
            if (n == -1 && errno == EINTR) {
                continue;
            }
            return LPG_ERROR;
        }
        p += n;
        len -= (size_t) n;
    }

    return LPG_OK;
}


/* values below 2*SUB are exact; above, SUB buckets per power of two */
static int
lpg_bench_hist_index(uint64_t v)
{
    int m, shift, idx;

    if (v < 2 * LPG_BENCH_HIST_SUB) {
        return (int) v;
    }

    m = 63 - __builtin_clzll(v); /* >= 7 */
    shift = m - 6;
    idx = 2 * LPG_BENCH_HIST_SUB + (m - 7) * LPG_BENCH_HIST_SUB
        + (int) ((v >> shift) - LPG_BENCH_HIST_SUB);

    return idx < LPG_BENCH_HIST_BUCKETS ? idx : LPG_BENCH_HIST_BUCKETS - 1;
}


static uint64_t
lpg_bench_hist_value(int idx)
{
    int m, k;

    if (idx < 2 * LPG_BENCH_HIST_SUB) {
        return (uint64_t) idx;
    }

    m = 7 + (idx - 2 * LPG_BENCH_HIST_SUB) / LPG_BENCH_HIST_SUB;
    k = (idx - 2 * LPG_BENCH_HIST_SUB) % LPG_BENCH_HIST_SUB;

    /* the middle of the bucket */
    return (((uint64_t) (LPG_BENCH_HIST_SUB + k) << (m - 6))
            + ((uint64_t) 1 << (m - 7)));
}


void
lpg_bench_hist_add(lpg_bench_hist_t *h, uint64_t us)
{
    h->count[lpg_bench_hist_index(us)]++;
    h->total++;

    if (us > h->max) {
        h->max = us;
    }
}


void
lpg_bench_hist_merge(lpg_bench_hist_t *into, const lpg_bench_hist_t *h)
{
    int i;

    for (i = 0; i < LPG_BENCH_HIST_BUCKETS; i++) {
        into->count[i] += h->count[i];
    }

    into->total += h->total;

    if (h->max > into->max) {
        into->max = h->max;
    }
}


uint64_t
lpg_bench_hist_pct(const lpg_bench_hist_t *h, double pct)
{
    uint64_t need, seen;
    int      i;

    if (h->total == 0) {
        return 0;
    }

    need = (uint64_t) ((double) h->total * pct / 100.0 + 0.5);
    if (need < 1) {
        need = 1;
    }

    seen = 0;
    for (i = 0; i < LPG_BENCH_HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= need) {
            uint64_t v = lpg_bench_hist_value(i);
            return v < h->max ? v : h->max;
        }
    }

    return h->max;
}


static void
lpg_bench_copy_value(char *dst, size_t size, const char *v, const char *end)
{
    size_t n;

    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }

    n = (size_t) (end - v);
    if (n >= size) {
        n = size - 1;
    }

    memcpy(dst, v, n);
    dst[n] = '\0';
}


int
lpg_bench_http_head(const char *buf, size_t len, lpg_bench_http_t *h)
{
    const char *end, *line, *eol, *colon;
    size_t      name;

    end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return len > 16384 ? LPG_ERROR : LPG_AGAIN;
    }

    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    h->header_len = (size_t) (end - buf) + 4;

    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || !isdigit(buf[9])) {
        return LPG_ERROR;
    }

    h->status = atoi(buf + 9);
    h->close = buf[7] == '0';

    line = memchr(buf, '\n', (size_t) (end - buf));
    if (line == NULL) {
        return LPG_ERROR;
    }
    line++;
    while (line < end + 2) {
        eol = memmem(line, (size_t) (end + 2 - line), "\r\n", 2);
        if (eol == NULL) {
            break;
        }

        colon = memchr(line, ':', (size_t) (eol - line));
        if (colon != NULL) {
            name = (size_t) (colon - line);

            if (name == 14 && strncasecmp(line, "content-length", 14) == 0) {
                h->content_length = strtoll(colon + 1, NULL, 10);

            } else if (name == 10 && strncasecmp(line, "connection", 10) == 0) {
                h->close =
                    memmem(colon, (size_t) (eol - colon), "close", 5) != NULL;

            } else if (name == 13
                       && strncasecmp(line, "last-modified", 13) == 0) {
                lpg_bench_copy_value(h->last_modified, sizeof(h->last_modified),
                                     colon + 1, eol);

            } else if (name == 4 && strncasecmp(line, "etag", 4) == 0) {
                lpg_bench_copy_value(h->etag, sizeof(h->etag), colon + 1, eol);

            } else if (name == 20
                       && strncasecmp(line, "sec-websocket-accept", 20) == 0) {
                lpg_bench_copy_value(h->ws_accept, sizeof(h->ws_accept),
                                     colon + 1, eol);

            } else if (name == 17
                       && strncasecmp(line, "transfer-encoding", 17) == 0) {
                /* callers that need a length check content_length */
                h->chunked =
                    memmem(colon, (size_t) (eol - colon), "chunked", 7) != NULL;

            } else if (name == 12 && strncasecmp(line, "content-type", 12) == 0)
            {
                h->event_stream = memmem(colon, (size_t) (eol - colon),
                                         "text/event-stream", 17)
                    != NULL;
            }
        }

        line = eol + 2;
    }

    return LPG_OK;
}


/*
 * Connects to host:port from 127.0.0.<1 + source> when host is on
 * loopback: one source address holds at most ~28,000 ports toward one
 * destination.  Non-blocking unless block; returns the fd or -1.
 */
int
lpg_bench_connect(const char *host, int port, int source, bool block)
{
    struct sockaddr_in sa, src;
    int                fd, one = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "lpgate-bench: bad address \"%s\"\n", host);
        return -1;
    }

    fd = socket(AF_INET, SOCK_STREAM | (block ? 0 : SOCK_NONBLOCK), 0);
    if (fd == -1) {
        return -1;
    }

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (source > 0 && (ntohl(sa.sin_addr.s_addr) >> 24) == 127) {
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t) source);
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                          sizeof(one));
        if (bind(fd, (struct sockaddr *) &src, sizeof(src)) == -1) {
            close(fd);
            return -1;
        }
    }

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


static void
lpg_bench_proc_one(pid_t pid, int64_t *rss_kib, int64_t *cpu_us)
{
    char               path[64], buf[1024], *p;
    FILE              *f;
    unsigned long long utime, stime;
    long               tck = sysconf(_SC_CLK_TCK);

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }

    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL
        && sscanf(p + 2,
                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                  &utime, &stime)
            == 2)
    {
        *cpu_us +=
            (int64_t) ((utime + stime) * 1000000ULL / (unsigned long long) tck);
    }

    fclose(f);

    snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }

    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (strncmp(buf, "VmRSS:", 6) == 0) {
            *rss_kib += strtoll(buf + 6, NULL, 10);
            break;
        }
    }

    fclose(f);
}


static pid_t
lpg_bench_ppid(pid_t pid)
{
    char  path[64], buf[512], *p;
    FILE *f;
    int   ppid = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }

    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
        (void) sscanf(p + 2, "%*c %d", &ppid);
    }

    fclose(f);

    return (pid_t) ppid;
}


/*
 * Sums over the given processes and all their descendants.  CPU time of
 * processes that exited in between is lost, which is fine for servers
 * whose workers live through a run.
 */
void
lpg_bench_proc_sample(const pid_t *pids, int npids, int64_t *rss_kib,
                      int64_t *cpu_us)
{
    DIR           *d;
    struct dirent *de;
    pid_t          pid, up;
    int            i, depth;

    *rss_kib = 0;
    *cpu_us = 0;

    if (npids == 0) {
        return;
    }

    d = opendir("/proc");
    if (d == NULL) {
        return;
    }

    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char) de->d_name[0])) {
            continue;
        }

        pid = (pid_t) atoi(de->d_name);

        for (up = pid, depth = 0; up > 1 && depth < 8; depth++) {
            for (i = 0; i < npids; i++) {
                if (up == pids[i]) {
                    lpg_bench_proc_one(pid, rss_kib, cpu_us);
                    goto next;
                }
            }
            up = lpg_bench_ppid(up);
        }
    next:;
    }

    closedir(d);
}
