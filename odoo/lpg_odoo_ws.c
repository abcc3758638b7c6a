/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_ws.c: Odoo's /websocket events and answer shape (see
 * lpg_odoo_ws.h): what bus/models/ir_websocket.py and bus/websocket.py of
 * 16.0 and 17.0 accept and send, without the socket.
 */

#include "lpg_odoo_ws.h"
#include "lpg_session.h"
#include "lpg_ws.h"

#include <string.h>
#include <strings.h>


int
lpg_odoo_ws_parse(const uint8_t *msg, size_t len, lpg_odoo_ws_event_t *ev,
                  const char **why)
{
    size_t      i;
    json_t     *root, *name, *data, *v, *ch;
    const char *n;

    memset(ev, 0, sizeof(*ev));
    ev->inactivity = -1;

    root = json_loadb((const char *) msg, len, JSON_DECODE_ANY, NULL);
    if (root == NULL) {
        *why = "invalid JSON";
        return LPG_ERROR;
    }

    name = json_is_object(root) ? json_object_get(root, "event_name") : NULL;
    if (!json_is_string(name)) {
        *why = "no event_name";
        json_decref(root);
        return LPG_ERROR;
    }

    n = json_string_value(name);
    data = json_object_get(root, "data");

    if (strcmp(n, "subscribe") == 0) {
        v = json_is_object(data) ? json_object_get(data, "channels") : NULL;
        if (!json_is_array(v)) {
            *why = "subscribe: channels is not a list";
            json_decref(root);
            return LPG_ERROR;
        }

        json_array_foreach(v, i, ch)
        {
            if (!json_is_string(ch)) {
                *why = "subscribe: a channel is not a string";
                json_decref(root);
                return LPG_ERROR;
            }
        }

        ev->event = LPG_ODOO_WS_SUBSCRIBE;
        ev->channels = json_incref(v);

        v = json_object_get(data, "last");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                *why = "subscribe: last is not a non-negative integer";
                lpg_odoo_ws_event_free(ev);
                json_decref(root);
                return LPG_ERROR;
            }

            ev->last = json_integer_value(v);
        }

    } else if (strcmp(n, "update_presence") == 0) {
        v = json_is_object(data) ? json_object_get(data, "inactivity_period")
                                 : NULL;
        if (!json_is_number(v) || json_number_value(v) < 0) {
            *why = "update_presence: inactivity_period is not a number";
            json_decref(root);
            return LPG_ERROR;
        }

        ev->event = LPG_ODOO_WS_PRESENCE;
        ev->inactivity = (int64_t) json_number_value(v);

        v = json_object_get(data, "im_status_ids_by_model");
        if (json_is_object(v)) {
            ev->im_status = json_incref(v);
        }

    } else {
        ev->event = LPG_ODOO_WS_UNKNOWN;
    }

    json_decref(root);

    return LPG_OK;
}


void
lpg_odoo_ws_event_free(lpg_odoo_ws_event_t *ev)
{
    json_decref(ev->channels);
    json_decref(ev->im_status);
    ev->channels = NULL;
    ev->im_status = NULL;
}


int
lpg_odoo_ws_keys(lpg_sub_t *s, const char *db, const json_t *channels)
{
    size_t      i;
    json_t     *ch;
    const char *str;

    json_array_foreach(channels, i, ch)
    {
        str = json_string_value(ch);

        /* 17+'s discuss.channel_<id> / mail.guest_<token> select records
         * for the session's list (Odoo removes them): not channels */
        if (lpg_session_selector(s->version, str, strlen(str))) {
            continue;
        }

        if (lpg_odoo_ws_key(s, db, str) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return lpg_odoo_ws_key(s, db, "broadcast");
}


int
lpg_odoo_ws_key(lpg_sub_t *s, const char *db, const char *ch)
{
    int       rc;
    json_t   *pair;
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));

    pair = json_pack("[ss]", db, ch);
    rc = pair != NULL ? lpg_json_dump(&b, pair) : LPG_ERROR;
    json_decref(pair);

    if (rc != LPG_OK || b.len > LPG_SUB_KEY_MAX) {
        lpg_buf_free(&b);
        return LPG_ERROR;
    }

    return lpg_sub_add_key(s, &b);
}


int
lpg_odoo_ws_frame(lpg_buf_t *out, const lpg_buf_t *list)
{
    size_t  n;
    uint8_t head[LPG_WS_FRAME_HEAD_MAX];

    n = lpg_ws_frame_head(head, LPG_WS_OP_TEXT, list->len + 2);

    if (lpg_buf_append(out, (const char *) head, n) != LPG_OK
        || lpg_buf_append(out, "[", 1) != LPG_OK
        || lpg_buf_append(out, list->data, list->len) != LPG_OK
        || lpg_buf_append(out, "]", 1) != LPG_OK)
    {
        return LPG_ERROR;
    }

    return LPG_OK;
}


bool
lpg_odoo_ws_same_origin(const char *origin, size_t origin_len, const char *host,
                        size_t host_len, bool https)
{
    size_t      n;
    const char *scheme, *rest, *end;

    if (origin == NULL || host == NULL) {
        return false;
    }

    scheme = https ? "https://" : "http://";
    n = strlen(scheme);

    if (origin_len < n || strncasecmp(origin, scheme, n) != 0) {
        return false;
    }

    /* urlparse(Origin).netloc: up to the first '/', '?' or '#' */
    rest = origin + n;
    for (end = rest; end < origin + origin_len; end++) {
        if (*end == '/' || *end == '?' || *end == '#') {
            break;
        }
    }

    return (size_t) (end - rest) == host_len
        && strncasecmp(rest, host, host_len) == 0;
}
