/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_args.c: lpgate-bench's command line: the options, their
 * defaults per protocol and server (--proto, --peer), their checks, and
 * the protocol's name in the report.
 */

#include "lpg_bench.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void
lpg_bench_usage(FILE *f)
{
    fprintf(
        f,
        "usage: lpgate-bench [options]\n"
        "  --proto=odoo|odoo-ws|ws|sse|socketio|nchan   protocol (odoo)\n"
        "  --peer=lpgate|nchan    the server's kind (lpgate: also Odoo and\n"
        "                         the Node.js peers); nchan: ws, sse and\n"
        "                         long polls (--proto=nchan) against nginx\n"
        "  --mode=fanout|private|throughput   (fanout)\n"
        "  --host=ADDR --port=N   server (127.0.0.1, 8072 odoo / 8080 nchan)\n"
        "  --path=P               route prefix (/longpolling: <P>/poll,\n"
        "                         <P>/ws, <P>/sse, <P>/socket.io/),\n"
        "                         odoo-ws path (/websocket), nchan\n"
        "                         location (/sub, /ws, /sse: <P>/bench-N)\n"
        "  --pub-path=P           nchan publisher location (/pub)\n"
        "  --db=NAME              ?db= on every poll, stream or socket;\n"
        "                         odoo-ws: database\n"
        "                         of the channel keys (the dsn's)\n"
        "  --dsn=CONNINFO         odoo: database to publish into (libpq)\n"
        "  --notify-dsn=CONNINFO  odoo: NOTIFY imbus there after the commit\n"
        "  --polls=N              parked polls or websockets (1000)\n"
        "  --channels=N           fanout 1, private = polls, throughput 20\n"
        "  --rounds=N             fanout/private rounds (5)\n"
        "  --seconds=S            throughput publishing time (10)\n"
        "  --publishers=N         throughput publisher processes (2)\n"
        "  --rate=R               throughput messages per second, all\n"
        "                         publishers together (0: as fast as they\n"
        "                         can)\n"
        "  --procs=N              client processes, at least (polls/15000)\n"
        "  --sources=N            loopback source addresses (auto)\n"
        "  --size=N               padding bytes per message (0)\n"
        "  --idle-seconds=S       sample the parked server's CPU (0: no)\n"
        "  --timeout=S            wait per round / drain (30), twice "
        "that to connect\n"
        "  --pid=PID              server process (repeatable; children "
        "counted)\n"
        "  --label=TEXT           copied into the summary line\n"
        "  --help                 print this help and exit\n");
}


