/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_route.c: the routes under longpolling_path.
 *
 * GET|HEAD <path>/health answers Odoo 15's {"status": "pass"} while the
 * master, every worker and the master's database connection are up (read
 * from the shared segment), else 503 with what is down.  POST <path>/poll,
 * <path>/im_status and <path>/send are Odoo's JSON routes.  GET /websocket
 * is Odoo 16+'s bus (lpg_websocket.h); the routes under /websocket/ are
 * odoo/lpg_odoo_wsroutes'.  GET <path>/ws is the plain WebSocket API
 * (lpg_wsapi.h), GET <path>/sse Server-Sent Events (lpg_sse.h),
 * <path>/socket.io/ a Socket.IO server (lpg_socketio.h).  Anything else
 * under or outside the path is 404; a known route with a wrong method 405.
 */

#include "lpg_route.h"
#include "lpg_bus.h"
#include "lpg_imstatus.h"
#include "lpg_metrics.h"
#include "lpg_odoo_wsroutes.h"
#include "lpg_poll.h"
#include "lpg_send.h"
#include "lpg_socketio.h"
#include "lpg_sse.h"
#include "lpg_websocket.h"
#include "lpg_wsapi.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef void (*lpg_route_handler_pt)(lpg_http_conn_t          *c,
                                     const lpg_http_request_t *r);


typedef struct {
    const char          *name;    /* after longpolling_path */
    unsigned             methods; /* bit per enum http_method */
    const char          *allow;
    lpg_route_handler_pt handler;
} lpg_route_t;


static void lpg_route_health(lpg_http_conn_t *c, const lpg_http_request_t *r);
static void lpg_route_poll(lpg_http_conn_t *c, const lpg_http_request_t *r);
static void lpg_route_demo(lpg_http_conn_t *c, const lpg_http_request_t *r);
static void lpg_route_demo_js(lpg_http_conn_t *c, const lpg_http_request_t *r);


/* worker/lpg_demo_data.c, generated from contrib/ by scripts/embed.sh */
extern const char   lpg_demo_html[];
extern const size_t lpg_demo_html_len;
extern const char   lpg_demo_js[];
extern const size_t lpg_demo_js_len;
static void         lpg_route_status(lpg_http_conn_t *c, int status,
                                     const char *headers);


static lpg_http_ctx_t lpg_route_ctx;

static const lpg_route_t lpg_routes[] = {
    { "/health", (1u << HTTP_GET) | (1u << HTTP_HEAD), "GET, HEAD",
      lpg_route_health },
    { "/poll", (1u << HTTP_POST) | (1u << HTTP_GET) | (1u << HTTP_OPTIONS),
      "GET, POST, OPTIONS", lpg_route_poll },
    { "/send", (1u << HTTP_POST), "POST", lpg_send_request },
    { "/im_status", (1u << HTTP_POST), "POST", lpg_imstatus_request },
    { "/demo", (1u << HTTP_GET) | (1u << HTTP_HEAD), "GET, HEAD",
      lpg_route_demo },
    { "/demo/lpgate.js", (1u << HTTP_GET) | (1u << HTTP_HEAD), "GET, HEAD",
      lpg_route_demo_js },
    { "/ws", (1u << HTTP_GET), "GET", lpg_wsapi_request },
    { "/sse", (1u << HTTP_GET), "GET", lpg_sse_request },
};


void
lpg_route_init(const lpg_http_ctx_t *ctx)
{
    lpg_route_ctx = *ctx;
    lpg_metrics_init(ctx);
    lpg_odoo_wsroutes_init(ctx);
    lpg_wsapi_init(ctx);
    lpg_socketio_init(ctx);
    lpg_sse_init(ctx);
}


