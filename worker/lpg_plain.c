/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_plain.c: the plain poll API, GET <path>/poll?channels=a,b&last=N.
 *
 * For clients that are not Odoo's: the query string becomes the params of
 * an equivalent JSON-RPC poll (then served like one, lpg_poll.c), the
 * answer is the bare JSON array of notifications, and errors are a 400
 * with {"error": why}.  The Server-Sent Events stream (lpg_sse.c) takes
 * its channels, database and last the same way.
 */

#include "lpg_plain.h"
#include "lpg_odoo_db.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>


static int lpg_plain_unescape(lpg_buf_t *b, const char *s, size_t len);


/* %XX and '+' decoding of one query value into b */
static int
lpg_plain_unescape(lpg_buf_t *b, const char *s, size_t len)
{
    char   c, hex[3];
    size_t i;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c == '+') {
            c = ' ';

        } else if (c == '%' && i + 2 < len && isxdigit((unsigned char) s[i + 1])
                   && isxdigit((unsigned char) s[i + 2]))
        {
            hex[0] = s[i + 1];
            hex[1] = s[i + 2];
            hex[2] = '\0';
            c = (char) strtol(hex, NULL, 16);
            i += 2;
        }

        if (lpg_buf_append(b, &c, 1) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/*
 * GET <path>/poll?channels=a,b&last=N as the body of an equivalent
 * JSON-RPC call (caller frees); NULL with *why on a malformed query.
 */
char *
lpg_plain_query_body(const lpg_http_request_t *r, size_t *nchannels,
                     const char **why)
{
    char       *text, *end;
    json_t     *params, *channels, *body, *str;
    long long   last;
    lpg_buf_t   v;
    const char *q, *e, *eq, *c, *ce;

    channels = json_array();
    params = json_pack("{s:o, s:i}", "channels", channels, "last", 0);
    body = json_pack("{s:o}", "params", params);
    memset(&v, 0, sizeof(v));
    *why = "malformed query string";

    if (body == NULL) {
        return NULL;
    }

    for (q = r->query; q != NULL && q < r->query + r->query_len; q = e + 1) {
        e = memchr(q, '&', r->query + r->query_len - q);
        if (e == NULL) {
            e = r->query + r->query_len;
        }

        eq = memchr(q, '=', e - q);
        if (eq == NULL) {
            continue;
        }

        v.len = 0;
        if (lpg_plain_unescape(&v, eq + 1, e - eq - 1) != LPG_OK
            || lpg_buf_append(&v, "", 0) != LPG_OK)
        {
            goto failed;
        }

        if (eq - q == 4 && memcmp(q, "last", 4) == 0) {
            last = strtoll(v.data, &end, 10);
            if (*v.data == '\0' || *end != '\0' || last < 0) {
                *why = "last must be a non-negative integer";
                goto failed;
            }

            json_object_set_new(params, "last", json_integer(last));

        } else if (eq - q == 8 && memcmp(q, "channels", 8) == 0) {
            for (c = v.data; c < v.data + v.len; c = ce + 1) {
                ce = memchr(c, ',', v.data + v.len - c);
                if (ce == NULL) {
                    ce = v.data + v.len;
                }

                if (ce == c) {
                    continue;
                }

                str = json_stringn(c, ce - c);
                if (str == NULL) {
                    *why = "a channel is not valid UTF-8";
                    goto failed;
                }

                json_array_append_new(channels, str);
            }
        }
    }

    *nchannels = json_array_size(channels);
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    lpg_buf_free(&v);

    return text;

failed:

    json_decref(body);
    lpg_buf_free(&v);

    return NULL;
}


int
lpg_plain_parse(const lpg_http_request_t *r, lpg_odoo_poll_t *q, lpg_sub_t *s,
                size_t *nchannels, const char **why)
{
    int   rc;
    char *body;

    s->db = lpg_odoo_pick_db(r);
    s->version = lpg_odoo_version(s->db);

    body = lpg_plain_query_body(r, nchannels, why);
    if (body == NULL) {
        return LPG_ERROR;
    }

    rc = lpg_odoo_poll_parse(q, s, body, strlen(body), why);
    free(body);

    if (rc != LPG_OK) {
        return LPG_ERROR;
    }

    if (s->db < 0) {
        *why = "no such database: pass ?db=";
        return LPG_ERROR;
    }

    return LPG_OK;
}


void
lpg_plain_error(lpg_http_conn_t *c, const char *why)
{
    char   *text;
    json_t *j;

    j = json_pack("{s:s}", "error", why);
    text = j != NULL ? json_dumps(j, 0) : NULL;
    json_decref(j);

    if (text == NULL) {
        lpg_http_respond(c, 500, NULL, NULL, "error\n", 6);
        return;
    }

    lpg_http_respond(c, 400, "application/json",
                     "Access-Control-Allow-Origin: *\r\n", text, strlen(text));
    free(text);
}


int
lpg_plain_body(lpg_buf_t *out, const lpg_buf_t *list)
{
    if (lpg_buf_append(out, "[", 1) != LPG_OK
        || (list->len && lpg_buf_append(out, list->data, list->len) != LPG_OK)
        || lpg_buf_append(out, "]", 1) != LPG_OK)
    {
        return LPG_ERROR;
    }

    return LPG_OK;
}
