/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_ws.h: Odoo 16/17's /websocket protocol, whatever carries it.
 *
 * The client's events (`subscribe {channels, last}`, `update_presence
 * {inactivity_period, im_status_ids_by_model}`), the subscription keys of
 * a subscribe (each client string as [db, str] plus "broadcast"), the
 * reset of a `last` above the largest bus id, the notification batch as
 * one TEXT frame `[{"id": N, "message": {...}}, ...]`, and the cross-site
 * check of ODOO_BUS_PUBLIC_SAMESITE_WS.  No I/O and no libev: the
 * transport (worker/lpg_websocket.c) owns the socket and the timers.
 */

#ifndef LPG_ODOO_WS_H
#define LPG_ODOO_WS_H


#include "lpg_json.h"
#include "lpg_sub.h"

#include <jansson.h>


/* the shared-bytes shape of a framed batch (lpg_sub_shared_find): apart
 * from the poll's shapes, which are Odoo versions */
#define LPG_ODOO_WS_SHAPE(version) (0x10000 + (version))


typedef enum {
    LPG_ODOO_WS_UNKNOWN = 0, /* an event Odoo ignores */
    LPG_ODOO_WS_SUBSCRIBE,
    LPG_ODOO_WS_PRESENCE
} lpg_odoo_ws_event_e;


/* one client message; channels and im_status are owned (json_decref) */
typedef struct {
    lpg_odoo_ws_event_e event;
    json_t             *channels;   /* subscribe: an array of strings */
    int64_t             last;       /* subscribe */
    int64_t             inactivity; /* update_presence: ms, -1 none */
    json_t             *im_status;  /* update_presence: by model, or NULL */
} lpg_odoo_ws_event_t;


/*
 * Parses a client message: LPG_OK with ev filled (the UNKNOWN event for a
 * well-formed one Odoo ignores), LPG_ERROR with *why for what Odoo logs
 * and ignores (bad JSON, no event_name, a non-string channel, ...).
 */
int  lpg_odoo_ws_parse(const uint8_t *msg, size_t len, lpg_odoo_ws_event_t *ev,
                       const char **why) LPG_MUSTCHECK;
void lpg_odoo_ws_event_free(lpg_odoo_ws_event_t *ev);

/* adds the client's channels ([db, str]; 17+'s record selectors left
 * out) and "broadcast" to s, whose db and version are set */
/* adds json_dump([db, ch]) to s, as Odoo's channel_with_db and bus_bus
 * store a client's string channel */
int lpg_odoo_ws_key(lpg_sub_t *s, const char *db, const char *ch) LPG_MUSTCHECK;

int lpg_odoo_ws_keys(lpg_sub_t *s, const char *db,
                     const json_t *channels) LPG_MUSTCHECK;

/*
 * The notification list (lpg_odoo_list_add's entries, version >= 15) as
 * one TEXT frame holding `[list]`, appended to out.
 */
int lpg_odoo_ws_frame(lpg_buf_t *out, const lpg_buf_t *list) LPG_MUSTCHECK;

/*
 * ODOO_BUS_PUBLIC_SAMESITE_WS: true when the Origin's scheme and host:port
 * are the request's (host: Host or X-Forwarded-Host, https: the request
 * came over TLS as X-Forwarded-Proto says).
 */
bool lpg_odoo_ws_same_origin(const char *origin, size_t origin_len,
                             const char *host, size_t host_len, bool https);


#endif /* LPG_ODOO_WS_H */
