/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_main.c: lpgate-bench's command line and coordinator.
 *
 * A "poll" is a parked long poll, one subscribed WebSocket (odoo-ws, ws,
 * socketio: lpg_bench_ws.c, lpg_bench_sio.c) or one event stream (sse:
 * lpg_bench_sse.c).  The command line is lpg_bench_args.c's.
 * The coordinator forks the client processes (15,000 polls each at most,
 * since one process holds ~20,000 fds), waits until every poll is sent and
 * the server has gone quiet (its CPU time stops moving), then runs the
 * mode: fanout and private trigger one round at a time and wait until
 * every poll has its message; throughput forks publishers that publish as
 * fast as they can for --seconds while clients re-poll.  It samples the
 * server's RSS and CPU from /proc around each phase, gathers every client's
 * counts and histogram, prints a report and one machine-readable line
 * ("SUMMARY {json}"), and exits 1 when an expected delivery is missing.
 */

#include "lpg_bench.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>


typedef struct {
    lpg_bench_opts_t   o;
    int                nclients;
    int                ctl[LPG_BENCH_MAX_PROCS];
    pid_t              pid[LPG_BENCH_MAX_PROCS];
    lpg_bench_result_t res;
    lpg_bench_hist_t   hist;      /* arrival latency */
    lpg_bench_hist_t   hist_read; /* read latency */
    int64_t            rounds_us; /* time from triggers to all delivered */
    int64_t            cpu_us;    /* server CPU over the deliveries */
    int64_t            rss0, rss1;
    double             park_s;
    double             idle_pct;
    int64_t            published;
    bool               timed_out;
} lpg_bench_t;


static void
lpg_bench_tell(lpg_bench_t *b, int type, int64_t x, int64_t y)
{
    lpg_bench_msg_t m = { .type = type, .a = x, .b = y };
    int             i;

    for (i = 0; i < b->nclients; i++) {
        if (write(b->ctl[i], &m, sizeof(m)) != (ssize_t) sizeof(m)) {
            fprintf(stderr, "lpgate-bench: client %d is gone\n", i);
        }
    }
}


/*
 * Waits for one message of the given type from each of the n fds, for at
 * most timeout seconds; returns how many arrived.  Sums their a fields.
 */
static int
lpg_bench_gather(int *fds, int n, int type, double timeout, int64_t *sum)
{
    struct pollfd   pfd[LPG_BENCH_MAX_PROCS];
    bool            got[LPG_BENCH_MAX_PROCS];
    lpg_bench_msg_t m;
    int64_t         deadline = lpg_bench_now_us() + (int64_t) (timeout * 1e6);
    int             i, have = 0, left;

    memset(got, 0, sizeof(got));

    while (have < n) {
        left = (int) ((deadline - lpg_bench_now_us()) / 1000);
        if (left <= 0) {
            break;
        }

        for (i = 0; i < n; i++) {
            pfd[i].fd = got[i] ? -1 : fds[i];
            pfd[i].events = POLLIN;
        }

        if (poll(pfd, (nfds_t) n, left) <= 0) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP))) {
                continue;
            }
            if (lpg_bench_full(fds[i], &m, sizeof(m), false) != LPG_OK) {
                fprintf(stderr, "lpgate-bench: process %d died\n", i);
                got[i] = true;
                continue;
            }
            if (m.type == type) {
                got[i] = true;
                have++;
                if (sum != NULL) {
                    *sum += m.a;
                }
            }
        }
    }

    return have;
}


/* waits until the server's CPU time stops moving (300 ms), at most 30 s */
static void
lpg_bench_quiet(lpg_bench_t *b)
{
    int64_t rss, cpu, prev = -1, deadline;
    int     still = 0;

    if (b->o.npids == 0) {
        usleep(300000);
        return;
    }

    deadline = lpg_bench_now_us() + 30000000;

    while (still < 3 && lpg_bench_now_us() < deadline) {
        usleep(100000);
        lpg_bench_proc_sample(b->o.pids, b->o.npids, &rss, &cpu);
        still = (prev >= 0 && cpu - prev <= 10000) ? still + 1 : 0;
        prev = cpu;
    }
}


