/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_json.c: a growable byte buffer and Python-compatible json_dump.
 *
 * The string escaper follows CPython's json encoder with ensure_ascii:
 * '"', '\\', '\n', '\r', '\t', '\b', '\f' get short escapes, other bytes
 * below 0x20 and every code point above 0x7e become \u00XX / \uXXXX in
 * lowercase hex, code points above U+FFFF become a surrogate pair.
 */

#include "lpg_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int
lpg_buf_append(lpg_buf_t *b, const char *data, size_t len)
{
    char  *p;
    size_t cap;

    if (b->cap - b->len < len + 1) {
        cap = b->cap ? b->cap : 256;
        while (cap - b->len < len + 1) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            return LPG_ERROR;
        }

        b->data = p;
        b->cap = cap;
    }

    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';

    return LPG_OK;
}


int
lpg_buf_append_str(lpg_buf_t *b, const char *s)
{
    return lpg_buf_append(b, s, strlen(s));
}


void
lpg_buf_free(lpg_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


int
lpg_json_dump_string(lpg_buf_t *b, const char *s, size_t len)
{
    int                  n;
    char                 esc[16];
    size_t               i, start;
    uint32_t             cp, hi, lo;
    const unsigned char *u = (const unsigned char *) s;

    if (lpg_buf_append(b, "\"", 1) != LPG_OK) {
        return LPG_ERROR;
    }

    i = 0;
    while (i < len) {
        start = i;

        /* a run of plain printable ASCII */
        while (i < len && u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"'
               && u[i] != '\\') {
            i++;
        }

        if (i > start && lpg_buf_append(b, s + start, i - start) != LPG_OK) {
            return LPG_ERROR;
        }

        if (i == len) {
            break;
        }

        if (lpg_json_utf8_next(u, len, &i, &cp) != LPG_OK) {
            return LPG_ERROR;
        }

        switch (cp) {
        case '"':
            n = snprintf(esc, sizeof(esc), "\\\"");
            break;
        case '\\':
            n = snprintf(esc, sizeof(esc), "\\\\");
            break;
        case '\n':
            n = snprintf(esc, sizeof(esc), "\\n");
            break;
        case '\r':
            n = snprintf(esc, sizeof(esc), "\\r");
            break;
        case '\t':
            n = snprintf(esc, sizeof(esc), "\\t");
            break;
        case '\b':
            n = snprintf(esc, sizeof(esc), "\\b");
            break;
        case '\f':
            n = snprintf(esc, sizeof(esc), "\\f");
            break;
        default:
            if (cp > 0xffff) {
                cp -= 0x10000;
                hi = 0xd800 | (cp >> 10);
                lo = 0xdc00 | (cp & 0x3ff);
                n = snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", hi, lo);

            } else {
                n = snprintf(esc, sizeof(esc), "\\u%04x", cp);
            }
            break;
        }

        if (lpg_buf_append(b, esc, n) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return lpg_buf_append(b, "\"", 1);
}


int
lpg_json_dump(lpg_buf_t *b, const json_t *v)
{
    int         n;
    char        num[64];
    size_t      i;
    const char *key;
    json_t     *item;

    switch (json_typeof(v)) {

    case JSON_STRING:
        return lpg_json_dump_string(b, json_string_value(v),
                                    json_string_length(v));

    case JSON_INTEGER:
        n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        return lpg_buf_append(b, num, n);

    case JSON_REAL:
        n = snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        return lpg_buf_append(b, num, n);

    case JSON_TRUE:
        return lpg_buf_append(b, "true", 4);

    case JSON_FALSE:
        return lpg_buf_append(b, "false", 5);

    case JSON_NULL:
        return lpg_buf_append(b, "null", 4);

    case JSON_ARRAY:
        if (lpg_buf_append(b, "[", 1) != LPG_OK) {
            return LPG_ERROR;
        }

        json_array_foreach(v, i, item)
        {
            if ((i > 0 && lpg_buf_append(b, ",", 1) != LPG_OK)
                || lpg_json_dump(b, item) != LPG_OK)
            {
                return LPG_ERROR;
            }
        }

        return lpg_buf_append(b, "]", 1);

    case JSON_OBJECT:
        if (lpg_buf_append(b, "{", 1) != LPG_OK) {
            return LPG_ERROR;
        }

        i = 0;
        json_object_foreach((json_t *) v, key, item)
        {
            if ((i++ > 0 && lpg_buf_append(b, ",", 1) != LPG_OK)
                || lpg_json_dump_string(b, key, strlen(key)) != LPG_OK
                || lpg_buf_append(b, ":", 1) != LPG_OK
                || lpg_json_dump(b, item) != LPG_OK)
            {
                return LPG_ERROR;
            }
        }

        return lpg_buf_append(b, "}", 1);
    }

    return LPG_ERROR;
}


/* decodes one UTF-8 sequence at s[*i]; rejects overlong and surrogates */
int
lpg_json_utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
    size_t   k, n;
    uint32_t c, min;

    c = s[*i];

    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return LPG_OK;
    }

    if ((c & 0xe0) == 0xc0) {
        n = 1;
        c &= 0x1f;
        min = 0x80;

    } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        c &= 0x0f;
        min = 0x800;

    } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        c &= 0x07;
        min = 0x10000;

    } else {
        return LPG_ERROR;
    }

    /* the continuation bytes s[*i + 1 .. *i + n] must exist */
    if (*i + n >= len) {
        return LPG_ERROR;
    }

    for (k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xc0) != 0x80) {
            return LPG_ERROR;
        }

        c = (c << 6) | (s[*i + k] & 0x3f);
    }

    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return LPG_ERROR;
    }

    *cp = c;
    *i += n + 1;

    return LPG_OK;
}
