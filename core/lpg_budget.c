/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_budget.c: the connection formula, its refusal text and --sizing.
 *
 * Nothing here talks to PostgreSQL or the kernel; master/lpg_main.c reads
 * max_connections, the other nodes' claims and the rlimits and hands them
 * in, which keeps this file unit-testable.
 */

#include "lpg_budget.h"

#include <errno.h>
#include <stdlib.h>
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
    return b->max_connections < 0
        || lpg_budget_need(b) + b->others < lpg_budget_allowed(b);
}


void
lpg_budget_claim_name(const char *node, int need, char *buf, size_t len)
{
    snprintf(buf, len, LPG_BUDGET_CLAIM_PREFIX "%s:%d", node, need);
}


bool
lpg_budget_node_valid(const char *node)
{
    size_t n;

    n = strlen(node);
    if (n == 0 || n > LPG_BUDGET_NODE_MAX) {
        return false;
    }

    return strspn(node,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789._:-")
        == n;
}


void
lpg_budget_add_claim(lpg_budget_t *b, const char *application_name)
{
    long               claim;
    size_t             plen, nlen;
    char              *end;
    const char        *node, *colon;
    lpg_budget_node_t *o;

    plen = sizeof(LPG_BUDGET_CLAIM_PREFIX) - 1;

    if (application_name == NULL
        || strncmp(application_name, LPG_BUDGET_CLAIM_PREFIX, plen) != 0)
    {
        return;
    }

    /* the node name may hold ':' (host:port): the claim is the last field */
    node = application_name + plen;
    colon = strrchr(node, ':');
    if (colon == NULL || colon == node || colon[1] == '\0') {
        return;
    }

    errno = 0;
    claim = strtol(colon + 1, &end, 10);
    if (*end != '\0' || errno != 0 || claim < 0 || claim > 1000000) {
        return;
    }

    nlen = (size_t) (colon - node);
    if (nlen > LPG_BUDGET_NODE_MAX) {
        return;
    }

    if (b->node_name != NULL && strlen(b->node_name) == nlen
        && strncmp(b->node_name, node, nlen) == 0)
    {
        b->self_seen = true;
        return;
    }

    if (b->nothers < LPG_BUDGET_NODES_MAX) {
        o = &b->nodes[b->nothers];
        memcpy(o->name, node, nlen);
        o->name[nlen] = '\0';
        o->claim = (int) claim;
    }

    b->nothers++;
    b->others += (int) claim;
}


void
lpg_budget_explain(const lpg_budget_t *b, char *buf, size_t len)
{
    int    need, allowed, room, procs, maxconn, workers;
    size_t off;

    need = lpg_budget_need(b);
    allowed = lpg_budget_allowed(b);
    procs = 1 + b->workers + b->max_cron_threads;

    if (b->nothers == 0) {
        off = snprintf(buf, len,
                       "connection budget exceeded: (1 + workers + "
                       "max_cron_threads) * db_maxconn < max_connections - "
                       "superuser_reserved_connections does not hold: "
                       "(1 + %d + %d) * %d = %d, but %d - %d = %d.",
                       b->workers, b->max_cron_threads, b->db_maxconn, need,
                       b->max_connections, b->reserved, allowed);

    } else {
        off = snprintf(buf, len,
                       "connection budget exceeded: (1 + workers + "
                       "max_cron_threads) * db_maxconn + the other nodes' "
                       "claims < max_connections - "
                       "superuser_reserved_connections does not hold: "
                       "(1 + %d + %d) * %d = %d, plus %d claimed by %d other "
                       "node(s) (",
                       b->workers, b->max_cron_threads, b->db_maxconn, need,
                       b->others, b->nothers);

        for (int i = 0; i < b->nothers && i < LPG_BUDGET_NODES_MAX; i++) {
            if (off < len) {
                off +=
                    snprintf(buf + off, len - off, "%s%s %d", i > 0 ? ", " : "",
                             b->nodes[i].name, b->nodes[i].claim);
            }
        }

        if (off < len) {
            off += snprintf(buf + off, len - off, "%s) = %d, but %d - %d = %d.",
                            b->nothers > LPG_BUDGET_NODES_MAX ? ", ..." : "",
                            need + b->others, b->max_connections, b->reserved,
                            allowed);
        }
    }

    if (off >= len) {
        return;
    }

    /* the largest db_maxconn and workers that fit beside the others */
    room = allowed - b->others;
    maxconn = room > 1 ? (room - 1) / procs : 0;
    workers =
        room > 1 ? (room - 1) / b->db_maxconn - 1 - b->max_cron_threads : 0;

    off += snprintf(buf + off, len - off, " Change one of:");

    if (maxconn >= 1 && off < len) {
        off += snprintf(buf + off, len - off, " --db-maxconn=%d or less;",
                        maxconn);
    }

    if (workers >= 1 && off < len) {
        off +=
            snprintf(buf + off, len - off, " --workers=%d or less;", workers);
    }

    if (b->nothers > 0 && off < len) {
        off += snprintf(buf + off, len - off,
                        " stop another node or shrink its claim;");
    }

    if (off < len) {
        snprintf(buf + off, len - off,
                 " or raise max_connections in postgresql.conf to %d or more "
                 "(a PostgreSQL restart).",
                 need + b->others + b->reserved + 1);
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

        lpg_budget_cluster(b, "", out);

        if (!lpg_budget_fits(b)) {
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

    if (!lpg_budget_fits(b)) {
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


void
lpg_budget_cluster(const lpg_budget_t *b, const char *indent, FILE *out)
{
    int i, need, allowed, total;

    need = lpg_budget_need(b);
    allowed = lpg_budget_allowed(b);
    total = need + b->others;

    fprintf(out, "%scluster:        this node \"%s\" claims %d", indent,
            b->node_name ? b->node_name : "", need);

    if (b->nothers == 0) {
        fprintf(out, "; no other lpgate node claims connections here\n");

    } else {
        fprintf(out, "; %d other node(s) claim %d:", b->nothers, b->others);
        for (i = 0; i < b->nothers && i < LPG_BUDGET_NODES_MAX; i++) {
            fprintf(out, "%s \"%s\" %d", i > 0 ? "," : "", b->nodes[i].name,
                    b->nodes[i].claim);
        }

        fprintf(out, "%s\n", b->nothers > LPG_BUDGET_NODES_MAX ? ", ..." : "");
    }

    if (b->max_connections >= 0) {
        fprintf(out,
                "%s                %d + %d = %d %s %d - %d = %d: %s; a "
                "further node may claim up to %d\n",
                indent, need, b->others, total,
                total < allowed ? "<" : ">=", b->max_connections, b->reserved,
                allowed, total < allowed ? "fits" : "DOES NOT FIT",
                allowed - total - 1 > 0 ? allowed - total - 1 : 0);
    }

    if (b->self_seen) {
        fprintf(out,
                "%s                a claim under this node's name is live "
                "(this node runs, or a binary upgrade's old master): counted "
                "once; node names must be unique\n",
                indent);
    }
}