static int
lpg_bench_spawn(lpg_bench_t *b, int64_t start_last)
{
    int   i, sv[2], first = 0, per, count;
    pid_t pid;

    b->nclients = (b->o.polls + LPG_BENCH_PER_PROC - 1) / LPG_BENCH_PER_PROC;
    if (b->o.procs > b->nclients) {
        b->nclients = b->o.procs;
    }
    if (b->nclients > b->o.polls) {
        b->nclients = b->o.polls;
    }
    if (b->nclients > LPG_BENCH_MAX_PROCS) {
        b->nclients = LPG_BENCH_MAX_PROCS;
    }

    per = b->o.polls / b->nclients;

    for (i = 0; i < b->nclients; i++) {
        count = i == b->nclients - 1 ? b->o.polls - first : per;

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
            perror("lpgate-bench: socketpair");
            return LPG_ERROR;
        }

        pid = fork();
        if (pid == -1) {
            perror("lpgate-bench: fork");
            return LPG_ERROR;
        }

        if (pid == 0) {
            close(sv[0]);
            lpg_bench_client_run(&b->o, sv[1], first, count, start_last);
        }

        close(sv[1]);
        b->ctl[i] = sv[0];
        b->pid[i] = pid;
        first += count;
    }

    return LPG_OK;
}


static int
lpg_bench_rounds(lpg_bench_t *b, lpg_bench_pub_t *pub)
{
    int64_t rss, cpu0, cpu1, t0, sum;
    int     r, done;

    for (r = 1; r <= b->o.rounds; r++) {
        lpg_bench_proc_sample(b->o.pids, b->o.npids, &rss, &cpu0);

        lpg_bench_tell(b, LPG_BENCH_MSG_EXPECT, -1, r);
        lpg_bench_tell(b, LPG_BENCH_MSG_GO, 0, 0);

        t0 = lpg_bench_now_us();
        /* odoo: one transaction; nchan: one publish per channel */
        if (lpg_bench_pub_send(pub, 0, b->o.channels, r) != LPG_OK) {
            return LPG_ERROR;
        }

        sum = 0;
        done = lpg_bench_gather(b->ctl, b->nclients, LPG_BENCH_MSG_DONE,
                                b->o.timeout, &sum);
        b->rounds_us += lpg_bench_now_us() - t0;
        b->published += b->o.channels;

        if (done < b->nclients) {
            fprintf(stderr,
                    "lpgate-bench: round %d: %d of %d clients complete "
                    "after %.0f s\n",
                    r, done, b->nclients, b->o.timeout);
            b->timed_out = true;
            return LPG_OK;
        }

        /* the re-polls are parked again */
        lpg_bench_quiet(b);
        lpg_bench_proc_sample(b->o.pids, b->o.npids, &rss, &cpu1);
        b->cpu_us += cpu1 - cpu0;
    }

    return LPG_OK;
}


static int
lpg_bench_throughput(lpg_bench_t *b)
{
    int             pub[64], sv[2], i, ended = 0, left;
    pid_t           pids[64];
    lpg_bench_msg_t m;
    struct pollfd   pfd[64];
    int64_t         start, end, rss, cpu0, cpu1, deadline;

    start = lpg_bench_now_us() + 300000;
    end = start + (int64_t) (b->o.seconds * 1e6);
    lpg_bench_tell(b, LPG_BENCH_MSG_WINDOW, start, end);

    for (i = 0; i < b->o.publishers; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1
            || (pids[i] = fork()) == -1) {
            perror("lpgate-bench: publisher");
            return LPG_ERROR;
        }
        if (pids[i] == 0) {
            close(sv[0]);
            lpg_bench_pub_run(&b->o, sv[1], i, b->o.publishers, start, end);
        }
        close(sv[1]);
        pub[i] = sv[0];
    }

    while (lpg_bench_now_us() < start) {
        usleep(1000);
    }
    lpg_bench_proc_sample(b->o.pids, b->o.npids, &rss, &cpu0);
    while (lpg_bench_now_us() < end) {
        usleep(10000);
    }
    lpg_bench_proc_sample(b->o.pids, b->o.npids, &rss, &cpu1);
    b->cpu_us = cpu1 - cpu0;

    /* every publisher tells its channels' last sequence numbers */
    deadline = lpg_bench_now_us() + 30000000;
    while (ended < b->o.publishers) {
        left = (int) ((deadline - lpg_bench_now_us()) / 1000);
        if (left <= 0) {
            fprintf(stderr, "lpgate-bench: publishers did not finish\n");
            return LPG_ERROR;
        }
        for (i = 0; i < b->o.publishers; i++) {
            pfd[i].fd = pub[i];
            pfd[i].events = POLLIN;
        }
        if (poll(pfd, (nfds_t) b->o.publishers, left) <= 0) {
            continue;
        }
        for (i = 0; i < b->o.publishers; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP))) {
                continue;
            }
            if (lpg_bench_full(pub[i], &m, sizeof(m), false) != LPG_OK) {
                fprintf(stderr, "lpgate-bench: publisher %d failed\n", i);
                return LPG_ERROR;
            }
            if (m.a < 0) {
                b->published += m.b;
                ended++;
                close(pub[i]);
                pub[i] = -1;
            } else {
                lpg_bench_tell(b, LPG_BENCH_MSG_EXPECT, m.a, m.b);
            }
        }
    }

    for (i = 0; i < b->o.publishers; i++) {
        int status;
        (void) waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "lpgate-bench: publisher %d failed\n", i);
            return LPG_ERROR;
        }
    }

    lpg_bench_tell(b, LPG_BENCH_MSG_GO, 0, 0);
    if (lpg_bench_gather(b->ctl, b->nclients, LPG_BENCH_MSG_DONE, b->o.timeout,
                         NULL)
        < b->nclients)
    {
        fprintf(stderr, "lpgate-bench: not every poll caught up after %.0f s\n",
                b->o.timeout);
        b->timed_out = true;
    }

    b->rounds_us = end - start;

    return LPG_OK;
}


