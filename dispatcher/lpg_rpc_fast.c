/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_rpc_fast.c: the poll body nearly every client sends, read without
 * jansson.  Odoo's web client (and lpgate.js) posts
 *
 *   {"jsonrpc":"2.0","method":"call","params":{"channels":["a","b"],
 *    "last":123,"options":{"bus_inactivity":4242}},"id":7}
 *
 * and on a busy gateway jansson's tree for it (a dozen allocations, then
 * freed) was a third of a worker's instructions.  This reader takes that
 * shape only: the four top-level keys and the three of params, each at
 * most once; channels plain ASCII strings (0x20-0x7e, no quote, no
 * backslash), at most LPG_RPC_FAST_CHANNELS; last null or a canonical
 * non-negative integer; options null or an object of scalars (peek true or
 * false, bus_inactivity an integer); id null, a canonical integer or a
 * plain string.  Anything else, including every malformed body, returns
 * false and the caller decodes it with jansson, whose answers (and error
 * texts) stay the reference; tests/fuzz/fuzz_rpc.c checks that both agree
 * on whatever this reader accepts.
 */

#include "lpg_rpc.h"

#include <stdlib.h>
#include <string.h>


typedef struct {
    const char *p;
    const char *end;
} lpg_rpc_cur_t;


static void lpg_rpc_ws(lpg_rpc_cur_t *c);
static bool lpg_rpc_eat(lpg_rpc_cur_t *c, char ch);
static bool lpg_rpc_plain(lpg_rpc_cur_t *c, const char **s, size_t *len);
static bool lpg_rpc_int(lpg_rpc_cur_t *c, bool sign, int64_t *v, const char **s,
                        size_t *len);
static bool lpg_rpc_word(lpg_rpc_cur_t *c, const char *w);
static bool lpg_rpc_key(lpg_rpc_cur_t *c, const char **k, size_t *klen);
static bool lpg_rpc_params(lpg_rpc_cur_t *c, size_t max_channels,
                           lpg_rpc_poll_t *rp);
static bool lpg_rpc_options(lpg_rpc_cur_t *c, lpg_rpc_poll_t *rp);
static bool lpg_rpc_is(const char *k, size_t klen, const char *name);


bool
lpg_rpc_poll_fast(const char *buf, size_t len, size_t max_channels,
                  lpg_rpc_poll_t *rp)
{
    size_t        klen, slen;
    int64_t       v;
    unsigned      seen, bit;
    const char   *k, *s;
    lpg_rpc_cur_t c = { buf, buf + len };

    memset(rp, 0, sizeof(*rp));
    rp->inactivity = -1;
    seen = 0;

    lpg_rpc_ws(&c);
    if (!lpg_rpc_eat(&c, '{')) {
        return false;
    }

    do {
        if (!lpg_rpc_key(&c, &k, &klen)) {
            goto decline;
        }

        bit = lpg_rpc_is(k, klen, "jsonrpc") ? 1
            : lpg_rpc_is(k, klen, "method")  ? 2
            : lpg_rpc_is(k, klen, "params")  ? 4
            : lpg_rpc_is(k, klen, "id")      ? 8
                                             : 0;

        /* another key, or a key twice (jansson keeps the last one) */
        if (bit == 0 || (seen & bit)) {
            goto decline;
        }

        seen |= bit;

        if (bit == 1 || bit == 2) {
            if (!lpg_rpc_plain(&c, &s, &slen)) {
                goto decline;
            }

        } else if (bit == 4) {
            if (!lpg_rpc_params(&c, max_channels, rp)) {
                goto decline;
            }

        } else {
            if (lpg_rpc_word(&c, "null")) {
                s = "null";
                slen = 4;

            } else if (c.p < c.end && *c.p == '"') {
                s = c.p;
                if (!lpg_rpc_plain(&c, NULL, NULL)) {
                    goto decline;
                }
                slen = (size_t) (c.p - s);

            } else if (!lpg_rpc_int(&c, true, &v, &s, &slen)) {
                goto decline;
            }

            rp->id = strndup(s, slen);
            if (rp->id == NULL) {
                goto decline;
            }
        }

        lpg_rpc_ws(&c);

    } while (lpg_rpc_eat(&c, ','));

    if (!lpg_rpc_eat(&c, '}') || !(seen & 4)) {
        goto decline;
    }

    lpg_rpc_ws(&c);
    if (c.p != c.end) {
        goto decline;
    }

    return true;

decline:

    free(rp->id);
    memset(rp, 0, sizeof(*rp));

    return false;
}


/* "params": {"channels": [...], "last": N, "options": {...}} */
static bool
lpg_rpc_params(lpg_rpc_cur_t *c, size_t max_channels, lpg_rpc_poll_t *rp)
{
    size_t      klen, n;
    unsigned    seen, bit;
    const char *k;

    lpg_rpc_ws(c);
    if (!lpg_rpc_eat(c, '{')) {
        return false;
    }

    seen = 0;

    do {
        if (!lpg_rpc_key(c, &k, &klen)) {
            return false;
        }

        if (lpg_rpc_is(k, klen, "channels")) {
            bit = 1;
            lpg_rpc_ws(c);
            if (!lpg_rpc_eat(c, '[')) {
                return false;
            }

            n = 0;
            lpg_rpc_ws(c);

            if (!lpg_rpc_eat(c, ']')) {
                do {
                    lpg_rpc_ws(c);

                    if (n == LPG_RPC_FAST_CHANNELS || n == max_channels
                        || !lpg_rpc_plain(c, &rp->fast[n].p, &rp->fast[n].len))
                    {
                        return false;
                    }

                    n++;
                    lpg_rpc_ws(c);

                } while (lpg_rpc_eat(c, ','));

                if (!lpg_rpc_eat(c, ']')) {
                    return false;
                }
            }

            rp->nfast = n;

        } else if (lpg_rpc_is(k, klen, "last")) {
            bit = 2;
            if (!lpg_rpc_word(c, "null")
                && !lpg_rpc_int(c, false, &rp->last, NULL, NULL)) {
                return false;
            }

        } else if (lpg_rpc_is(k, klen, "options")) {
            bit = 4;
            if (!lpg_rpc_word(c, "null") && !lpg_rpc_options(c, rp)) {
                return false;
            }

        } else {
            return false;
        }

        if (seen & bit) {
            return false;
        }

        seen |= bit;
        lpg_rpc_ws(c);

    } while (lpg_rpc_eat(c, ','));

    /* without channels jansson's path says what is wrong */
    return lpg_rpc_eat(c, '}') && (seen & 1);
}


