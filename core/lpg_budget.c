/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_budget.c: the connection formula, its refusal text and --sizing.
 *
 * Nothing here talks to PostgreSQL or the kernel; master/lpg_main.c reads
 * max_connections and the rlimits and hands them in, which keeps this file
 * unit-testable.
 */

#include "lpg_budget.h"

#include <string.h>


int
lpg_budget_need(const lpg_budget_t *b)
{
    return (1 + b->workers + b->max_cron_threads) * b->db_maxconn;
}


int
lpg_budget_allowed(const lpg_budget_t *b)
{
    if (b->max_connections < 0) {
        return -1;
    }

    return b->max_connections - b->reserved;
}


bool
lpg_budget_fits(const lpg_budget_t *b)
{
    return b->max_connections < 0 || lpg_budget_need(b) < lpg_budget_allowed(b);
}


void
lpg_budget_explain(const lpg_budget_t *b, char *buf, size_t len)
{
    int    need, allowed, procs, maxconn, workers;
    size_t off;

    need = lpg_budget_need(b);
    allowed = lpg_budget_allowed(b);
    procs = 1 + b->workers + b->max_cron_threads;

    off = snprintf(buf, len,
                   "connection budget exceeded: (1 + workers + "
                   "max_cron_threads) * db_maxconn < max_connections - "
                   "superuser_reserved_connections does not hold: "
                   "(1 + %d + %d) * %d = %d, but %d - %d = %d.",
                   b->workers, b->max_cron_threads, b->db_maxconn, need,
                   b->max_connections, b->reserved, allowed);
    if (off >= len) {
        return;
    }

    /* the largest db_maxconn and workers that fit, if any do */
    maxconn = allowed > 1 ? (allowed - 1) / procs : 0;
    workers = allowed > 1
        ? (allowed - 1) / b->db_maxconn - 1 - b->max_cron_threads
        : 0;

    off += snprintf(buf + off, len - off, " Change one of:");

    if (maxconn >= 1 && off < len) {
        off += snprintf(buf + off, len - off, " --db-maxconn=%d or less;",
                        maxconn);
    }

    if (workers >= 1 && off < len) {
        off +=
            snprintf(buf + off, len - off, " --workers=%d or less;", workers);
    }

    if (off < len) {
        snprintf(buf + off, len - off,
                 " or raise max_connections in postgresql.conf to %d or more "
                 "(a PostgreSQL restart).",
                 need + b->reserved + 1);
    }
}


long
lpg_budget_polls_per_worker(const lpg_budget_t *b)
{
    long n;

    n = b->fd_soft - LPG_BUDGET_FD_RESERVE - b->db_maxconn;

    return n > 0 ? n : 0;
}


void
lpg_budget_report(const lpg_budget_t *b, const char *why, FILE *out)
{
    int  need, allowed;
    long per, total;
    char buf[1024];

    need = lpg_budget_need(b);
    allowed = lpg_budget_allowed(b);

    fprintf(out, "lpgate sizing\n\n");
    fprintf(out,
            "settings:       workers %d, max_cron_threads %d, "
            "db_maxconn %d\n",
            b->workers, b->max_cron_threads, b->db_maxconn);
    fprintf(out,
            "formula:        (1 + workers + max_cron_threads) * "
            "db_maxconn < max_connections - "
            "superuser_reserved_connections\n");

    if (b->max_connections < 0) {
        fprintf(out, "database:       could not read max_connections (%s)\n",
                why ? why : "no database");
        fprintf(out,
                "connections:    (1 + %d + %d) * %d = %d, so the server "
                "needs max_connections >= %d + "
                "superuser_reserved_connections + 1\n",
                b->workers, b->max_cron_threads, b->db_maxconn, need, need);

    } else {
        fprintf(out,
                "database:       max_connections %d, "
                "superuser_reserved_connections %d\n",
                b->max_connections, b->reserved);
        fprintf(out,
                "connections:    (1 + %d + %d) * %d = %d %s %d - %d = "
                "%d: %s\n",
                b->workers, b->max_cron_threads, b->db_maxconn, need,
                need < allowed ? "<" : ">=", b->max_connections, b->reserved,
                allowed, need < allowed ? "fits" : "DOES NOT FIT");

        if (need >= allowed) {
            lpg_budget_explain(b, buf, sizeof(buf));
            fprintf(out, "                %s\n", buf);
        }
    }

    per = lpg_budget_polls_per_worker(b);
    total = per * b->workers;

    fprintf(out,
            "fd limit:       %ld per process (soft), %ld (hard); lpgate "
            "raises the soft limit to the hard one at start\n",
            b->fd_soft, b->fd_hard);
    fprintf(out,
            "parked polls:   %ld per worker (fd limit - %d reserved - "
            "db_maxconn), %ld in total with %d workers\n",
            per, LPG_BUDGET_FD_RESERVE, total, b->workers);
    fprintf(out,
            "kernel memory:  ~%d KiB per idle TCP socket, ~%ld MiB for "
            "%ld parked polls",
            LPG_BUDGET_SOCKET_KIB, total * LPG_BUDGET_SOCKET_KIB / 1024, total);
    if (b->mem_total > 0) {
        fprintf(out, " (machine memory %lld MiB)",
                (long long) (b->mem_total / (1024 * 1024)));
    }
    fprintf(out, "\n");

    fprintf(out, "cpus:           %d\n\nrecommendation: ", b->ncpu);

    if (b->max_connections >= 0 && need >= allowed) {
        fprintf(out, "fix the connection budget first (see above). ");
    }

    if (b->workers > b->ncpu) {
        fprintf(out,
                "%d workers on %d CPUs: one worker per CPU is enough "
                "unless the fd limit caps polls per worker. ",
                b->workers, b->ncpu);
    }

    fprintf(out,
            "with this fd limit, each 10,000 parked polls need %ld "
            "worker(s); ",
            per > 0 ? (10000 + per - 1) / per : 0);

    if (b->fd_hard > 0 && b->fd_hard < 65536) {
        fprintf(out,
                "raise the hard fd limit (LimitNOFILE=65536 in the "
                "systemd unit) to hold more per worker.\n");

    } else {
        fprintf(out, "the fd limit is ample.\n");
    }
}
