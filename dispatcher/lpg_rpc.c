/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_rpc.c: poll request and NOTIFY payload decoding (the common poll
 * body is read by lpg_rpc_fast.c first).
 *
 * The poll checks follow Odoo's controller: channels must be a list of
 * strings ("bus.Bus only string channels are allowed."), last an integer
 * (0 or absent means the last timeout seconds), options an object whose
 * truthy "peek" asks for an immediate answer.
 */

#include "lpg_rpc.h"

#include <stdlib.h>
#include <string.h>


int
lpg_rpc_poll_parse(const char *buf, size_t len, size_t max_channels,
                   lpg_rpc_poll_t *rp, const char **why)
{
    if (lpg_rpc_poll_fast(buf, len, max_channels, rp)) {
        return LPG_OK;
    }

    return lpg_rpc_poll_parse_json(buf, len, max_channels, rp, why);
}


int
lpg_rpc_poll_parse_json(const char *buf, size_t len, size_t max_channels,
                        lpg_rpc_poll_t *rp, const char **why)
{
    size_t       i;
    json_t      *params, *last, *options, *ch, *peek, *id, *inact;
    json_error_t e;

    memset(rp, 0, sizeof(*rp));
    *why = "Invalid JSON data";

    rp->body = json_loadb(buf, len, 0, &e);
    if (rp->body == NULL || !json_is_object(rp->body)) {
        return LPG_ERROR;
    }

    id = json_object_get(rp->body, "id");
    if (id != NULL) {
        rp->id = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
    }

    params = json_object_get(rp->body, "params");
    if (!json_is_object(params)) {
        *why = "JSON-RPC: \"params\" must be an object";
        return LPG_ERROR;
    }

    rp->channels = json_object_get(params, "channels");
    last = json_object_get(params, "last");
    options = json_object_get(params, "options");

    if (!json_is_array(rp->channels)) {
        *why = "poll() \"channels\" must be a list";
        return LPG_ERROR;
    }

    if (json_array_size(rp->channels) > max_channels) {
        *why = "poll() names more channels than max_channels_per_poll";
        return LPG_ERROR;
    }

    if (last == NULL || json_is_null(last)) {
        rp->last = 0;

    } else if (json_is_integer(last) && json_integer_value(last) >= 0) {
        rp->last = json_integer_value(last);

    } else {
        *why = "poll() \"last\" must be a non-negative integer";
        return LPG_ERROR;
    }

    if (options != NULL && !json_is_null(options) && !json_is_object(options)) {
        *why = "poll() \"options\" must be an object";
        return LPG_ERROR;
    }

    json_array_foreach(rp->channels, i, ch)
    {
        if (!json_is_string(ch)) {
            *why = "bus.Bus only string channels are allowed.";
            return LPG_ERROR;
        }
    }

    peek = options != NULL ? json_object_get(options, "peek") : NULL;
    rp->peek = peek != NULL && json_is_true(peek);

    /* Odoo writes presence only when the key is there; the JS sends ms */
    inact = options != NULL ? json_object_get(options, "bus_inactivity") : NULL;
    rp->inactivity = -1;
    if (json_is_number(inact)) {
        double ms = json_number_value(inact);

        rp->inactivity = ms < 0 ? 0 : ms > 1e12 ? (int64_t) 1e12 : (int64_t) ms;
    }

    return LPG_OK;
}


void
lpg_rpc_poll_free(lpg_rpc_poll_t *rp)
{
    json_decref(rp->body);
    free(rp->id);
    memset(rp, 0, sizeof(*rp));
}


int
lpg_rpc_payload_dbs(const char *payload, size_t len, const char *const *dbs,
                    int ndbs, bool *mask)
{
    int          i, idx;
    size_t       k;
    json_t      *v, *ch, *first;
    json_error_t e;

    v = json_loadb(payload, len, JSON_DECODE_ANY, &e);
    if (v == NULL || !json_is_array(v)) {
        json_decref(v);
        return LPG_ERROR;
    }

    json_array_foreach(v, k, ch)
    {
        first = json_is_array(ch) ? json_array_get(ch, 0) : NULL;

        if (first == NULL || !json_is_string(first)) {
            /* a string channel (8-14): any database may hold it */
            for (i = 0; i < ndbs; i++) {
                mask[i] = true;
            }

            break;
        }

        for (idx = 0; idx < ndbs; idx++) {
            if (strlen(dbs[idx]) == json_string_length(first)
                && memcmp(dbs[idx], json_string_value(first),
                          json_string_length(first))
                    == 0)
            {
                mask[idx] = true;
                break;
            }
        }

        /* ["otherdb", ...]: another database on this server, not ours */
    }

    json_decref(v);

    return LPG_OK;
}