/* an object of scalars; peek and bus_inactivity are read */
static bool
lpg_rpc_options(lpg_rpc_cur_t *c, lpg_rpc_poll_t *rp)
{
    size_t      klen, n;
    int64_t     v;
    const char *k, *start;

    lpg_rpc_ws(c);
    if (!lpg_rpc_eat(c, '{')) {
        return false;
    }

    lpg_rpc_ws(c);
    if (lpg_rpc_eat(c, '}')) {
        return true;
    }

    /* where the keys begin: a duplicate is searched for in the text */
    start = c->p;

    do {
        if (!lpg_rpc_key(c, &k, &klen)) {
            return false;
        }

        /* "key" seen before (or as an earlier string value, which only
         * declines a body jansson then reads): jansson keeps the last
         * one, this reader does not decide which */
        n = (size_t) (k - start);
        if (klen > 0 && memmem(start, n, k - 1, klen + 2) != NULL) {
            return false;
        }

        if (lpg_rpc_is(k, klen, "peek")) {
            if (lpg_rpc_word(c, "true")) {
                rp->peek = true;

            } else if (!lpg_rpc_word(c, "false")) {
                return false;
            }

        } else if (lpg_rpc_is(k, klen, "bus_inactivity")) {
            if (!lpg_rpc_int(c, true, &v, NULL, NULL)) {
                return false;
            }

            rp->inactivity = v < 0   ? 0
                : v > (int64_t) 1e12 ? (int64_t) 1e12
                                     : v;

        } else if (!lpg_rpc_word(c, "true") && !lpg_rpc_word(c, "false")
                   && !lpg_rpc_word(c, "null") && !lpg_rpc_plain(c, NULL, NULL)
                   && !lpg_rpc_int(c, true, &v, NULL, NULL))
        {
            return false;
        }

        lpg_rpc_ws(c);

    } while (lpg_rpc_eat(c, ','));

    return lpg_rpc_eat(c, '}');
}


/* "key" ws ':' ws, the key plain */
static bool
lpg_rpc_key(lpg_rpc_cur_t *c, const char **k, size_t *klen)
{
    lpg_rpc_ws(c);

    if (!lpg_rpc_plain(c, k, klen)) {
        return false;
    }

    lpg_rpc_ws(c);
    if (!lpg_rpc_eat(c, ':')) {
        return false;
    }

    lpg_rpc_ws(c);

    return true;
}


/* a string of printable ASCII without quote or backslash: its bytes */
static bool
lpg_rpc_plain(lpg_rpc_cur_t *c, const char **s, size_t *len)
{
    const char *p;

    if (c->p == c->end || *c->p != '"') {
        return false;
    }

    for (p = c->p + 1; p < c->end && *p != '"'; p++) {
        if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e
            || *p == '\\') {
            return false;
        }
    }

    if (p == c->end) {
        return false;
    }

    if (s != NULL) {
        *s = c->p + 1;
        *len = (size_t) (p - c->p - 1);
    }

    c->p = p + 1;

    return true;
}


/* a canonical integer (no leading zero, no fraction nor exponent) that
 * fits in 18 digits; a minus sign when sign */
static bool
lpg_rpc_int(lpg_rpc_cur_t *c, bool sign, int64_t *v, const char **s,
            size_t *len)
{
    int64_t     n;
    const char *p, *digits;

    p = c->p;

    if (sign && p < c->end && *p == '-') {
        p++;
    }

    digits = p;

    if (p == c->end || *p < '0' || *p > '9'
        || (*p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9'))
    {
        return false;
    }

    for (n = 0; p < c->end && *p >= '0' && *p <= '9'; p++) {
        if (p - digits == 18) {
            return false;
        }

        n = n * 10 + (*p - '0');
    }

    if (p < c->end && (*p == '.' || *p == 'e' || *p == 'E')) {
        return false;
    }

    *v = digits > c->p ? -n : n;

    if (s != NULL) {
        *s = c->p;
        *len = (size_t) (p - c->p);
    }

    c->p = p;

    return true;
}


static bool
lpg_rpc_word(lpg_rpc_cur_t *c, const char *w)
{
    size_t n = strlen(w);

    if ((size_t) (c->end - c->p) < n || memcmp(c->p, w, n) != 0) {
        return false;
    }

    c->p += n;

    return true;
}


static void
lpg_rpc_ws(lpg_rpc_cur_t *c)
{
    while (c->p < c->end
           && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    {
        c->p++;
    }
}


static bool
lpg_rpc_eat(lpg_rpc_cur_t *c, char ch)
{
    if (c->p == c->end || *c->p != ch) {
        return false;
    }

    c->p++;

    return true;
}


static bool
lpg_rpc_is(const char *k, size_t klen, const char *name)
{
    return strlen(name) == klen && memcmp(k, name, klen) == 0;
}