int
lpg_bench_args(int argc, char **argv, lpg_bench_opts_t *o)
{
    static const struct option opts[] = {
        { "proto", required_argument, NULL, 'P' },
        { "peer", required_argument, NULL, 'e' },
        { "mode", required_argument, NULL, 'm' },
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "path", required_argument, NULL, 'a' },
        { "pub-path", required_argument, NULL, 'b' },
        { "db", required_argument, NULL, 'd' },
        { "dsn", required_argument, NULL, 'D' },
        { "notify-dsn", required_argument, NULL, 'N' },
        { "polls", required_argument, NULL, 'n' },
        { "channels", required_argument, NULL, 'c' },
        { "rounds", required_argument, NULL, 'r' },
        { "seconds", required_argument, NULL, 's' },
        { "publishers", required_argument, NULL, 'u' },
        { "rate", required_argument, NULL, 'R' },
        { "procs", required_argument, NULL, 'j' },
        { "sources", required_argument, NULL, 'S' },
        { "size", required_argument, NULL, 'z' },
        { "idle-seconds", required_argument, NULL, 'i' },
        { "timeout", required_argument, NULL, 't' },
        { "pid", required_argument, NULL, 'k' },
        { "label", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 }
    };
    int  ch;
    bool nchan = false;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->pub_path = "/pub";
    o->conninfo = "";
    o->polls = 1000;
    o->rounds = 5;
    o->seconds = 10;
    o->publishers = 2;
    o->timeout = 30;
    o->label = "";

    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'P':
            if (strcmp(optarg, "odoo") == 0) {
                o->proto = LPG_BENCH_ODOO;
            } else if (strcmp(optarg, "odoo-ws") == 0) {
                o->proto = LPG_BENCH_ODOO_WS;
            } else if (strcmp(optarg, "ws") == 0) {
                o->proto = LPG_BENCH_WS;
            } else if (strcmp(optarg, "sse") == 0) {
                o->proto = LPG_BENCH_SSE;
            } else if (strcmp(optarg, "socketio") == 0) {
                o->proto = LPG_BENCH_SOCKETIO;
            } else if (strcmp(optarg, "nchan") == 0) {
                o->proto = LPG_BENCH_NCHAN;
            } else {
                fprintf(stderr, "lpgate-bench: unknown --proto \"%s\"\n",
                        optarg);
                return LPG_ERROR;
            }
            break;
        case 'e':
            if (strcmp(optarg, "nchan") == 0) {
                nchan = true;
            } else if (strcmp(optarg, "lpgate") != 0) {
                fprintf(stderr, "lpgate-bench: unknown --peer \"%s\"\n",
                        optarg);
                return LPG_ERROR;
            }
            break;
        case 'm':
            if (strcmp(optarg, "fanout") == 0) {
                o->mode = LPG_BENCH_FANOUT;
            } else if (strcmp(optarg, "private") == 0) {
                o->mode = LPG_BENCH_PRIVATE;
            } else if (strcmp(optarg, "throughput") == 0) {
                o->mode = LPG_BENCH_THROUGHPUT;
            } else {
                fprintf(stderr, "lpgate-bench: unknown --mode \"%s\"\n",
                        optarg);
                return LPG_ERROR;
            }
            break;
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'a':
            o->path = optarg;
            break;
        case 'b':
            o->pub_path = optarg;
            break;
        case 'd':
            o->db_name = optarg;
            break;
        case 'D':
            o->conninfo = optarg;
            break;
        case 'N':
            o->notify_dsn = optarg;
            break;
        case 'n':
            o->polls = atoi(optarg);
            break;
        case 'c':
            o->channels = atoi(optarg);
            break;
        case 'r':
            o->rounds = atoi(optarg);
            break;
        case 's':
            o->seconds = atof(optarg);
            break;
        case 'u':
            o->publishers = atoi(optarg);
            break;
        case 'R':
            o->rate = atof(optarg);
            break;
        case 'j':
            o->procs = atoi(optarg);
            break;
        case 'S':
            o->sources = atoi(optarg);
            break;
        case 'z':
            o->size = atoi(optarg);
            break;
        case 'i':
            o->idle_seconds = atof(optarg);
            break;
        case 't':
            o->timeout = atof(optarg);
            break;
        case 'k':
            if (o->npids == (int) LPG_NELEMS(o->pids) || atoi(optarg) <= 0) {
                fprintf(stderr, "lpgate-bench: bad --pid \"%s\"\n", optarg);
                return LPG_ERROR;
            }
            o->pids[o->npids++] = (pid_t) atoi(optarg);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'H':
            lpg_bench_usage(stdout);
            exit(0);
        default:
            lpg_bench_usage(stderr);
            return LPG_ERROR;
        }
    }

    if (optind != argc) {
        fprintf(stderr, "lpgate-bench: unexpected argument \"%s\"\n",
                argv[optind]);
        return LPG_ERROR;
    }

    /* nchan speaks long polls (--proto=nchan), websockets and
     * EventSource; Odoo's /websocket and Socket.IO it does not */
    if (nchan && o->proto == LPG_BENCH_ODOO) {
        o->proto = LPG_BENCH_NCHAN;
    }
    if (nchan
        && (o->proto == LPG_BENCH_ODOO_WS || o->proto == LPG_BENCH_SOCKETIO)) {
        fprintf(stderr,
                "lpgate-bench: --peer=nchan speaks --proto=odoo (long "
                "polls), ws and sse only\n");
        return LPG_ERROR;
    }
    o->nchan = nchan || o->proto == LPG_BENCH_NCHAN;

    if (o->port == 0) {
        o->port = o->nchan ? 8080 : 8072;
    }
    if (o->path == NULL) {
        o->path = o->proto == LPG_BENCH_ODOO_WS ? "/websocket"
            : !o->nchan                         ? "/longpolling"
            : o->proto == LPG_BENCH_WS          ? "/ws"
            : o->proto == LPG_BENCH_SSE         ? "/sse"
                                                : "/sub";
    }
    if (o->channels == 0) {
        o->channels = o->mode == LPG_BENCH_FANOUT ? 1
            : o->mode == LPG_BENCH_PRIVATE        ? o->polls
                                                  : 20;
    }

    if (o->polls < 1 || o->polls > LPG_BENCH_MAX_PROCS * LPG_BENCH_PER_PROC
        || o->channels < 1 || o->channels > o->polls || o->rounds < 1
        || o->seconds <= 0 || !(o->rate >= 0) || o->publishers < 1
        || o->publishers > 64
        || (o->mode == LPG_BENCH_THROUGHPUT && o->publishers > o->channels)
        || o->size < 0 || o->size > 65536 || o->sources < 0 || o->sources > 250
        || o->timeout <= 0 || o->port < 1 || o->port > 65535)
    {
        fprintf(stderr,
                "lpgate-bench: an option is out of range "
                "(see --help)\n");
        return LPG_ERROR;
    }

    if (o->mode == LPG_BENCH_PRIVATE && o->channels != o->polls) {
        fprintf(stderr,
                "lpgate-bench: private mode has one channel per "
                "poll\n");
        return LPG_ERROR;
    }

    return LPG_OK;
}


const char *
lpg_bench_proto_name(const lpg_bench_opts_t *o)
{
    switch (o->proto) {
    case LPG_BENCH_ODOO:
        return "odoo";
    case LPG_BENCH_NCHAN:
        return "nchan";
    case LPG_BENCH_ODOO_WS:
        return "odoo-ws";
    case LPG_BENCH_WS:
        return "ws";
    case LPG_BENCH_SSE:
        return "sse";
    case LPG_BENCH_SOCKETIO:
    default:
        return "socketio";
    }
}