void
lpg_route_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    size_t             i, plen, nlen;
    char               allow[128];
    const char        *prefix = lpg_route_ctx.conf->longpolling_path;
    const lpg_route_t *rt;

    if (r->admin) {
        /* the admin listener serves metrics and health, nothing else */
        if (r->path_len == 8 && memcmp(r->path, "/metrics", 8) == 0) {
            lpg_metrics_request(c, r);

        } else if (r->path_len == 7 && memcmp(r->path, "/health", 7) == 0) {
            lpg_route_health(c, r);

        } else {
            lpg_route_status(c, 404, NULL);
        }

        return;
    }

    /* deliveries first: what the master has rung for goes out before
     * this request is served */
    lpg_bus_catch_up();

    if (r->path_len == 10 && memcmp(r->path, "/websocket", 10) == 0) {
        /* Odoo 16+: the bus on one socket (?version= is ignored) */
        lpg_websocket_request(c, r);
        return;
    }

    /* Odoo 16+'s /websocket/health, peek_notifications and
     * update_bus_presence (odoo/lpg_odoo_wsroutes.h) */
    if (lpg_odoo_wsroutes_request(c, r)) {
        return;
    }

    plen = strlen(prefix);

    if (r->path_len < plen || memcmp(r->path, prefix, plen) != 0) {
        lpg_route_status(c, 404, NULL);
        return;
    }

    /* Socket.IO: every method, its own errors (lpg_socketio.h) */
    if ((r->path_len - plen == 11
         && memcmp(r->path + plen, "/socket.io/", 11) == 0)
        || (r->path_len - plen == 10
            && memcmp(r->path + plen, "/socket.io", 10) == 0))
    {
        lpg_socketio_request(c, r);
        return;
    }

    for (i = 0; i < LPG_NELEMS(lpg_routes); i++) {
        rt = &lpg_routes[i];
        nlen = strlen(rt->name);

        if (r->path_len - plen != nlen
            || memcmp(r->path + plen, rt->name, nlen) != 0) {
            continue;
        }

        if (r->method >= 32 || !(rt->methods & (1u << r->method))) {
            snprintf(allow, sizeof(allow), "Allow: %s\r\n", rt->allow);
            lpg_route_status(c, 405, allow);
            return;
        }

        rt->handler(c, r);
        return;
    }

    lpg_route_status(c, 404, NULL);
}


static void
lpg_route_health(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int     status;
    bool    ok;
    char    why[512], *text;
    json_t *j;

    ok = lpg_shm_healthy(lpg_route_ctx.shm, lpg_time_mono_ms(), why,
                         sizeof(why));

    if (ok) {
        j = json_pack("{s:s}", "status", "pass");
        status = 200;

    } else {
        j = json_pack("{s:s, s:s}", "status", "fail", "reason", why);
        status = 503;
    }

    text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);

    if (text == NULL) {
        lpg_route_status(c, 500, NULL);
        return;
    }

    lpg_http_respond(c, status, "application/json",
                     "Cache-Control: no-store\r\n", text, strlen(text));
    free(text);
}


static void
lpg_route_poll(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    if (r->method == HTTP_OPTIONS) {
        /* CORS preflight, as Odoo answers it for cors="*" routes */
        lpg_http_respond(c, 200, NULL,
                         "Access-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: POST\r\n"
                         "Access-Control-Allow-Headers: Origin, "
                         "X-Requested-With, Content-Type, Accept, "
                         "Authorization\r\n"
                         "Access-Control-Max-Age: 86400\r\n",
                         "", 0);
        return;
    }

    lpg_poll_request(c, r);
}


static void
lpg_route_demo(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    if (!lpg_route_ctx.conf->demo) {
        lpg_route_status(c, 404, NULL);
        return;
    }

    lpg_http_respond(c, 200, "text/html; charset=utf-8",
                     "Cache-Control: no-store\r\n", lpg_demo_html,
                     lpg_demo_html_len);
}


static void
lpg_route_demo_js(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    if (!lpg_route_ctx.conf->demo) {
        lpg_route_status(c, 404, NULL);
        return;
    }

    lpg_http_respond(c, 200, "text/javascript; charset=utf-8",
                     "Cache-Control: no-store\r\n", lpg_demo_js,
                     lpg_demo_js_len);
}


static void
lpg_route_status(lpg_http_conn_t *c, int status, const char *headers)
{
    const char *body;

    switch (status) {
    case 404:
        body = "404 Not Found\n";
        break;
    case 405:
        body = "405 Method Not Allowed\n";
        break;
    default:
        body = "500 Internal Server Error\n";
        break;
    }

    lpg_http_respond(c, status, NULL, headers, body, strlen(body));
}