static int
lpg_bench_collect(lpg_bench_t *b)
{
    lpg_bench_result_t r;
    lpg_bench_hist_t  *h = malloc(sizeof(*h)), *hr = malloc(sizeof(*hr));
    int                i;

    if (h == NULL || hr == NULL) {
        free(h);
        free(hr);
        return LPG_ERROR;
    }

    lpg_bench_tell(b, LPG_BENCH_MSG_REPORT, 0, 0);

    for (i = 0; i < b->nclients; i++) {
        if (lpg_bench_full(b->ctl[i], &r, sizeof(r), false) != LPG_OK
            || lpg_bench_full(b->ctl[i], h, sizeof(*h), false) != LPG_OK
            || lpg_bench_full(b->ctl[i], hr, sizeof(*hr), false) != LPG_OK)
        {
            fprintf(stderr, "lpgate-bench: client %d did not report\n", i);
            free(h);
            free(hr);
            return LPG_ERROR;
        }

        b->res.expected += r.expected;
        b->res.received += r.received;
        b->res.in_window += r.in_window;
        b->res.replies += r.replies;
        b->res.duplicates += r.duplicates;
        b->res.errors += r.errors;
        b->res.reconnects += r.reconnects;
        lpg_bench_hist_merge(&b->hist, h);
        lpg_bench_hist_merge(&b->hist_read, hr);
    }

    free(h);
    free(hr);

    return LPG_OK;
}


static const char *
lpg_bench_mode_name(lpg_bench_mode_e m)
{
    return m == LPG_BENCH_FANOUT ? "fanout"
        : m == LPG_BENCH_PRIVATE ? "private"
                                 : "throughput";
}


static void
lpg_bench_print(lpg_bench_t *b)
{
    const lpg_bench_opts_t *o = &b->o;
    double                  p50, p90, p99, max, rate, cpu_per, rss_per;
    double                  rp50, rp99, rmax;
    int64_t                 deliveries;
    const char             *proto = lpg_bench_proto_name(o);

    p50 = (double) lpg_bench_hist_pct(&b->hist, 50) / 1000.0;
    p90 = (double) lpg_bench_hist_pct(&b->hist, 90) / 1000.0;
    p99 = (double) lpg_bench_hist_pct(&b->hist, 99) / 1000.0;
    max = (double) b->hist.max / 1000.0;
    rp50 = (double) lpg_bench_hist_pct(&b->hist_read, 50) / 1000.0;
    rp99 = (double) lpg_bench_hist_pct(&b->hist_read, 99) / 1000.0;
    rmax = (double) b->hist_read.max / 1000.0;

    deliveries =
        o->mode == LPG_BENCH_THROUGHPUT ? b->res.in_window : b->res.received;
    rate = b->rounds_us > 0 ? (double) deliveries * 1e6 / (double) b->rounds_us
                            : 0;
    cpu_per = deliveries > 0 ? (double) b->cpu_us / (double) deliveries : 0;
    rss_per = (double) (b->rss1 - b->rss0) / (double) o->polls;

    printf("lpgate-bench %s %s: %d polls on %d channel(s), %d client "
           "process(es)\n",
           proto, lpg_bench_mode_name(o->mode), o->polls, o->channels,
           b->nclients);
    printf("  parked in %.2f s; server RSS %lld -> %lld KiB (%.2f KiB per "
           "poll)\n",
           b->park_s, (long long) b->rss0, (long long) b->rss1, rss_per);
    if (o->idle_seconds > 0) {
        printf("  server CPU while parked: %.2f %%\n", b->idle_pct);
    }
    printf("  delivered %lld of %lld (errors %lld, duplicates %lld, "
           "reconnects %lld, replies %lld, published %lld)\n",
           (long long) b->res.received, (long long) b->res.expected,
           (long long) b->res.errors, (long long) b->res.duplicates,
           (long long) b->res.reconnects, (long long) b->res.replies,
           (long long) b->published);
    printf("  latency ms (arrival): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
           p50, p90, p99, max);
    printf("  latency ms (read by lpgate-bench): p50 %.2f  p99 %.2f  "
           "max %.2f\n",
           rp50, rp99, rmax);
    printf("  %.0f deliveries/s; server CPU %.1f ms, %.2f us per delivery\n",
           rate, (double) b->cpu_us / 1000.0, cpu_per);

    printf("SUMMARY {\"label\": \"%s\", \"proto\": \"%s\", \"peer\": \"%s\", "
           "\"mode\": \"%s\", "
           "\"polls\": %d, \"channels\": %d, \"rounds\": %d, "
           "\"expected\": %lld, \"received\": %lld, \"errors\": %lld, "
           "\"duplicates\": %lld, \"replies\": %lld, \"published\": %lld, "
           "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"max_ms\": %.3f, \"read_p50_ms\": %.3f, \"read_p99_ms\": %.3f, "
           "\"read_max_ms\": %.3f, \"deliveries_per_s\": %.0f, "
           "\"cpu_ms\": %.1f, \"cpu_us_per_delivery\": %.2f, "
           "\"rss_kib_before\": %lld, \"rss_kib_after\": %lld, "
           "\"rss_kib_per_poll\": %.3f, \"idle_cpu_pct\": %.3f, "
           "\"park_s\": %.2f, \"complete\": %s}\n",
           o->label, proto, o->nchan ? "nchan" : "lpgate",
           lpg_bench_mode_name(o->mode), o->polls, o->channels,
           o->mode == LPG_BENCH_THROUGHPUT ? 0 : o->rounds,
           (long long) b->res.expected, (long long) b->res.received,
           (long long) b->res.errors, (long long) b->res.duplicates,
           (long long) b->res.replies, (long long) b->published, p50, p90, p99,
           max, rp50, rp99, rmax, rate, (double) b->cpu_us / 1000.0, cpu_per,
           (long long) b->rss0, (long long) b->rss1, rss_per, b->idle_pct,
           b->park_s,
           b->res.received == b->res.expected && !b->timed_out ? "true"
                                                               : "false");
    fflush(stdout);
}


