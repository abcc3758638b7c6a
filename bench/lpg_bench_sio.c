/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bench_sio.c: lpgate-bench's Socket.IO v4 client (--proto=socketio),
 * on engine.io 4's websocket transport opened directly
 * (<path>/socket.io/?EIO=4&transport=websocket, lpg_bench_ws.c's socket).
 *
 * One engine.io packet per text frame: the server's open packet
 * 0{"sid",...,"pingInterval","pingTimeout"} is answered with the connect
 * packet of the default namespace (40); its 40{"sid"} with the event
 * 42["subscribe",{"channels":["bench-N"],"last":L}] (the form lpgate and
 * the Node.js peer both accept; L the largest id seen, so a reconnect
 * resumes).  Each 42["notification",{"id","channel","message"}] is checked
 * and timed as a poll answer is (lpg_bench_parse); an engine.io PING (2)
 * gets its PONG (3).  A refused connect (44), a namespace disconnect (41),
 * an engine.io close (1) or an unknown packet closes the socket, which
 * reconnects; any other event (an error event) is counted as an error.
 */

#include "lpg_bench_client.h"

#include <stdio.h>
#include <string.h>


#define LPG_BENCH_SIO_NOTE "42[\"notification\","


static void
lpg_bench_sio_subscribe(lpg_bench_client_t *cl, lpg_bench_conn_t *c)
{
    char ev[126];
    int  n;

    n = snprintf(ev, sizeof(ev),
                 "42[\"subscribe\",{\"channels\":[\"bench-%d\"],"
                 "\"last\":%lld}]",
                 c->channel, (long long) c->last);

    c->sio = LPG_BENCH_SIO_CONNECTED;
    lpg_bench_ws_subscribed(cl, c, ev, n);
}


bool
lpg_bench_sio_text(lpg_bench_client_t *cl, lpg_bench_conn_t *c, const char *p,
                   size_t len, int64_t *now)
{
    size_t note = sizeof(LPG_BENCH_SIO_NOTE) - 1;

    if (len >= note && memcmp(p, LPG_BENCH_SIO_NOTE, note) == 0) {
        lpg_bench_arrived(cl, now);
        lpg_bench_parse(cl, c, p + note, p + len, now);
        return true;
    }

    if (len == 0) {
        goto bad;
    }

    switch (p[0]) {
    case '0': /* open */
        if (c->sio != LPG_BENCH_SIO_OPENING) {
            goto bad;
        }
        c->sio = LPG_BENCH_SIO_CONNECTING;
        lpg_bench_ws_send(cl, c, LPG_BENCH_WS_TEXT, "40", 2);
        return true;

    case '1': /* the server closes the session */
        lpg_bench_close(cl, c, false);
        return false;

    case '2': /* ping: the pong echoes its data */
        if (len > 125) {
            goto bad;
        }
        {
            char pong[126];
            pong[0] = '3';
            memcpy(pong + 1, p + 1, len - 1);
            lpg_bench_ws_send(cl, c, LPG_BENCH_WS_TEXT, pong, len);
        }
        return true;

    case '3': /* pong */
    case '6': /* noop */
        return true;

    case '4': /* a Socket.IO packet */
        break;

    default:
        goto bad;
    }

    if (len >= 2 && p[1] == '0' && c->sio == LPG_BENCH_SIO_CONNECTING) {
        lpg_bench_sio_subscribe(cl, c);
        return true;
    }

    if (len >= 2 && (p[1] == '2' || p[1] == '3')) {
        /* an ack (43) is fine; an event other than notification is the
         * server's complaint (an "error" event) */
        if (p[1] == '2') {
            fprintf(stderr, "lpgate-bench: socket.io event: %.*s\n",
                    (int) (len > 200 ? 200 : len), p);
            cl->res.errors++;
        }
        return true;
    }

bad:

    /* 44 (connect refused), 41 (namespace disconnect), anything else */
    fprintf(stderr, "lpgate-bench: socket.io packet: %.*s\n",
            (int) (len > 200 ? 200 : len), p);
    lpg_bench_close(cl, c, true);

    return false;
}