int
main(int argc, char **argv)
{
    static lpg_bench_t b;
    lpg_bench_pub_t   *pub = NULL;
    int64_t            t0, start_last = 0, cpu0, cpu1, rss;
    int                i, ready, rc = LPG_OK;

    if (lpg_bench_args(argc, argv, &b.o) != LPG_OK) {
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);

    if (!b.o.nchan || b.o.mode != LPG_BENCH_THROUGHPUT) {
        pub = lpg_bench_pub_open(&b.o);
        if (pub == NULL) {
            return 2;
        }
        start_last = lpg_bench_pub_last_id(pub);
        if (start_last < 0) {
            return 2;
        }
    }

    lpg_bench_proc_sample(b.o.pids, b.o.npids, &b.rss0, &cpu0);

    t0 = lpg_bench_now_us();
    if (lpg_bench_spawn(&b, start_last) != LPG_OK) {
        return 2;
    }

    ready = lpg_bench_gather(b.ctl, b.nclients, LPG_BENCH_MSG_READY,
                             2 * b.o.timeout + b.o.polls / 1000.0, NULL);
    if (ready < b.nclients) {
        fprintf(stderr,
                "lpgate-bench: only %d of %d clients got their polls "
                "out\n",
                ready, b.nclients);
        rc = LPG_ERROR;
        goto done;
    }

    lpg_bench_quiet(&b);
    b.park_s = (double) (lpg_bench_now_us() - t0) / 1e6;
    lpg_bench_proc_sample(b.o.pids, b.o.npids, &b.rss1, &cpu1);

    if (b.o.idle_seconds > 0) {
        lpg_bench_proc_sample(b.o.pids, b.o.npids, &rss, &cpu0);
        usleep((useconds_t) (b.o.idle_seconds * 1e6));
        lpg_bench_proc_sample(b.o.pids, b.o.npids, &rss, &cpu1);
        b.idle_pct = (double) (cpu1 - cpu0) / (b.o.idle_seconds * 1e4);
    }

    rc = b.o.mode == LPG_BENCH_THROUGHPUT ? lpg_bench_throughput(&b)
                                          : lpg_bench_rounds(&b, pub);

    if (rc == LPG_OK) {
        rc = lpg_bench_collect(&b);
    }

    if (rc == LPG_OK) {
        lpg_bench_print(&b);
    }

done:

    lpg_bench_tell(&b, LPG_BENCH_MSG_STOP, 0, 0);
    for (i = 0; i < b.nclients; i++) {
        close(b.ctl[i]);
        (void) waitpid(b.pid[i], NULL, 0);
    }
    lpg_bench_pub_close(pub);

    if (rc != LPG_OK) {
        return 2;
    }

    return b.res.received == b.res.expected && !b.timed_out ? 0 : 1;
}
